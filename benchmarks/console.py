"""The console's pages on a daemon with many runs: how long each takes to answer.

    python benchmarks/console.py              # 100,000 runs, 20 requests a page
    python benchmarks/console.py --runs 1000000 --repeat 10

A real ``triggerd run`` on the embedded default, started on a state file filled with
``--runs`` ended runs beforehand (20 rules, 7 workflows, mostly succeeded, some failed,
aborted, stopped, rejected; one queued a second apart, the newest now). Each page is
asked ``--repeat`` times over the unix socket, one request at a time, after one warm-up
request; the time is from sending the request to the last byte of the page (rendering
included). The target (issue 16): the runs list opens in under 0.5 s.

Results (2026-12-08, this project's machine: 2 cores shared, load 1.2; 100,000 runs,
median of 20): the runs list 8.4 ms (max 9.7); filtered by state 8.6 ms, by rule and
state 10.2 ms, by workflow 8.8 ms, since 10 min 13.0 ms; a page 1000 pages deep
11.1 ms (keyset paging on ``seq``); no match 2.5 ms, ``since`` matching nothing (the one
query that reads every row) 20.1 ms; a run page 2.7 ms; the events page 2.0 ms. The
overview takes 208 ms, nearly all of it ``StateDB.rule_stats()`` (``views.status``, the
same for ``/status``): ``MAX(queued_at) ... GROUP BY rule`` reads every row of the
table, 183 ms here; with ``MAX(seq)`` (covered by the ``runs_rule`` index) and one
lookup per rule it would be about 14 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from triggerd.daemon.state import StateDB

BIN = Path(sys.executable).parent
_STATES = ["succeeded"] * 90 + ["failed"] * 6 + ["aborted", "stopped", "rejected", "failed"]


def fill_state(path: Path, runs: int) -> None:
    """``runs`` ended runs in a new state file, as the daemon writes them."""
    StateDB(path).open().close()  # the schema and indexes, as the daemon makes them
    now, rng = time.time(), random.Random(16)
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO runs (run_id, key, rule, workflow, params, trigger, state, error,"
        " attempts, queued_at, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        (_row(n, runs, now, rng) for n in range(runs)),
    )
    conn.commit()
    conn.close()


def _row(n: int, runs: int, now: float, rng: random.Random) -> tuple:
    queued = now - (runs - n)
    path = f"/data/incoming/scan_{n:07d}.h5"
    state = rng.choice(_STATES)
    return (
        f"bench{n:020d}",
        f"file:{n}",
        f"rule{n % 20}",
        f"workflow{n % 7}",
        json.dumps({"path": path, "frames": 1000}),
        json.dumps([{"type": "file", "path": path, "size": 1 << 20, "kind": "closed"}]),
        state,
        None if state == "succeeded" else "a task failed: exit code 1",
        queued,
        queued + 0.1,
        queued + 0.6,
    )


def start_daemon(root: Path) -> subprocess.Popen:
    for name in ("workflows", "triggers", "incoming"):
        (root / name).mkdir(exist_ok=True)
    (root / "triggerd.toml").write_text(
        textwrap.dedent(f"""
        [paths]
        state_dir = "{root / 'var'}"
        workflows = ["{root / 'workflows'}"]
        triggers = ["{root / 'triggers'}"]
        [log]
        format = "json"
        level = "warning"
        """)
    )
    proc = subprocess.Popen(
        [str(BIN / "triggerd"), "run", "--config", str(root / "triggerd.toml")],
        stdout=(root / "daemon.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    socket = root / "var" / "triggerd.sock"
    deadline = time.monotonic() + 60
    while not socket.exists() or _status(socket) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((root / "daemon.log").read_text()[-3000:])
        time.sleep(0.1)
    return proc


def _status(socket: Path) -> int:
    try:
        with _client(socket) as http:
            return http.get("/status").status_code
    except httpx.TransportError:
        return 0


def _client(socket: Path) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://triggerd", timeout=60
    )


def time_page(http: httpx.Client, url: str, repeat: int) -> dict[str, float]:
    http.get(url).raise_for_status()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = http.get(url)
        times.append(time.perf_counter() - start)
        answer.raise_for_status()
    return {"p50": statistics.median(times), "max": max(times), "bytes": len(answer.content)}


def pages(runs: int) -> dict[str, str]:
    return {
        "runs, first page": "/ui/runs",
        "runs, state=aborted": "/ui/runs?state=aborted",
        "runs, rule + state": "/ui/runs?rule=rule3&state=failed",
        "runs, workflow": "/ui/runs?workflow=workflow5",
        "runs, since=10min": "/ui/runs?since=10min",
        "runs, none match": "/ui/runs?workflow=nothing",
        "runs, since none match": "/ui/runs?since=2099-01-01",
        "runs, page 1000 deep": f"/ui/runs?before={max(runs - 50_000, 1)}",
        "run page": "/ui/runs/bench00000000000000000042",
        "overview": "/ui/",
        "events": "/ui/events",
        "JSON /runs (for comparison)": "/runs",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="triggerd-console-bench-") as scratch:
        root = Path(scratch)
        (root / "var").mkdir()
        started = time.perf_counter()
        fill_state(root / "var" / "state.sqlite", args.runs)
        print(f"{args.runs} runs written in {time.perf_counter() - started:.1f} s")
        proc = start_daemon(root)
        try:
            with _client(root / "var" / "triggerd.sock") as http:
                results = {
                    name: time_page(http, url, args.repeat)
                    for name, url in pages(args.runs).items()
                }
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"{'page':<30} {'p50':>9} {'max':>9} {'bytes':>8}")
    for name, r in results.items():
        print(f"{name:<30} {r['p50'] * 1000:7.1f}ms {r['max'] * 1000:7.1f}ms {r['bytes']:>8}")
    load = os.getloadavg()[0]
    print(json.dumps({"runs": args.runs, "repeat": args.repeat, "load": load, "pages": results}))


if __name__ == "__main__":
    main()
