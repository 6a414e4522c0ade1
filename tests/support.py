"""Helpers shared by tests: event capture, run outcomes, an executor on a temp store, a
trigger task running on a thread with a stop flag the test flips."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triggerd.engine.codec import Codec
from triggerd.engine.local import LocalExecutor, RunResult
from triggerd.eventlog.schema import LogEvent
from triggerd.store.sqlite import SqliteDataStore

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
TEST_KEY = b"triggerd-test-key-0123456789abcdef"


class EventCollector:
    """An event sink that keeps every event, by run id (like structlog's capture_logs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_run: dict[str, list[LogEvent]] = collections.defaultdict(list)

    def __call__(self, event: LogEvent) -> None:
        with self._lock:
            self.by_run[event.run or ""].append(event)

    def of(self, run_id: str) -> list[LogEvent]:
        with self._lock:
            return list(self.by_run.get(run_id, []))


@dataclass
class Outcome:
    """What a test sees of a finished run."""

    result: RunResult
    store: dict[str, Any]  # {"meta": {...}, "data": {...}}, decoded
    events: list[LogEvent] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.result.status

    def states(self, dag: str) -> dict[str, str]:
        return self.result.tasks[dag]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def make_executor(
    tmp: Path, workflows: list[Path], collector: EventCollector, **kwargs: Any
) -> tuple[LocalExecutor, SqliteDataStore]:
    codec = Codec(TEST_KEY)
    store = SqliteDataStore(tmp / "store.sqlite", codec).open()
    executor = LocalExecutor(
        workflows=workflows,
        codec_key=TEST_KEY,
        store=store,
        store_path=tmp / "store.sqlite",
        keep_data=True,
        on_event=collector,
        **kwargs,
    )
    return executor, store


def celery_sections(cluster: Any) -> str:
    """The [store], [security] and [celery] of a config whose runs go to ``cluster``'s
    workers (the session's celery_cluster: its store, key and broker)."""
    return (
        f'[store]\npath = "{cluster.root / "store.sqlite"}"\n'
        f'[security]\nhmac_key = "{TEST_KEY.decode()}"\n'
        f'[celery]\nbroker_url = "{cluster.redis.url}"\n'
    )


def stop_process(
    process: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Send ``sig`` (SIGTERM: shut down) to a server the tests started; SIGKILL if it is
    still there after ``timeout`` seconds. A process that has exited is left alone."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_kib(pid: int) -> int:
    """A process's resident memory now, in KiB (/proc/PID/status VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    """The user + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Call ``predicate()`` every ``interval`` seconds until it returns something true, and
    return that. After ``timeout`` seconds the test fails, naming ``what`` was waited for,
    the last value seen and ``detail()`` (a log tail, say). Exceptions are not caught: a
    predicate raises to fail at once (a process that died is not worth waiting for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = repr(value) if len(repr(value)) <= 500 else repr(value)[:500] + "..."
            message = f"timed out after {timeout:g} s waiting for {what}; last seen: {seen}"
            if detail is not None:
                message += "\n" + detail()
            raise AssertionError(message)
        time.sleep(interval)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, for TCP and for UDP (Channel Access
    uses both on its server port; other servers need only TCP)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port of 127.0.0.1 is free for both TCP and UDP")


def overlapping_pair(queue: str) -> str:
    """A workflow body (after a header importing triggerd.flow, logging, os and time):
    tasks 'left' and 'right' on ``queue`` wait for each other to start (files in the
    ``rendezvous`` directory), then each prints and logs 30 lines, so they overlap."""
    return f'''
parameters = Parameters([Option("rendezvous")])
def chat(data, store, signal, context):
    me = context.task_name
    other = "right" if me == "left" else "left"
    os.close(os.open(os.path.join(store.get("rendezvous"), me), os.O_CREAT))
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(store.get("rendezvous"), other)):
        assert time.monotonic() < deadline, "the other task never started"
        time.sleep(0.01)
    for i in range(30):
        print(me, i)
        logging.getLogger(me).warning("%s logged %d", me, i)
        time.sleep(0.005)
d = Dag("d")
d.define({{
    PythonTask("left", chat, queue={queue!r}): None,
    PythonTask("right", chat, queue={queue!r}): None,
}})
'''


class FakeSignal:
    """A task signal whose stop flag a test flips; records start_dag calls and stop checks."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self.checks = 0
        self.started: list[tuple[str, object]] = []

    @property
    def is_stopped(self) -> bool:
        self.checks += 1
        return self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()

    def start_dag(self, dag, *, data=None):
        self.started.append((dag, data))
        return f"{dag}:{len(self.started)}"


def run_task(task, data=None, signal=None) -> Any:
    """Run a task the way a worker does (``task._run``), without a store or context."""
    return task._run(data=data, store=None, signal=signal or FakeSignal(), context=None)


class Background:
    """Run a trigger task on a thread; ready once it first looked at the stop flag."""

    def __init__(self, task, data=None) -> None:
        self.signal = FakeSignal()
        self.error: BaseException | None = None
        self.result: Any = None

        def target() -> None:
            try:
                self.result = run_task(task, data, self.signal)
            except BaseException as exc:  # re-raised in the test by stop()
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        wait_for(lambda: self.signal.checks > 0 or not self.thread.is_alive())

    def stop(self, within: float = 2.0) -> float:
        """Flip the stop flag; return how long the task took to end (re-raises its error)."""
        start = time.monotonic()
        self.signal.stop()
        self.thread.join(within)
        assert not self.thread.is_alive(), f"task still running {within} s after the stop"
        if self.error is not None:
            raise self.error
        return time.monotonic() - start
