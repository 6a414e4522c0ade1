"""Reloads that change a rule's watch (its ignore list) while files stream in: every file
runs once, none twice. The new watch is in place before the old one goes, and the
rule's roots are rescanned against the ledger for files that fell between the two.

The issue's size (3,000 files, 40 reloads) runs under TRIGGERD_FAULTS=full (`make
faults`); the normal suite runs 300 files through the same 40 reloads."""

from __future__ import annotations

import collections
import os
import threading
import time

import pytest
from daemon_harness import Daemon, write_file
from support import wait_for

from triggerd.daemon.client import ControlClient

FULL = os.environ.get("TRIGGERD_FAULTS") == "full"
FILES, RATE, RELOADS = (3000, 300.0, 40) if FULL else (300, 100.0, 40)
ARCHIVE_DIRS = 500  # the rule's other root: a tree whose watch takes a moment to set up

pytestmark = pytest.mark.timeout(600 if FULL else 120)


def rules(d: Daemon, reload: int) -> str:
    """One rule over two roots, whose ignore list differs at every reload (so its watches
    change)."""
    return d.default_rules(
        roots=[d.root / "archive", d.incoming],
        glob="**/*.dat",
        ignore=("*.tmp", ".*", f"*.skip{reload}"),
    )


def settled_runs(d: Daemon, paths: list[str]) -> list[dict]:
    """The run rows once every reload's rescan has reported (a rescan hands the files it
    found to the dispatcher before it reports) and every streamed file has a run: then
    nothing is left that could add a row."""

    def rescans() -> int:
        return sum(e["data"].get("scan") == "reload rescan" for e in d.caught_up())

    def without_a_run() -> list[str]:
        return sorted(set(paths) - {r["trigger"][0]["path"] for r in d.runs_db()})

    d.wait_for(lambda: rescans() >= RELOADS, 60, f"the {RELOADS} reloads' rescans")
    wait_for(
        lambda: not without_a_run(),
        60,
        "a run of every streamed file",
        interval=0.2,
        detail=lambda: f"{len(without_a_run())} files without a run: {without_a_run()[:3]}",
    )
    return d.runs_db()


def test_watch_changing_reloads_during_a_stream_lose_and_double_no_file(tmp_path):
    d = Daemon(tmp_path)
    for i in range(ARCHIVE_DIRS):
        (tmp_path / "archive" / f"visit{i // 50}" / f"scan{i}").mkdir(parents=True)
    d.write_rules(rules(d, 0))
    paths = [str(d.incoming / f"f{i:05d}.dat") for i in range(FILES)]
    answers: list[dict] = []
    with d:

        def stream() -> None:
            start = time.monotonic()
            for i, path in enumerate(paths):
                time.sleep(max(0.0, start + i / RATE - time.monotonic()))
                write_file(d.incoming / path, str(i).encode())

        writer = threading.Thread(target=stream)
        started = time.monotonic()
        writer.start()
        with ControlClient(d.socket) as client:  # what `triggerctl reload` sends
            for reload in range(1, RELOADS + 1):  # spread over the stream
                time.sleep(
                    max(0.0, started + reload * FILES / RATE / (RELOADS + 1) - time.monotonic())
                )
                d.write_rules(rules(d, reload))
                answers.append(client.post("/reload"))
        writer.join()
        streamed = time.monotonic() - started
        runs = settled_runs(d, paths)
        reloads = d.ctl_json("status")["reloads"]
    assert all(a["ok"] for a in answers), answers
    assert reloads == RELOADS
    per_file = collections.Counter(r["trigger"][0]["path"] for r in runs)
    missing = sorted(set(paths) - set(per_file))
    twice = sorted(p for p, n in per_file.items() if n > 1)
    assert not missing and not twice, (
        f"{len(missing)} files never ran ({missing[:3]}), {len(twice)} ran twice ({twice[:3]})"
    )
    assert len(runs) == FILES
    print(f"{FILES} files, {RELOADS} watch-changing reloads in {streamed:.1f} s: one run each")
