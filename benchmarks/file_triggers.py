"""File triggers on the embedded default (local executor, SQLite): latency, burst, catch-up.

Usage:
    python benchmarks/file_triggers.py                      # all three parts, default sizes
    python benchmarks/file_triggers.py --latency [N]        # N files one at a time (200)
    python benchmarks/file_triggers.py --burst [N]          # N files at once (10000)
    python benchmarks/file_triggers.py --catch-up [N]       # N existing files (100000)
Options: --gap S (pause between latency files, 0.02), --max-load L (wait once, up to 60 s,
for the 1-minute load average to drop under L before each part), --keep (keep scratch dirs),
--profile DIR (run the daemons under cProfile: numbers get slower, the profile of the
event loop thread is saved as DIR/<part>.prof and its top is printed on stderr).
Prints a table per part and one JSON line; method and results are in benchmarks/README.md.

Method (every daemon is a real ``triggerd run`` subprocess in a scratch directory, with
the default executor settings: one worker process per CPU, forkserver, SQLite store):

latency   One rule on ``incoming/`` starts ``benchmarks/workflows/bench_touch.py``, whose
          only task writes ``time.time()`` at its start into a marker. After 3 warm-up
          files, N files are written one at a time, ``gap`` apart; time.time() is noted
          just before and just after each close(). Latency = task start - the time just
          before close() (on 2 cores the close() wakes the daemon, which may run before
          the writer gets the CPU back: the time after close() could flatter the result;
          both are reported). The daemon's state file splits it: close -> watcher event
          (``seen_at`` of the trigger) -> run request in the outbox (``queued_at``) ->
          task start.
burst     Same daemon (``concurrent`` unset); after 2 warm-up files, N files are written
          into one directory as fast as one Python loop can. The daemon's VmRSS (and the
          sum over its descendants: forkserver and workers) is sampled every 0.2 s. Done
          when every burst file has a succeeded run and nothing more happened for 3 s;
          runs per path are counted from ``var/state.sqlite`` and from the markers. One
          ``triggerctl status`` is sent 1 s into the burst and timed (is the API usable?).
catch-up  A tree of N files (N/1000 dirs x 1000; built once, kept as
          ``$TMPDIR/triggerd-bench-tree-N`` for the next time: delete it when done).
          In-process: ``FileSource.scan()`` of a ``closed`` watch over the tree (and
          the bare walk without the "still open for writing?" lease probe);
          a ``StateDB`` ledger filled with all N identities via ``enqueue(files=...)``
          in batches of 1000; then ``StateDB.dispatched()`` for all N. End to end: a
          daemon started on the tree with ``catch_up = "all"`` and that pre-filled
          ledger, timed from its ``daemon.started`` log line to ``source.caught_up``
          (emitted on the event loop after the last file was deduplicated), asserting
          that no run was started; meanwhile one ``triggerctl status`` is timed and the
          daemon's RSS and CPU are sampled. Warm page cache throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from triggerd.daemon.state import StateDB
from triggerd.eventlog.schema import new_id
from triggerd.sources import FileSource, FileWatch, _scan

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RULE = "bench"
IGNORE = (".*", "*.tmp")


# -- a daemon in a scratch directory ----------------------------------------------------------


class DaemonProc:
    """``triggerd run`` in ``root`` with one rule on ``watch`` running bench_touch."""

    def __init__(
        self, root: Path, watch: Path, *, catch_up: str = "none", profile: Path | None = None
    ):
        self.root, self.watch, self.out = root, watch, root / "out"
        self.profile = profile  # run the daemon under cProfile (its event loop thread), stats here
        for d in (root / "triggers", root / "var", self.out, watch):
            d.mkdir(parents=True, exist_ok=True)
        (root / "triggerd.toml").write_text(
            textwrap.dedent(f"""
            [paths]
            state_dir = "{root / 'var'}"
            workflows = ["{HERE / 'workflows'}"]
            triggers = ["{root / 'triggers'}"]
            [log]
            format = "json"
        """)
        )
        (root / "triggers" / "bench.toml").write_text(
            textwrap.dedent(f"""
            [[rule]]
            name = "{RULE}"
            workflow = "bench_touch"
            params = {{ path = "{{path}}", out = "{self.out}" }}
            [rule.files]
            roots = ["{watch}"]
            glob = "**/*"
            ignore = {json.dumps(list(IGNORE))}
            catch_up = "{catch_up}"
        """)
        )
        self.log = root / "daemon.log"
        self.state_db = root / "var" / "state.sqlite"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60, *, api: bool = True) -> DaemonProc:
        """Start; ready once ``triggerctl status`` answers (``api``) or it logged daemon.started."""
        env = {k: v for k, v in os.environ.items() if k not in ("TRIGGERD_CONFIG", "NOTIFY_SOCKET")}
        prefix = [sys.executable, "-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        self.proc = subprocess.Popen(
            [*prefix, str(BIN / "triggerd"), "run", "--config", str(self.root / "triggerd.toml")],
            cwd=self.root,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        sock = self.root / "var" / "triggerd.sock"
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"daemon exited with {self.proc.returncode}:\n"
                        f"{self.log.read_text()[-3000:]}"
                    )
                if not api and any(e.get("kind") == "daemon.started" for e in self.log_events()):
                    return self
                if api and sock.exists() and self.status()[0] == 0:
                    return self
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"daemon not ready in {timeout} s:\n{self.log.read_text()[-3000:]}"
                    )
                time.sleep(0.05)
        except BaseException:
            self.stop()  # never leave a daemon behind
            raise

    def stop(self) -> None:
        stop_daemon(self.proc, self.profile)
        self.proc = None

    def status(self, timeout: float = 30) -> tuple[int, float]:
        """``triggerctl status``: its exit code (-1: timed out) and how long it took."""
        env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
        t0 = time.monotonic()
        try:
            code = subprocess.run(
                [str(BIN / "triggerctl"), "status", "--config", str(self.root / "triggerd.toml")],
                cwd=self.root,
                env=env,
                capture_output=True,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        return code, time.monotonic() - t0

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        return query_state(self.state_db, sql, args)

    def markers(self) -> list[tuple[float, str]]:
        return read_markers(self.out)

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events


def write(path: Path) -> float:
    """Write one byte; returns time.time() just before close() (see the latency method)."""
    fh = open(path, "wb", buffering=0)
    try:
        fh.write(b"x")
        t = time.time()
    finally:
        fh.close()
    return t


def write_timed(path: Path) -> tuple[float, float]:
    """Write one byte; time.time() just before and just after close()."""
    fh = open(path, "wb", buffering=0)
    try:
        fh.write(b"x")
        before = time.time()
    finally:
        fh.close()
    return before, time.time()


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def log_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def query_state(state_db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """A read-only query of a daemon's state file (it may be running)."""
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def read_markers(out: Path) -> list[tuple[float, str]]:
    """(task start time, path) of every run's ``bench_touch`` marker in ``out``."""
    found = []
    for entry in os.scandir(out):
        with contextlib.suppress(OSError, ValueError):
            started, _, path = (
                Path(entry.path)
                .read_text(encoding="utf-8", errors="surrogateescape")
                .partition("\t")
            )
            found.append((float(started), path))
    return found


