"""Files on their way from the file source to the dispatcher.

The source reports complete files on watchdog's threads; :class:`FileIntake` queues them
for the event loop, which takes them in slices of :data:`FILES_PER_TURN`, so that in a
burst of thousands of files the control API and timers still get their turns. Each file
is remembered as observed (``triggerctl explain`` shows what the daemon saw of a path)
and dispatched through the state writes, so that while the state file cannot be written
files wait in memory, in order.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from triggerd.sources.events import FileEvent

from .deferred import StateWrites
from .dispatcher import Dispatcher

__all__ = ["FILES_PER_TURN", "FileIntake"]

FILES_PER_TURN = 20  # live file events the loop takes before other callbacks get a turn
_OBSERVED_PATHS = 10_000  # paths remembered for explain, the least recent forgotten first
_OBSERVED_PER_PATH = 20


class FileIntake:
    """From the source's threads to the dispatcher, on ``loop``; ``dispatched`` is called
    after each file reached the dispatcher (the daemon re-arms its timer there)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        dispatcher: Dispatcher,
        writes: StateWrites,
        dispatched: Callable[[], None],
    ):
        self._loop = loop
        self._dispatcher = dispatcher
        self._writes = writes
        self._dispatched = dispatched
        self._incoming: collections.deque[FileEvent] = collections.deque()
        self._lock = threading.Lock()
        self._drain_scheduled = False
        # path -> what was seen of it (newest last)
        self.observed: collections.OrderedDict[str, list[dict[str, Any]]] = (
            collections.OrderedDict()
        )

    def from_source(self, event: FileEvent) -> None:
        """Called on a watchdog thread: queue for the loop, waking it if it is not yet due."""
        with self._lock:
            self._incoming.append(event)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def found(self, rule: str, events: list[FileEvent], what: str) -> None:
        """Files a scan found for ``rule`` (catch-up, reload rescan), on the loop."""
        now = time.time()
        for event in events:
            self._observe(event, now, f"found by the {what} of rule {rule}")
            self._dispatch(event, now, rules=(rule,))

    def _drain(self) -> None:
        for _ in range(FILES_PER_TURN):
            with self._lock:
                if not self._incoming:
                    self._drain_scheduled = False
                    return
                event = self._incoming.popleft()
            now = time.time()
            if not event.seen_at:
                event = dataclasses.replace(event, seen_at=now)
            self._observe(event, now, f"complete ({event.kind})")
            self._dispatch(event, now)
        self._loop.call_soon(self._drain)  # behind whatever else is ready

    def _dispatch(self, event: FileEvent, now: float, rules: tuple[str, ...] | None = None) -> None:
        """To the dispatcher; while the state file cannot be written, in order, later."""

        def dispatch() -> None:
            for run_id in self._dispatcher.on_file(event, now, rules=rules):
                self._remember(event.path, {"at": now, "what": "triggered", "run": run_id})
            self._dispatched()

        self._writes.run(f"dispatching {event.path}", dispatch)

    def _observe(self, event: FileEvent, now: float, what: str) -> None:
        self._remember(
            event.path,
            {
                "at": now,
                "what": what,
                "size": event.size,
                "inode": event.inode,
                "mtime_ns": event.mtime_ns,
            },
        )

    def _remember(self, path: str, entry: dict[str, Any]) -> None:
        seen = self.observed.setdefault(path, [])
        seen.append(entry)
        del seen[:-_OBSERVED_PER_PATH]
        self.observed.move_to_end(path)
        while len(self.observed) > _OBSERVED_PATHS:
            self.observed.popitem(last=False)
