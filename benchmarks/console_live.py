"""The console's live stream (/ui/stream) at 200 events/s: its lag, and what it costs the
daemon's file triggers.

Usage:
    python benchmarks/console_live.py                 # 5 clients, 60 files a phase
    python benchmarks/console_live.py --clients 5 --files 60 --rate 200

Method. A real ``triggerd run`` on the embedded default (local executor, SQLite event
log) with two rules: ``bench`` starts ``bench_touch`` for each file in ``incoming/``
(whose task notes when it started: the file-trigger latency of file_triggers.py
--latency), ``chatty`` starts a workflow whose BashTask prints ``--rate`` lines a second
for as long as the phase lasts (each line an ``output`` event). Three phases, each
writing ``--files`` files 100 ms apart into ``incoming/``:

  idle      no chatty run, no stream open;
  load      the chatty run printing, no stream open;
  streams   the chatty run printing, ``--clients`` streams open (no filter: every event).

Lag = the moment a client parsed a message - the event's own time (set where it was
made: in the worker for an output line). "late": messages of events stored after newer
ones (sent by the stream's look-back). Each client also counts the chatty run's lines
it got against those the event log stored (missed, twice). Prints a table and
one JSON line; results are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from file_triggers import (
    HERE,
    _cpu_s,
    pct,
    quiet,
    read_markers,
    scratch,
    stop_daemon,
    write_timed,
)

BIN = Path(sys.executable).parent

CHATTY = '''
"""Print `rate` lines a second for `seconds` seconds (benchmarks/console_live.py)."""
import sys
from triggerd.flow import BashTask, Dag, Option, Parameters

parameters = Parameters([Option("rate", type=int), Option("seconds", type=float)])

PRINT = (
    "import sys, time\\n"
    "rate, seconds = int(sys.argv[1]), float(sys.argv[2])\\n"
    "start = time.time()\\n"
    "for i in range(int(rate * seconds)):\\n"
    "    print(f'line {i}', flush=True)\\n"
    "    time.sleep(max(0.0, start + (i + 1) / rate - time.time()))\\n"
)


def command(data, store):
    return [sys.executable, "-c", PRINT, str(store.get("rate")), str(store.get("seconds"))]


main = Dag("main")
main.define({BashTask("chat", command): None})
'''


class Daemon:
    def __init__(self, root: Path, rate: int, seconds: float):
        self.root, self.incoming, self.noise = root, root / "incoming", root / "noise"
        self.out = root / "out"
        for d in (self.incoming, self.noise, self.out, root / "wf", root / "triggers"):
            d.mkdir(parents=True)
        (root / "wf" / "chatty.py").write_text(CHATTY)
        (root / "triggerd.toml").write_text(
            textwrap.dedent(f"""
            [paths]
            state_dir = "{root / "var"}"
            workflows = ["{HERE / "workflows"}", "{root / "wf"}"]
            triggers = ["{root / "triggers"}"]
            [log]
            format = "json"
        """)
        )
        (root / "triggers" / "rules.toml").write_text(
            textwrap.dedent(f"""
            [[rule]]
            name = "bench"
            workflow = "bench_touch"
            params = {{ path = "{{path}}", out = "{self.out}" }}
            [rule.files]
            roots = ["{self.incoming}"]
            glob = "*"
            catch_up = "none"

            [[rule]]
            name = "chatty"
            workflow = "chatty"
            params = {{ rate = {rate}, seconds = {seconds} }}
            [rule.files]
            roots = ["{self.noise}"]
            glob = "*"
            catch_up = "none"
        """)
        )
        self.socket = root / "var" / "triggerd.sock"
        log = (root / "daemon.log").open("ab")
        config = str(root / "triggerd.toml")
        self.proc = subprocess.Popen(
            [str(BIN / "triggerd"), "run", "--config", config], stdout=log, stderr=subprocess.STDOUT
        )

    def http(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://triggerd",
            timeout=timeout,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    with self.http(2) as http:
                        if http.get("/status").status_code == 200:
                            return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("the daemon did not answer in 60 s")


class Client(threading.Thread):
    """One stream, read on a thread: (lag, event) for every message."""

    def __init__(self, daemon: Daemon):
        super().__init__(daemon=True)
        self._daemon = daemon
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.late = 0
        self.open = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with self._daemon.http(60) as http, http.stream("GET", "/ui/stream") as answer:
            assert answer.status_code == 200, answer.status_code
            self.open.set()
            data = resume = None
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                elif line.startswith("id: "):
                    resume = line[4:]
                elif line == "" and data is not None:
                    event = json.loads(data)
                    made = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
                    self.got.append((time.time() - made.timestamp(), event))
                    self.late += resume != event["id"]  # stored after newer ones
                    data = None
                if self.stop.is_set():
                    return


def phase(d: Daemon, name: str, files: int, clients: int, chatty: bool) -> dict[str, Any]:
    readers = [Client(d) for _ in range(clients)]
    for r in readers:
        r.start()
        r.open.wait(10)
    if chatty:
        write_timed(d.noise / f"{name}.chat")
        time.sleep(1.0)  # the run has started printing
    closed, cpu_before, t0 = {}, _cpu_s(d.proc.pid), time.monotonic()
    for i in range(files):
        path = d.incoming / f"{name}-{i:03d}.dat"
        closed[str(path)] = write_timed(path)[0]
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = {p: t for t, p in read_markers(d.out) if p in closed}
        if len(started) == len(closed):
            break
        time.sleep(0.1)
    cpu = (_cpu_s(d.proc.pid) - cpu_before) / (time.monotonic() - t0)
    time.sleep(0.5)  # the last lines reach the streams
    for r in readers:
        r.stop.set()
    latency = [started[p] - closed[p] for p in closed]
    result: dict[str, Any] = {"phase": name, "clients": clients, "chatty": chatty}
    result["daemon_cpu_pct"] = round(cpu * 100, 1)  # the daemon process, its workers not
    result["trigger_p50_ms"] = round(pct(latency, 0.5) * 1e3, 1)
    result["trigger_p99_ms"] = round(pct(latency, 0.99) * 1e3, 1)
    if readers:
        result.update(stream_figures(d, readers))
    return result


def stream_figures(d: Daemon, readers: list[Client]) -> dict[str, Any]:
    lags = [lag for r in readers for lag, _ in r.got]
    lines = [e for _, e in readers[0].got if e["kind"] == "output"]
    run = lines[0]["run"] if lines else None
    with d.http() as http:
        stored = http.get("/events", params={"run": run, "kind": "output", "limit": 100000})
    stored_ids = [e["id"] for e in stored.json()]
    missed = twice = in_windows = 0
    for r in readers:  # the lines each client should have had: from its first to its last
        ids = [e["id"] for _, e in r.got if e["run"] == run and e["kind"] == "output"]
        if ids:
            window = {i for i in stored_ids if ids[0] <= i <= ids[-1]}
            in_windows += len(window)
            missed += len(window - set(ids))
            twice += len(ids) - len(set(ids))
    return {
        "messages": len(lags),
        "late": sum(r.late for r in readers),
        "lag_p50_ms": round(pct(lags, 0.5) * 1e3, 1),
        "lag_p99_ms": round(pct(lags, 0.99) * 1e3, 1),
        "lag_max_ms": round(max(lags) * 1e3, 1),
        "chatty_lines_stored": in_windows,
        "missed": missed,
        "twice": twice,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    seconds = args.files * 0.1 + 4.0  # the chatty run outlasts a phase's files
    load = quiet(args.max_load, "console_live")
    results = []
    with scratch(False, "console-live") as root:
        d = Daemon(root, args.rate, seconds)
        try:
            d.wait_ready()
            for i in range(3):  # warm-up: every worker has imported the workflows
                write_timed(d.incoming / f"warm-{i}.dat")
            time.sleep(2)
            results.append(phase(d, "idle", args.files, 0, chatty=False))
            results.append(phase(d, "load", args.files, 0, chatty=True))
            time.sleep(seconds - args.files * 0.1)  # the first chatty run has ended
            results.append(phase(d, "streams", args.files, args.clients, chatty=True))
        finally:
            stop_daemon(d.proc, None)
    print(f"\n/ui/stream at {args.rate} events/s; file triggers {args.files} files a phase")
    print(
        f"{'phase':<10}{'clients':>8}{'trigger p50':>13}{'p99 ms':>8}{'lag p50':>9}"
        f"{'p99 ms':>8}{'daemon CPU':>12}"
    )
    for r in results:
        lag = f"{r.get('lag_p50_ms', '-'):>9}{r.get('lag_p99_ms', '-'):>8}"
        print(
            f"{r['phase']:<10}{r['clients']:>8}{r['trigger_p50_ms']:>13}{r['trigger_p99_ms']:>8}"
            f"{lag}{r['daemon_cpu_pct']:>11}%"
        )
    print(json.dumps({"load": load, "rate": args.rate, "phases": results}))


if __name__ == "__main__":
    main()
