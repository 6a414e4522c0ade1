"""triggerd deployed as a beamline runs it, for breaking on purpose.

A :class:`Deployment` is the daemon (``executor.kind = "celery"``), ``triggerd worker``
processes, a redis-server with its append-only file, and a MongoDB-wire server holding
both the data store and the event log, each a separate process in a scratch directory.
One rule runs the workflow ``probe`` (a chain of tasks) for every file dropped into
``incoming/``; each task appends one line to ``executions.jsonl`` (the ground truth of
what ran, written by the tasks themselves) and prints one line (an ``output`` event).

:meth:`Deployment.audit` compares what was dropped with what happened: one run per file,
each succeeded, each task executed once, every event in the event log once.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
from mongo_fixture import MongoServer
from redis_fixture import RedisServer, WorkerProcess
from support import rss_kib, wait_for

from triggerd.config import CelerySettings
from triggerd.daemon.client import ControlClient
from triggerd.engine.protocol import celery_app

__all__ = ["FULL", "Audit", "Deployment", "Load"]

BIN = Path(sys.executable).parent
# `make faults` (TRIGGERD_FAULTS=full): the loads and outages of the issue; otherwise a
# shorter version of every scenario that fits the CI budget.
FULL = os.environ.get("TRIGGERD_FAULTS") == "full"
FINAL = ("succeeded", "failed", "aborted", "stopped", "rejected")


@dataclass(frozen=True)
class Load:
    files: int
    rate: float  # files a second
    outage: float  # seconds a service stays away

    def describe(self) -> str:
        return f"{self.files} files at {self.rate:g}/s"


def probe_workflow(tasks: int) -> str:
    chain = ", ".join(f"tasks[{i}]: tasks[{i + 1}]" for i in range(tasks - 1)) or "tasks[0]: None"
    return textwrap.dedent(f'''
        """A chain of {tasks} tasks; each records that it ran (executions.jsonl) and
        prints a line."""
        import json, os, time
        from triggerd.flow import Dag, Option, Parameters, PythonTask

        parameters = Parameters(
            [Option("path"), Option("ledger"), Option("hold", default=0.0, type=float)]
        )


        def step(data, store, signal, context):
            line = json.dumps({{
                "run": context.workflow_id, "task": context.task_name, "pid": os.getpid(),
                "path": store.get("path"), "at": time.time(),
            }})
            fd = os.open(store.get("ledger"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode() + b"\\n")
            finally:
                os.close(fd)
            print(context.task_name, "of", store.get("path"))
            time.sleep(store.get("hold"))


        tasks = [PythonTask(f"t{{i}}", step) for i in range(1, {tasks} + 1)]
        main = Dag("main")
        main.define({{{chain}}})
    ''')


@dataclass
class Audit:
    """What happened to the files of one scenario, against what should have."""

    files: int
    runs: int = 0
    succeeded: int = 0
    executions: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    falsely_succeeded: list[str] = field(default_factory=list)
    reexecuted: list[str] = field(default_factory=list)  # allowed: a worker died mid-task

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.falsely_succeeded)

    def summary(self) -> str:
        return (
            f"{self.files} files, {self.runs} runs ({self.succeeded} succeeded), "
            f"{self.executions} task executions; lost {len(self.lost)}, duplicated "
            f"{len(self.duplicated)}, falsely succeeded {len(self.falsely_succeeded)}"
        )

    def assert_clean(self) -> None:
        problems = [*self.lost[:10], *self.duplicated[:10], *self.falsely_succeeded[:10]]
        assert self.clean, self.summary() + "\n" + "\n".join(problems)


class Deployment:
    """See the module docstring; ``with Deployment(root) as d:`` starts everything."""

    def __init__(
        self,
        root: Path,
        *,
        tasks: int = 3,
        workers: int = 2,
        concurrency: int = 2,
        visibility_timeout: float = 20.0,
        hold: float = 0.0,
        extra_config: str = "",
        state_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.root = root
        self.tasks = tasks
        self.hold = hold
        self.env = env or {}  # for the daemon (e.g. its Channel Access addresses)
        self.incoming = root / "incoming"
        self.state = state_dir or root / "state"
        self.ledger = root / "executions.jsonl"
        for d in (
            self.incoming,
            root / "workflows",
            root / "triggers",
            root / "redis",
            root / "mongo",
        ):
            d.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(root / "redis", appendonly=True)
        self.mongo = MongoServer(root / "mongo")
        self.mongo.start()
        (root / "workflows" / "probe.py").write_text(probe_workflow(tasks))
        (root / "triggers" / "probe.toml").write_text(self.rule())
        self.config = root / "triggerd.toml"
        self.config.write_text(
            textwrap.dedent(f"""
            [paths]
            state_dir = "{self.state}"
            workflows = ["{root / 'workflows'}"]
            triggers = ["{root / 'triggers'}"]
            [executor]
            kind = "celery"
            stop_grace = 2.0
            [celery]
            broker_url = "{self.redis.url}"
            visibility_timeout = {visibility_timeout}
            [mongodb]
            url = "{self.mongo.url}"
            database = "faults"
            [log]
            format = "json"
            level = "info"
            [daemon]
            drain_timeout = 5.0
        """)
            + extra_config
        )
        self._worker_names = [f"w{i}@faults" for i in range(1, workers + 1)]
        self._concurrency = concurrency
        self.workers: list[WorkerProcess] = []
        self.daemon: subprocess.Popen | None = None
        self.daemon_log = root / "daemon.log"
        self.app = celery_app(CelerySettings(broker_url=self.redis.url), name="faults-probe")

    def rule(self, *, extra: str = "", ignore: str = '["*.tmp"]') -> str:
        return textwrap.dedent(f"""
            [[rule]]
            name = "probe"
            workflow = "probe"
            params = {{ path = "{{path}}", ledger = "{self.ledger}", hold = {self.hold} }}
            {extra}
            [rule.files]
            roots = ["{self.incoming}"]
            glob = "*.dat"
            ignore = {ignore}
        """)

    # -- processes ------------------------------------------------------------------------

    def __enter__(self) -> Deployment:
        # Workers first, as systemd may start them: they wait for the daemon's HMAC key.
        try:
            self.workers = [self._worker(name) for name in self._worker_names]
            self.start_daemon()
            for worker in self.workers:
                worker.wait_ready(self.app, timeout=60)
        except BaseException:  # nothing left running: __exit__ does not run for a failed start
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _worker(self, name: str) -> WorkerProcess:
        return WorkerProcess(
            self.config,
            name,
            ["-c", str(self._concurrency)],
            self.root / f"{name.split('@')[0]}.log",
        )

    def start_worker(self, name: str, *, wait: bool = True) -> WorkerProcess:
        worker = self._worker(name)
        self.workers.append(worker)
        if wait:
            worker.wait_ready(self.app, timeout=60)
        return worker

    def kill_worker(self, worker: WorkerProcess) -> None:
        """kill -9 of the whole worker: its main process and its pool."""
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        self.workers.remove(worker)

    def start_daemon(self, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("TRIGGERD_CONFIG", "NOTIFY_SOCKET")}
        env.update(self.env)
        with self.daemon_log.open("ab") as out:
            self.daemon = subprocess.Popen(
                [str(BIN / "triggerd"), "run", "--config", str(self.config)],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            self._answers_while_running,
            timeout,
            "the daemon to answer",
            interval=0.1,
            detail=self.tail,
        )

    def _answers_while_running(self) -> bool:
        assert self.daemon is not None
        if self.daemon.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.daemon.returncode}:\n{self.tail()}")
        return self.answers()

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        try:
            return self.daemon.wait(timeout)
        finally:
            self.daemon = None

    def kill_daemon(self) -> None:
        """kill -9 of the daemon alone (its workers are other processes: they go on)."""
        self.stop_daemon(signal.SIGKILL)

    def close(self) -> None:
        """Take everything down with SIGKILL: a scenario has read what happened by now, and
        a graceful stop of the daemon, the workers and MongoDB took ~10 s per scenario."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.kill_daemon()
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)
        for worker in self.workers:
            worker.process.wait()
        self.app.close()
        self.redis.stop()
        self.mongo.stop(kill=True)

    def resources(self) -> tuple[int, int]:
        """The daemon's resident memory (KiB) and open file descriptors now."""
        assert self.daemon is not None
        return rss_kib(self.daemon.pid), len(os.listdir(f"/proc/{self.daemon.pid}/fd"))

    def tail(self, chars: int = 4000) -> str:
        return (
            self.daemon_log.read_text(errors="replace")[-chars:] if self.daemon_log.exists() else ""
        )

    # -- the control API --------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.state / "triggerd.sock"

    def answers(self) -> bool:
        try:
            with ControlClient(self.socket, timeout=2.0) as client:
                client.get("/status")
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        with ControlClient(self.socket, timeout=timeout) as client:
            return client.get("/status")

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "triggerctl"), *args, "--config", str(self.config)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- load ---------------------------------------------------------------------------------

    def drop(
        self, count: int, rate: float, prefix: str, *, during: Callable[[int], None] | None = None
    ) -> list[Path]:
        """Write ``count`` files at ``rate`` a second (each written, then closed: complete);
        ``during(i)`` is called before the i-th file (to inject a fault mid-stream)."""
        paths = []
        start = time.monotonic()
        for i in range(count):
            if during is not None:
                during(i)
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            path = self.incoming / f"{prefix}_{i:04d}.dat"
            path.write_bytes(f"{prefix} {i}\n".encode())
            paths.append(path)
        return paths

    # -- what happened ---------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run row, straight from the state file (also while the daemon is down)."""
        conn = sqlite3.connect(
            f"{(self.state / 'state.sqlite').as_uri()}?mode=ro", uri=True, timeout=30
        )
        try:
            rows = conn.execute(
                "SELECT run_id, state, trigger, error, attempts FROM runs ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()
        return [
            {
                "run_id": r[0],
                "state": r[1],
                "trigger": json.loads(r[2]),
                "error": r[3],
                "attempts": r[4],
            }
            for r in rows
        ]

    def _states(self) -> dict[str, int]:
        conn = sqlite3.connect(
            f"{(self.state / 'state.sqlite').as_uri()}?mode=ro", uri=True, timeout=30
        )
        try:
            return dict(conn.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall())
        finally:
            conn.close()

    def wait_settled(self, paths: Iterable[Path], timeout: float) -> float:
        """Until every file has a run and no run is unfinished; returns when (monotonic).
        Cheap to ask (counts) until the counts say so; then it checks the files."""
        wanted = {str(p) for p in paths}

        def seen() -> set[str]:
            return {t.get("path") for r in self.runs() for t in r["trigger"]}

        def settled() -> bool:
            states = self._states()
            if sum(states.values()) < len(wanted) or not all(s in FINAL for s in states):
                return False
            return wanted <= seen()

        def detail() -> str:
            return (
                f"{len(wanted - seen())} files without a run, runs by state {self._states()}\n"
                + self.tail()
            )

        wait_for(
            settled,
            timeout,
            "every file to have a run and every run to end",
            interval=0.1,
            detail=detail,
        )
        return time.monotonic()

    def executions(self) -> collections.Counter[tuple[str, str]]:
        if not self.ledger.exists():
            return collections.Counter()
        return collections.Counter(
            (e["run"], e["task"]) for e in map(json.loads, self.ledger.read_text().splitlines())
        )

    def logged(self, run_ids: set[str]) -> collections.Counter[tuple[str, str, str]]:
        """Events in the MongoDB event log: (run, kind, task) -> how many."""
        client: pymongo.MongoClient = pymongo.MongoClient(
            self.mongo.url, serverSelectionTimeoutMS=5000
        )
        try:
            found = client["faults"]["events"].find(
                {"run": {"$in": sorted(run_ids)}}, {"run": 1, "kind": 1, "task": 1}
            )
            return collections.Counter((e["run"], e["kind"], e.get("task") or "") for e in found)
        finally:
            client.close()

    def audit(
        self, paths: list[Path], *, events_within: float = 60.0, reexecution_allowed: bool = False
    ) -> Audit:
        """One run per file, each succeeded, each task executed once (more only where
        ``reexecution_allowed``: a worker died mid-task), and in the event log each run's
        end, each task's success and each execution's output line exactly once."""
        audit = Audit(len(paths))
        by_path: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for run in self.runs():
            for trigger in run["trigger"]:
                by_path[trigger.get("path")].append(run)
        mine = [run for p in paths for run in by_path.get(str(p), [])]
        audit.runs = len(mine)
        tasks = [f"t{i}" for i in range(1, self.tasks + 1)]
        executions = self.executions()
        for path in paths:
            runs = by_path.get(str(path), [])
            if not runs:
                audit.lost.append(f"{path.name}: no run")
            elif len(runs) > 1:
                audit.duplicated.append(f"{path.name}: {len(runs)} runs")
            for run in runs:
                if run["state"] != "succeeded":
                    audit.lost.append(
                        f"{path.name}: run {run['run_id']} {run['state']}: {run['error']}"
                    )
                    continue
                audit.succeeded += 1
                for task in tasks:
                    count = executions[(run["run_id"], task)]
                    if count == 0:
                        audit.falsely_succeeded.append(
                            f"{path.name}: run {run['run_id']} succeeded, {task} never ran"
                        )
                    elif count > 1:
                        (audit.reexecuted if reexecution_allowed else audit.duplicated).append(
                            f"{path.name}: {task} ran {count} times"
                        )
        audit.executions = sum(
            n for (run, _task), n in executions.items() if run in {r["run_id"] for r in mine}
        )
        succeeded = {r["run_id"] for r in mine if r["state"] == "succeeded"}
        expected = collections.Counter()
        may_lack: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for run_id in succeeded:
            expected[(run_id, "run.succeeded", "")] = 1
            for task in tasks:
                expected[(run_id, "task.succeeded", task)] = 1
                expected[(run_id, "output", task)] = executions[(run_id, task)]
                if reexecution_allowed:  # a worker killed -9 takes what it had not sent yet with it
                    may_lack[(run_id, "output", task)] = executions[(run_id, task)] - 1
        deadline = time.monotonic() + events_within
        while True:  # the forwarder may still be catching up
            logged = self.logged(succeeded)
            missing = {k: n - logged[k] for k, n in expected.items() if logged[k] < n - may_lack[k]}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        extra = {k: logged[k] - n for k, n in expected.items() if logged[k] > n}
        audit.lost += [
            f"event {kind} of {run} {task}: {n} missing" for (run, kind, task), n in missing.items()
        ]
        audit.duplicated += [
            f"event {kind} of {run} {task}: {n} extra" for (run, kind, task), n in extra.items()
        ]
        return audit


class ApiProbe:
    """Asks the control API for its status every ``period`` seconds on a thread and keeps
    the slowest answer: the daemon's event loop must never wait on Redis or MongoDB."""

    def __init__(self, deployment: Deployment, period: float = 0.25):
        self._deployment = deployment
        self._period = period
        self._stop = threading.Event()
        self.slowest = 0.0
        self.failures: list[str] = []
        self.asked = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ApiProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            t0 = time.monotonic()
            try:
                self._deployment.status(timeout=5.0)
            except Exception as exc:  # noqa: BLE001 - recorded
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self.asked += 1