def stop_daemon(proc: subprocess.Popen | None, profile: Path | None) -> None:
    """SIGTERM (drain), kill after 60 s; then print the top of its cProfile, if it had one."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if profile and profile.exists():
        import pstats

        print(f"\nprofile of the daemon's main thread (event loop): {profile}", file=sys.stderr)
        stats = pstats.Stats(str(profile), stream=sys.stderr).strip_dirs()
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(30)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def quiet(max_load: float, part: str) -> float:
    """Wait (once, up to 60 s) for the load to drop under ``max_load``; return the load."""
    load = loadavg()
    if load > max_load:
        print(f"[{part}] load {load:.2f} > {max_load}: waiting up to 60 s", file=sys.stderr)
        with contextlib.suppress(RuntimeError):
            wait_for(lambda: loadavg() <= max_load, 60, "a quiet machine", poll=2)
        load = loadavg()
    print(f"[{part}] starting at load {load:.2f}", file=sys.stderr)
    return load


@contextlib.contextmanager
def scratch(keep: bool, name: str):
    root = Path(tempfile.mkdtemp(prefix=f"triggerd-bench-{name}-")).resolve()
    try:
        yield root
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


# -- memory of the daemon and its children ------------------------------------------------------


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class RssSampler(threading.Thread):
    """Max VmRSS of ``pid`` and max sum of VmRSS over its descendants, every ``period`` s;
    and the CPU time both used between start() and stop()."""

    def __init__(self, pid: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.max_daemon = self.max_children = self.samples = 0
        self.cpu_daemon = self.cpu_children = self.wall = 0.0
        self._stop_event = threading.Event()

    def start(self) -> None:
        self._kids0 = {k: _cpu_s(k) for k in _descendants(self.pid)}
        self._cpu0, self._t0 = _cpu_s(self.pid), time.monotonic()
        super().start()

    def run(self) -> None:
        kids: list[int] = []
        while not self._stop_event.is_set():
            if self.samples % 25 == 0:  # workers are long-lived; re-find them every 5 s
                kids = _descendants(self.pid)
            self.max_daemon = max(self.max_daemon, _rss_kb(self.pid))
            self.max_children = max(self.max_children, sum(_rss_kb(k) for k in kids))
            self.samples += 1
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.wall = time.monotonic() - self._t0
        self.cpu_daemon = _cpu_s(self.pid) - self._cpu0
        self.cpu_children = sum(_cpu_s(k) - self._kids0.get(k, 0.0) for k in _descendants(self.pid))


# -- 1. latency --------------------------------------------------------------------------------


def part_latency(n: int, gap: float, keep: bool, profile: Path | None = None) -> dict[str, Any]:
    with scratch(keep, "latency") as root:
        d = DaemonProc(
            root, root / "incoming", profile=profile and profile / "latency.prof"
        ).start()
        try:
            for i in range(3):
                write(d.watch / f"warm-{i}.dat")
            wait_for(lambda: len(d.markers()) >= 3, 60, "warm-up runs")
            closed: dict[str, float] = {}
            after: dict[str, float] = {}
            for i in range(n):
                path = d.watch / f"lat-{i:04d}.dat"
                closed[str(path)], after[str(path)] = write_timed(path)
                time.sleep(gap)
            wait_for(lambda: len(d.markers()) >= n + 3, 60, f"{n} runs")
            started = {p: t for t, p in d.markers()}
            rows = d.query(
                "SELECT json_extract(trigger, '$[0].path'), json_extract(trigger, '$[0].seen_at'), "
                "queued_at FROM runs WHERE rule = ?",
                (RULE,),
            )
        finally:
            d.stop()
    seen = {p: (s, q) for p, s, q in rows}
    lat = [started[p] - closed[p] for p in closed]
    lat_after = [started[p] - after[p] for p in closed]
    close_call = [after[p] - closed[p] for p in closed]
    to_seen = [seen[p][0] - closed[p] for p in closed]
    to_queued = [seen[p][1] - seen[p][0] for p in closed]
    to_task = [started[p] - seen[p][1] for p in closed]
    ms = lambda xs, q: round(pct(xs, q) * 1e3, 1)  # noqa: E731
    result = {
        "files": n,
        "gap_s": gap,
        "p50_ms": ms(lat, 0.5),
        "p90_ms": ms(lat, 0.9),
        "p99_ms": ms(lat, 0.99),
        "max_ms": round(max(lat) * 1e3, 1),
        "from_after_close_p50_ms": ms(lat_after, 0.5),
        "from_after_close_p99_ms": ms(lat_after, 0.99),
        "close_call_p50_ms": ms(close_call, 0.5),
        "close_call_max_ms": round(max(close_call) * 1e3, 1),
        "split_p50_ms": {
            "close_to_event": ms(to_seen, 0.5),
            "event_to_outbox": ms(to_queued, 0.5),
            "outbox_to_task": ms(to_task, 0.5),
        },
        "split_p99_ms": {
            "close_to_event": ms(to_seen, 0.99),
            "event_to_outbox": ms(to_queued, 0.99),
            "outbox_to_task": ms(to_task, 0.99),
        },
        "target": "p50 < 50 ms, p99 < 200 ms",
    }
    result["met"] = result["p50_ms"] < 50 and result["p99_ms"] < 200
    print(f"\nlatency: file closed -> first task running ({n} files, {gap * 1e3:.0f} ms apart)")
    print(f"{'':<22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, xs in (
        ("total", lat),
        ("  close -> event", to_seen),
        ("  event -> outbox", to_queued),
        ("  outbox -> task", to_task),
    ):
        print(
            f"{label:<22}{ms(xs, 0.5):>9.1f}{ms(xs, 0.9):>9.1f}"
            f"{ms(xs, 0.99):>9.1f}{max(xs) * 1e3:>9.1f}"
        )
    print(
        f"(from just after close(): p50 {result['from_after_close_p50_ms']} ms, "
        f"p99 {result['from_after_close_p99_ms']} ms;"
        f" close() itself p50 {result['close_call_p50_ms']} ms, "
        f"max {result['close_call_max_ms']} ms)"
    )
    print(f"target {result['target']}: {'met' if result['met'] else 'NOT met'}")
    return result


# -- 2. burst ------------------------------------------------------------------------------------


def part_burst(
    n: int, keep: bool, profile: Path | None = None, timeout: float = 420
) -> dict[str, Any]:
    with scratch(keep, "burst") as root:
        d = DaemonProc(root, root / "incoming", profile=profile and profile / "burst.prof").start()
        assert d.proc is not None
        sampler = RssSampler(d.proc.pid)
        try:
            for i in range(2):
                write(d.watch / f"warm-{i}.dat")
            wait_for(lambda: len(d.markers()) >= 2, 60, "warm-up runs")
            rss_idle = _rss_kb(d.proc.pid)
            sampler.start()
            # Is the control API responsive during the burst? One `triggerctl status`, timed.
            status: list[tuple[int, float]] = []
            probe = threading.Timer(1.0, lambda: status.append(d.status(timeout=300)))
            probe.daemon = True
            t0 = time.time()
            probe.start()
            for i in range(n):
                write(d.watch / f"b-{i:05d}.dat")
            t_written = time.time()
            # Done: every burst file has a succeeded run and nothing changed for 3 s.
            last, last_change, deadline = None, time.monotonic(), time.monotonic() + timeout
            while time.monotonic() < deadline:
                counts = dict(
                    d.query(
                        "SELECT state, COUNT(*) FROM runs "
                        "WHERE rule = ? AND json_extract(trigger, '$[0].path') LIKE ? "
                        "GROUP BY state",
                        (RULE, f"{d.watch}/b-%"),
                    )
                )
                if counts != last:
                    last, last_change = counts, time.monotonic()
                elif counts.get("succeeded", 0) >= n and time.monotonic() - last_change >= 3:
                    break
                elif time.monotonic() - last_change > 60:
                    break  # stuck
                time.sleep(0.5)
            sampler.stop()
            probe.join(300)
            per_path = d.query(
                "SELECT json_extract(trigger, '$[0].path'), COUNT(*) FROM runs "
                "WHERE rule = ? GROUP BY 1",
                (RULE,),
            )
            times = d.query(
                "SELECT MAX(queued_at), MAX(ended_at), COUNT(*) FROM runs "
                "WHERE rule = ? AND json_extract(trigger, '$[0].path') LIKE ?",
                (RULE, f"{d.watch}/b-%"),
            )[0]
            states = dict(d.query("SELECT state, COUNT(*) FROM runs GROUP BY state"))
            markers = d.markers()
            events = d.log_events()
        finally:
            if sampler.is_alive():
                sampler.stop()
            d.stop()
    burst = {str(d.watch / f"b-{i:05d}.dat") for i in range(n)}
    db_counts = {p: c for p, c in per_path if p in burst}
    marker_counts: dict[str, int] = {}
    for _, p in markers:
        if p in burst:
            marker_counts[p] = marker_counts.get(p, 0) + 1
    overflow = sum(1 for e in events if e.get("kind") == "source.overflow")
    result = {
        "files": n,
        "write_s": round(t_written - t0, 2),
        "all_queued_s": round(times[0] - t0, 2) if times[0] else None,
        "all_succeeded_s": round(times[1] - t0, 2)
        if times[1] and states.get("succeeded", 0) >= n
        else None,
        "runs_per_s": round(n / (times[1] - t0), 1) if times[1] else None,
        "states": states,
        "paths_with_run": len(db_counts),
        "paths_twice": sum(1 for c in db_counts.values() if c > 1),
        "paths_missing": n - len(db_counts),
        "markers": sum(marker_counts.values()),
        "marker_paths": len(marker_counts),
        "marker_paths_twice": sum(1 for c in marker_counts.values() if c > 1),
        "inotify_overflows": overflow,
        "status_during_burst_s": round(status[0][1], 2) if status else None,
        "status_exit": status[0][0] if status else None,
        "daemon_rss_idle_mb": round(rss_idle / 1024, 1),
        "daemon_rss_max_mb": round(sampler.max_daemon / 1024, 1),
        "children_rss_max_mb": round(sampler.max_children / 1024, 1),
        "rss_samples": sampler.samples,
        "daemon_cpu_s": round(sampler.cpu_daemon, 1),
        "children_cpu_s": round(sampler.cpu_children, 1),
        "target": "each file exactly once, daemon RSS < 200 MB",
    }
    result["exactly_once"] = (
        result["paths_with_run"] == n
        and result["paths_twice"] == 0
        and result["marker_paths"] == n
        and result["marker_paths_twice"] == 0
    )
    result["met"] = result["exactly_once"] and result["daemon_rss_max_mb"] < 200
    print(f"\nburst: {n} files written in {result['write_s']} s into one directory")
    print(f"{'all runs queued after':<34}{result['all_queued_s']} s")
    print(
        f"{'all runs succeeded after':<34}{result['all_succeeded_s']} s "
        f"({result['runs_per_s']} runs/s)"
    )
    print(f"{'run states':<34}{states}")
    print(
        f"{'paths with a run / twice / none':<34}"
        f"{result['paths_with_run']} / {result['paths_twice']} / {result['paths_missing']}"
    )
    print(
        f"{'markers / paths / paths twice':<34}"
        f"{result['markers']} / {result['marker_paths']} / {result['marker_paths_twice']}"
    )
    print(f"{'inotify overflows':<34}{overflow}")
    print(
        f"{'`triggerctl status` at 1 s took':<34}{result['status_during_burst_s']} s "
        f"(exit {result['status_exit']}; 2: no answer in 30 s)"
    )
    print(
        f"{'daemon RSS idle / max':<34}"
        f"{result['daemon_rss_idle_mb']} / {result['daemon_rss_max_mb']} MB"
    )
    print(f"{'children RSS max (sum)':<34}{result['children_rss_max_mb']} MB")
    print(
        f"{'CPU time daemon / children':<34}{result['daemon_cpu_s']} / {result['children_cpu_s']} s"
    )
    print(f"target {result['target']}: {'met' if result['met'] else 'NOT met'}")
    return result


# -- 3. catch-up ---------------------------------------------------------------------------------


def build_tree(n: int) -> Path:
    """N files in N/1000 directories, kept in the temp dir for the next run."""
    tree = Path(tempfile.gettempdir()).resolve() / f"triggerd-bench-tree-{n}"
    done = tree.with_name(tree.name + ".complete")
    if done.exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    dirs = max(1, n // 1000)
    t0 = time.perf_counter()
    for i in range(n):
        directory = tree / f"d{i % dirs:03d}"
        if i < dirs:
            directory.mkdir(parents=True)
        write(directory / f"f{i:06d}.dat")
    done.write_text(str(n))
    print(
        f"[catch-up] built {tree} ({n} files) in {time.perf_counter() - t0:.1f} s", file=sys.stderr
    )
    return tree


def part_catch_up(n: int, keep: bool, profile: Path | None = None) -> dict[str, Any]:
    tree = build_tree(n)
    watch = FileWatch(str(tree), complete="closed", ignore=IGNORE)
    source = FileSource([watch], lambda event: None)
    # the bare walk (scandir + stat), then the scan the daemon runs (+ the lease probe)
    t0 = time.perf_counter()
    walked = sum(1 for _ in _scan.walk_files(str(tree), recursive=True, ignore=IGNORE))
    walk_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = list(source.scan(watch))
    scan_s = time.perf_counter() - t0
    assert walked == len(events) == n, (walked, len(events), n)
    with scratch(keep, "catch-up") as root:
        (root / "var").mkdir()
        state = StateDB(root / "var" / "state.sqlite").open()
        try:
            t0 = time.perf_counter()
            for i in range(0, n, 1000):
                batch = events[i : i + 1000]
                state.enqueue(
                    run_id=new_id(),
                    key=f"bench:{i}",
                    rule=RULE,
                    workflow="bench_touch",
                    params={},
                    trigger=[{"type": "file", "files": len(batch)}],
                    files=[e.identity for e in batch],
                )
            fill_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            hits = sum(state.dispatched(RULE, e.identity) for e in events)
            dedup_s = time.perf_counter() - t0
            assert hits == n, hits
            t0 = time.perf_counter()
            misses = sum(
                state.dispatched(RULE, (e.path, e.inode, e.size, e.mtime_ns + 1))
                for e in events[:10_000]
            )
            miss_s = (time.perf_counter() - t0) * n / 10_000
            assert misses == 0
        finally:
            state.close()
        # The pre-filled runs are history, not outbox entries: mark them done.
        conn = sqlite3.connect(root / "var" / "state.sqlite")
        with conn:
            conn.execute("UPDATE runs SET state = 'succeeded', ended_at = ?", (time.time(),))
        runs_before = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        conn.close()
        # End to end: a daemon with catch_up = "all" over the tree, everything in the ledger.
        d = DaemonProc(root, tree, catch_up="all", profile=profile and profile / "catch_up.prof")
        t_spawn = time.time()
        d.start(api=False)  # the control API may not answer before the catch-up is done
        assert d.proc is not None
        sampler = RssSampler(d.proc.pid)
        sampler.start()
        # Is the control API responsive meanwhile? One `triggerctl status`, timed.
        status: list[tuple[int, float]] = []
        probe = threading.Thread(target=lambda: status.append(d.status(timeout=300)), daemon=True)
        probe.start()
        try:
            wait_for(
                lambda: any(e.get("kind") == "source.caught_up" for e in d.log_events()),
                600,
                "the catch-up to end",
                poll=0.5,
            )
            sampler.stop()
            probe.join(300)
            events_log = d.log_events()
            runs_after = d.query("SELECT COUNT(*) FROM runs")[0][0]
        finally:
            if sampler.is_alive():
                sampler.stop()
            d.stop()
    started = next(log_time(e) for e in events_log if e.get("kind") == "daemon.started")
    caught = next(e for e in events_log if e.get("kind") == "source.caught_up")
    skipped = sum(1 for e in events_log if e.get("kind") == "trigger.skipped")
    e2e_s = log_time(caught) - started
    result = {
        "files": n,
        "dirs": max(1, n // 1000),
        "walk_s": round(walk_s, 2),
        "scan_s": round(scan_s, 2),
        "scan_files_per_s": round(n / scan_s),
        "ledger_fill_s": round(fill_s, 2),
        "dedup_s": round(dedup_s, 2),
        "dedup_us_per_file": round(dedup_s / n * 1e6, 1),
        "dedup_miss_s_est": round(miss_s, 2),
        "scan_plus_dedup_s": round(scan_s + dedup_s, 2),
        "daemon_catch_up_s": round(e2e_s, 2),
        "daemon_spawn_to_caught_up_s": round(log_time(caught) - t_spawn, 2),
        "daemon_files_found": caught.get("data", {}).get("files")
        if isinstance(caught.get("data"), dict)
        else caught.get("event"),
        "daemon_skipped_logged": skipped,
        "daemon_new_runs": runs_after - runs_before,
        "status_during_catch_up_s": round(status[0][1], 2) if status else None,
        "status_exit": status[0][0] if status else None,
        "daemon_rss_max_mb": round(sampler.max_daemon / 1024, 1),
        "daemon_cpu_share": round(sampler.cpu_daemon / sampler.wall, 2) if sampler.wall else None,
        "target": "catch-up over 100k files < 10 s",
    }
    # the target is for 100k files; for fewer, scaling 10 s down would mostly time start-up
    result["met"] = (
        (result["scan_plus_dedup_s"] < 10 and result["daemon_catch_up_s"] < 10)
        if n >= 100_000
        else None
    )
    print(f"\ncatch-up: {n} existing files in {result['dirs']} directories (warm page cache)")
    print(f"{'walk (scandir + stat)':<40}{walk_s:>8.2f} s")
    print(
        f"{'FileSource.scan() (+ lease probe)':<40}{scan_s:>8.2f} s  "
        f"({result['scan_files_per_s']} files/s)"
    )
    print(f"{'ledger fill, 1000 files a transaction':<40}{fill_s:>8.2f} s")
    print(
        f"{'StateDB.dispatched() x N (all hits)':<40}{dedup_s:>8.2f} s  "
        f"({result['dedup_us_per_file']} us/file)"
    )
    print(f"{'  (all misses, extrapolated)':<40}{miss_s:>8.2f} s")
    print(f"{'scan + dedup':<40}{scan_s + dedup_s:>8.2f} s")
    print(
        f"{'daemon: started -> caught up':<40}{e2e_s:>8.2f} s  "
        f"({caught.get('event')}, {result['daemon_new_runs']} new runs)"
    )
    print(f"{'daemon: spawn -> caught up':<40}{result['daemon_spawn_to_caught_up_s']:>8.2f} s")
    print(
        f"{'daemon: `triggerctl status` meanwhile':<40}"
        f"{result['status_during_catch_up_s']:>8.2f} s "
        f"(exit {result['status_exit']}; 2: no answer in 30 s)"
    )
    print(
        f"{'daemon: RSS max, CPU (cores) meanwhile':<40}"
        f"{result['daemon_rss_max_mb']:>8.1f} MB, {result['daemon_cpu_share']}"
    )
    verdict = {True: "met", False: "NOT met", None: "not judged (fewer than 100k files)"}[
        result["met"]
    ]
    print(f"target {result['target']}: {verdict}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=int, nargs="?", const=200, metavar="N")
    parser.add_argument("--burst", type=int, nargs="?", const=10_000, metavar="N")
    parser.add_argument("--catch-up", type=int, nargs="?", const=100_000, metavar="N")
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help=(
            "run each daemon under cProfile, save <part>.prof in DIR "
            "and print the top functions (slows it down)"
        ),
    )
    args = parser.parse_args()
    if args.latency is None and args.burst is None and args.catch_up is None:
        args.latency, args.burst, args.catch_up = 200, 10_000, 100_000
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    if args.latency:
        load = quiet(args.max_load, "latency")
        results["latency"] = {
            **part_latency(args.latency, args.gap, args.keep, args.profile),
            "load": load,
        }
    if args.burst:
        load = quiet(args.max_load, "burst")
        results["burst"] = {**part_burst(args.burst, args.keep, args.profile), "load": load}
    if args.catch_up:
        load = quiet(args.max_load, "catch-up")
        results["catch_up"] = {
            **part_catch_up(args.catch_up, args.keep, args.profile),
            "load": load,
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
