"""The console's live updates: /ui/stream (server-sent events) from a real daemon, read with
httpx over its socket, and the hooks console.js needs on the pages.

One daemon serves the stream tests; three files are dropped (two plain, one with a
hostile name) and their runs followed. A second daemon is stopped with streams open.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_harness import Daemon, write_file

from triggerd.daemon.api.console.stream import MAX_STREAMS, SETTLE, _Cursor
from triggerd.eventlog.schema import LogEvent

HOSTILE = "evil\n\x1b[31mred\u202egnp.exe\udcff.h5"
HOSTILE_SHOWN = "evil\\n\\x1b[31mred\\u202egnp.exe\\xff.h5"
ENDS = ("run.succeeded", "run.failed")


def client(daemon: Daemon) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(daemon.socket)),
        base_url="http://triggerd",
        timeout=httpx.Timeout(10.0),
    )


def messages(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (id, event) of each SSE message in ``lines``; comments are skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield fields.get("id", ""), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def read_until(answer: httpx.Response, done, most: int = 10_000) -> list[tuple[str, dict]]:
    got: list[tuple[str, dict]] = []
    for item in messages(answer.iter_lines()):
        got.append(item)
        if done(item[1]) or len(got) >= most:
            break
    return got


class Live:
    def __init__(self, daemon: Daemon, http: httpx.Client):
        self.daemon, self.http = daemon, http
        self.run_of: dict[str, str] = {}

    def events(self, **query: Any) -> list[dict[str, Any]]:
        answer = self.http.get("/events", params={"limit": 1000, **query})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with Daemon(tmp_path_factory.mktemp("live")) as daemon, client(daemon) as http:
        yield Live(daemon, http)


def drop_and_follow(live: Live, name: str) -> tuple[str, list[tuple[str, dict]]]:
    """Drop ``name`` with a stream open (from now, no filter); the new run's id and what
    the stream sent until that run ended."""
    with live.http.stream("GET", "/ui/stream") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        write_file(live.daemon.incoming / name)
        got = read_until(answer, lambda e: e["kind"] in ENDS)
    run_id = got[-1][1]["run"]
    live.run_of[name] = run_id
    return run_id, got


def test_the_stream_delivers_a_runs_events_in_order_with_ids(live):
    run_id, got = drop_and_follow(live, "a.h5")
    assert all(sse_id == event["id"] for sse_id, event in got)
    ids = [event["id"] for _, event in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    of_run = [event["id"] for _, event in got if event["run"] == run_id]
    stored = [e["id"] for e in live.events(run=run_id) if e["id"] <= of_run[-1]]
    assert of_run == stored  # every event of the run, none twice, in the event log's order
    kinds = [event["kind"] for _, event in got if event["run"] == run_id]
    assert kinds.index("run.started") < kinds.index("output") < kinds.index("run.succeeded")


def test_reconnecting_with_last_event_id_goes_on_without_loss_or_repeats(live):
    run_id = live.run_of.get("a.h5") or drop_and_follow(live, "a.h5")[0]
    stored = [e["id"] for e in live.events(run=run_id)]
    assert len(stored) >= 6
    for how in ("header", "query"):
        cut = stored[2]
        headers = {"last-event-id": cut} if how == "header" else {}
        url = f"/ui/stream?run={run_id}" + (f"&after={cut}" if how == "query" else "")
        with live.http.stream("GET", url, headers=headers) as answer:
            got = read_until(answer, lambda e: e["id"] == stored[-1])
        assert [sse_id for sse_id, _ in got] == stored[3:], how


def test_a_filter_by_run_delivers_only_that_runs_events(live):
    first = live.run_of.get("a.h5") or drop_and_follow(live, "a.h5")[0]
    second, _ = drop_and_follow(live, "b.h5")
    with live.http.stream("GET", f"/ui/stream?run={first}&after=0") as answer:
        got = read_until(answer, lambda e: e["kind"] in ENDS)
    assert {event["run"] for _, event in got} == {first}
    assert [e for _, e in got] == live.events(run=first)[: len(got)]
    with live.http.stream("GET", f"/ui/stream?run={second}&kind=run&after=0") as answer:
        got = read_until(answer, lambda e: e["kind"] in ENDS)
    kinds = [e["kind"] for _, e in got]
    assert kinds[-1] == "run.succeeded" and {k.split(".")[0] for k in kinds} == {"run"}


def test_a_hostile_name_arrives_escaped(live):
    """The JSON holds the name as the pages show it; nothing of it raw reaches the page."""
    with live.http.stream("GET", "/ui/stream") as answer:
        write_file(live.daemon.incoming / HOSTILE)
        raw = b""
        for chunk in answer.iter_bytes():
            raw += chunk
            if b'"trigger.fired"' in raw and raw.endswith(b"\n\n"):
                break
    text = raw.decode("utf-8")  # strictly UTF-8: no lone surrogate
    for bad in ("\x1b", "\u202e", "\udcff", "\ufffd", "evil\n"):
        assert bad not in text
    fired = [e for _, e in messages(text.split("\n")) if e["kind"] == "trigger.fired"]
    assert HOSTILE_SHOWN in fired[0]["message"]


def test_bad_filters_are_refused_and_streams_are_bounded(live):
    assert live.http.get("/ui/stream?level=loud").status_code == 400
    assert stream_status(live.http) == 200  # a client that leaves at once
    # each client that left freed its place: as many as may be open, then one more is refused
    with contextlib.ExitStack() as held:
        for _ in range(MAX_STREAMS):
            each = held.enter_context(client(live.daemon))
            assert held.enter_context(each.stream("GET", "/ui/stream")).status_code == 200
        refused = live.http.get("/ui/stream")
        assert refused.status_code == 503 and "try again" in refused.text
    live.daemon.wait_for(
        lambda: stream_status(live.http) == 200, 5, "the streams of the clients that left to end"
    )


def stream_status(http: httpx.Client) -> int:
    with http.stream("GET", "/ui/stream") as answer:
        return answer.status_code


def test_the_pages_carry_the_hooks_of_console_js(live):
    run_id = live.run_of.get("a.h5") or drop_and_follow(live, "a.h5")[0]
    runs = live.http.get("/ui/runs").text
    assert '<script src="/ui/static/console.js" defer></script>' in runs
    assert 'id="runs" data-stream="/ui/stream?kind=run"' in runs and f'id="run-{run_id}"' in runs
    page = live.http.get(f"/ui/runs/{run_id}").text
    assert f'data-stream="/ui/stream?run={run_id}"' in page and 'id="run-tasks"' in page
    events = live.http.get(f"/ui/events?run={run_id}&level=info").text
    assert f'data-stream="/ui/stream?level=info&amp;run={run_id}"' in events
    overview = live.http.get("/ui/").text
    assert '<noscript><meta http-equiv="refresh"' in overview and 'id="main"' in overview
    script = live.http.get("/ui/static/console.js")
    assert script.status_code == 200 and "innerHTML" not in script.text


def test_the_daemon_stops_promptly_with_streams_open_or_left(tmp_path: Path):
    with Daemon(tmp_path) as daemon, client(daemon) as http:
        with http.stream("GET", "/ui/stream") as left:
            assert left.status_code == 200
        with http.stream("GET", "/ui/stream") as answer:
            lines = answer.iter_lines()
            assert next(lines) == "retry: 2000"  # the stream has begun
            started = time.monotonic()
            assert daemon.stop() == 0
            assert time.monotonic() - started < 5
            assert list(lines)[-1:] in ([], [""])  # it ended, cleanly


def test_an_event_stored_after_newer_ones_is_sent_once_by_the_look_back():
    """Ids are made where the event is (a worker's line may be stored after the daemon's
    newer events): the stream's cursor sends it when it comes, once, and a reconnect
    resumes after the newest id sent, not after the late one."""
    now = int(time.time() * 1000)
    early, newer, late = (
        LogEvent("output", m, id=ulid(now + dt))
        for m, dt in (("early", 0), ("newer", 500), ("late", 100))
    )
    cursor = _Cursor(early.id)
    assert cursor.fresh([newer]) == [(newer.id, newer)]
    assert cursor.floor() == early.id  # never back before where the stream began
    # the look-back finds the late one (and the newer one again): only the late one is new
    assert cursor.fresh([late, newer]) == [(newer.id, late)]
    assert cursor.after == newer.id
    later = _Cursor(None)
    later.fresh([LogEvent("output", "x", id=ulid(now + 5000))])
    assert later.floor() == ulid(now + 5000 - int(SETTLE * 1000))[:10] + "0" * 16


def ulid(ms: int) -> str:
    value = (ms << 80) | 12345
    return "".join(
        "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(value >> s) & 31] for s in range(125, -1, -5)
    )
