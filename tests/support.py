"""Helpers shared by tests: event capture, run outcomes, an executor on a temp store."""

from __future__ import annotations

import collections
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


def make_executor(tmp: Path, workflows: list[Path], collector: EventCollector, **kwargs: Any) -> tuple[LocalExecutor, SqliteDataStore]:
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


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Until ``predicate()`` is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.02)


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
d.define({{PythonTask("left", chat, queue={queue!r}): None, PythonTask("right", chat, queue={queue!r}): None}})
'''
