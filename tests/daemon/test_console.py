"""The operator's console (/ui/): pages rendered by a real daemon, read over its socket.

One daemon serves every page test (they only read): four files dropped, one of them with
a hostile name (a newline, an ANSI escape, a bidi override and a byte that is not UTF-8).
The helpers that write states and times, and the state file's paging, are checked on
their own below.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from daemon_harness import Daemon, write_file

from triggerd.daemon.api.console.render import BADGES, ago, badge, duration
from triggerd.daemon.state import StateDB
from triggerd.runstate import RunState

# a newline (a fake second line), ESC[31m (terminal colour), U+202E (reverses what
# follows: "gnp.exe" reads "exe.png"), and the byte 0xFF (not UTF-8)
HOSTILE = "evil\n\x1b[31mred\u202egnp.exe\udcff.h5"
HOSTILE_SHOWN = "evil\\n\\x1b[31mred\\u202egnp.exe\\xff.h5"
PLAIN = ("a.h5", "b.h5", "c.h5")


class Console:
    """The daemon and an HTTP client on its socket."""

    def __init__(self, daemon: Daemon, http: httpx.Client):
        self.daemon, self.http = daemon, http
        self.run_of: dict[str, str] = {}  # file name -> its run id

    def page(self, url: str, status: int = 200) -> str:
        answer = self.http.get(url)
        assert answer.status_code == status, (url, answer.status_code, answer.text[:2000])
        assert answer.headers["content-type"].startswith("text/html")
        answer.content.decode("utf-8")  # strictly UTF-8: no lone surrogate slipped through
        return answer.text


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with Daemon(tmp_path_factory.mktemp("console")) as daemon:
        for name in (*PLAIN, HOSTILE):
            write_file(daemon.incoming / name)
            time.sleep(0.05)  # one run after the other: their order is the files' order
        daemon.wait_for(
            lambda: [r["state"] for r in daemon.runs_db()] == ["succeeded"] * 4,
            what="four runs succeeded",
        )
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://triggerd"
        ) as http:
            c = Console(daemon, http)
            for row in daemon.runs_db():
                c.run_of[Path(row["trigger"][0]["path"]).name] = row["run_id"]
            # the run pages read the event log: wait until the last run's end is stored
            last = c.run_of[HOSTILE]
            daemon.wait_for(
                lambda: (
                    http.get(f"/eventlog/runs/{last}").status_code == 200
                    and http.get(f"/eventlog/runs/{last}").json()["status"] == "succeeded"
                ),
                what="the last run's summary in the event log",
            )
            yield c


def run_ids(page: str) -> list[str]:
    """The run ids a runs page links to, in its order."""
    return re.findall(r'href="/ui/runs/([0-9A-Z]{26})"', page)


def test_a_dropped_file_shows_as_a_run_and_its_page_shows_task_and_log(console):
    runs = console.page("/ui/runs")
    run_id = console.run_of["a.h5"]
    assert run_id in run_ids(runs)
    assert "✓</span> succeeded" in runs  # symbol and word, not colour alone
    assert f"{console.daemon.incoming}/a.h5" in runs

    page = console.page(f"/ui/runs/{run_id}")
    assert "main:1" in page and ">record<" in page  # the DAG and its task
    assert page.count("✓</span> succeeded") >= 3  # the run, its DAG, its task
    assert f"recorded {console.daemon.incoming}/a.h5" in page  # the task's log line
    assert "<h2>Parameters</h2>" in page and f"{console.daemon.out}" in page
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z"', page)  # absolute
    assert re.search(r'class="ago">\d+ (s|min) ago<', page)  # and relative


def test_the_overview_lists_the_rule_the_source_and_the_dependencies(console):
    page = console.page("/ui/")
    assert 'href="/ui/runs?rule=record"' in page
    assert html.escape(str(console.daemon.incoming)) in page
    assert "✓</span> watching" in page  # the file source's state
    assert "✓</span> taking triggers" in page and "state file" in page
    assert '<dd class="num">4</dd>' in page  # succeeded
    assert "/ui/static/console.css" in page


def test_a_hostile_file_name_renders_escaped(console):
    """Nothing of the name reaches the page raw: no newline inside it, no ESC, no bidi
    override, no lone surrogate; its visible escapes are there instead."""
    run_id = console.run_of[HOSTILE]
    for url in ("/ui/runs", f"/ui/runs/{run_id}", f"/ui/events?run={run_id}"):
        page = console.page(url)
        assert "\x1b" not in page and "\u202e" not in page, url
        assert "evil\n" not in page and "\udcff" not in page and "\ufffd" not in page, url
        assert HOSTILE_SHOWN in page, url  # the trigger, the parameters, trigger.fired


def test_runs_are_filtered_by_state_rule_workflow_and_since(console):
    every = set(console.run_of.values())
    assert set(run_ids(console.page("/ui/runs?state=succeeded&rule=record"))) == every
    assert set(run_ids(console.page("/ui/runs?workflow=record&since=1h"))) == every
    for empty in ("state=failed", "rule=other", "workflow=other", "since=2099-01-01"):
        page = console.page(f"/ui/runs?{empty}")
        assert run_ids(page) == [] and "match these filters" in page, empty
    assert 'option value="succeeded" selected' in console.page("/ui/runs?state=succeeded")
    refused = console.page("/ui/runs?since=yesterday", status=400)
    assert "since: expected" in refused


def test_runs_are_paged_newest_first(console):
    newest_first = [console.run_of[name] for name in (HOSTILE, *PLAIN[::-1])]
    first = console.page("/ui/runs?limit=3")
    assert run_ids(first) == newest_first[:3]
    older = html.unescape(re.search(r'<a href="([^"]+)" rel="next">older', first)[1])
    assert "before=" in older and "limit=3" in older
    second = console.page(older)
    assert run_ids(second) == newest_first[3:]
    assert "no older" in second and 'href="/ui/runs?limit=3">« newest' in second


def test_the_event_log_is_filtered_and_paged(console):
    run_id = console.run_of["b.h5"]
    page = console.page(f"/ui/events?run={run_id}&kind=output")
    assert f"recorded {console.daemon.incoming}/b.h5" in page
    assert "run.succeeded" not in page and "task.started" not in page
    whole_run = console.page(f"/ui/events?run={run_id}&limit=2")
    assert whole_run.count('<tr class="level-') == 2 and "run.succeeded" in whole_run
    older = html.unescape(re.search(r'<a href="([^"]+)" rel="next">older', whole_run)[1])
    assert "offset=2" in older and "task.succeeded" in console.page(older)
    assert "no events match" in console.page(f"/ui/events?run={run_id}&level=error")
    assert "unknown level" in console.page("/ui/events?level=loud", status=400)


def test_an_unknown_run_is_a_404_page_and_the_stylesheet_is_served(console):
    page = console.page("/ui/runs/01NOSUCHRUN0000000000000000", status=404)
    assert "no run 01NOSUCHRUN0000000000000000" in page and 'href="/ui/runs"' in page
    css = console.http.get("/ui/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text  # nothing from elsewhere


def test_the_json_api_is_unchanged(console):
    """The console added pages, not fields: /runs answers as before."""
    rows = console.http.get("/runs", params={"limit": 2}).json()
    assert len(rows) == 2 and "seq" not in rows[0] and rows[0]["state"] == "succeeded"


# -- the pieces, without a daemon -------------------------------------------------------------


def test_every_run_state_has_a_symbol_beside_its_colour():
    for state in RunState:
        symbol, css = BADGES[state]
        assert symbol and css
        assert f"{symbol}</span> {state.value}" in badge(state.value)
    assert "?</span> bogus" in badge("bogus") and "\x1b" not in badge("x\x1b[31m")


def test_durations_and_relative_times_read_at_a_glance():
    assert [duration(s) for s in (0.0183, 4.25, 65, 7300, 90000)] == [
        "0.018 s",
        "4.2 s",
        "1 min 5 s",
        "2 h 1 min",
        "1 d 1 h",
    ]
    assert duration(None) == ""
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=4), now) == "4 s ago"
    assert ago((now - timedelta(hours=3)).timestamp(), now) == "3 h ago"
    assert ago("2026-12-08T11:57:00Z", now) == "3 min ago"
    assert ago(now + timedelta(minutes=2), now) == "in 2 min"


def test_runs_page_is_keyset_paged_with_every_filter(tmp_path):
    db = StateDB(tmp_path / "state.sqlite").open()
    try:
        for n in range(7):
            db.enqueue(
                run_id=f"r{n}",
                key=f"k{n}",
                rule="odd" if n % 2 else "even",
                workflow=f"w{n % 3}",
                params={},
                trigger=[],
            )
        pages, before = [], None
        while True:
            rows, before = db.runs_page(limit=3, before=before)
            pages.append([r.run_id for r in rows])
            if before is None:
                break
        assert pages == [["r6", "r5", "r4"], ["r3", "r2", "r1"], ["r0"]]
        rows, older = db.runs_page(rule="even", workflow="w0", limit=1)
        assert [r.run_id for r in rows] == ["r6"] and older is not None
        rows, older = db.runs_page(rule="even", workflow="w0", before=older)
        assert [r.run_id for r in rows] == ["r0"] and older is None
        assert db.runs_page(states=["failed"])[0] == [] and db.runs(limit=2)[0].run_id == "r6"
    finally:
        db.close()
