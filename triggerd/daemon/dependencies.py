"""The services the daemon depends on, watched: each change of state is an event.

The parts that use a service (the executor for the broker and the data store, the event
writer for the event log, the journal for the state directory) keep a
:class:`~triggerd.health.Dependency` up to date from their own threads. Once a second
the daemon's loop reads them all (plain attribute reads, nothing waits on the network)
and records ``dependency.down`` / ``dependency.up`` events when one changes. The event
log takes them as soon as it can: one that is down itself spools them.

With Celery, whether some worker consumes each queue that has work waiting is asked of
the workers (a broadcast, on a thread) every :data:`QUEUE_CHECK_EVERY` seconds while
jobs wait; a queue nobody consumes at two checks in a row (workers reconnecting after a
Redis outage miss one) is a dependency that is down until a worker takes its jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from triggerd.config import CelerySettings
from triggerd.errors import TriggerdError
from triggerd.health import Dependency, Reading

__all__ = ["QUEUE_CHECK_EVERY", "DependencyWatch"]

QUEUE_CHECK_EVERY = 10.0
RecordEvent = Callable[..., None]


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}h {seconds % 3600 // 60}m"
        if seconds >= 3600
        else f"{seconds // 60}m {seconds % 60}s"
        if seconds >= 60
        else f"{seconds}s"
    )


class DependencyWatch:
    """Turns readings into ``dependency.*`` events on change; keeps the latest for status."""

    def __init__(
        self,
        record_event: RecordEvent,
        *,
        give_up_after: float,
        celery: CelerySettings | None = None,
    ):
        self._record_event = record_event
        self._give_up_after = give_up_after
        self._celery = celery
        self._last: dict[str, Reading] = {}
        self._queues: dict[str, Dependency] = {}  # Celery queues with work waiting: consumed?
        self._unconsumed: dict[str, int] = {}  # checks in a row that found no worker on a queue

    async def watch(
        self, readings: Callable[[], list[Reading]], waiting: Callable[[], dict[str, int]]
    ) -> None:
        """Once a second :meth:`check`; with Celery, every :data:`QUEUE_CHECK_EVERY`
        seconds while jobs wait (``waiting()``: jobs no worker took, by queue), ask the
        workers which queues they consume, on a thread."""
        next_queue_check = 0.0
        while True:
            self.check(readings())
            jobs = waiting()
            if jobs and self._celery is not None and time.monotonic() >= next_queue_check:
                next_queue_check = time.monotonic() + QUEUE_CHECK_EVERY
                asyncio.get_running_loop().create_task(self._check_queues(jobs))
            elif not jobs:
                self._queues.clear()
                self._unconsumed.clear()
            await asyncio.sleep(1.0)

    async def _check_queues(self, jobs: dict[str, int]) -> None:
        from triggerd.engine.celery_admin import consumed_queues  # Celery loads only when used

        assert self._celery is not None
        try:
            consumed = await asyncio.to_thread(consumed_queues, self._celery, timeout=1.0)
        except TriggerdError:
            return  # the broker is down: its own dependency says so
        for queue, count in jobs.items():
            health = self._queues.setdefault(queue, Dependency(f"queue {queue}", "Celery workers"))
            if queue in consumed:
                self._unconsumed.pop(queue, None)
                health.up()
            elif self._unconsumed.setdefault(queue, 0) >= 1:
                # twice in a row: not a worker reconnecting
                health.down(
                    f"no worker consumes queue '{queue}' ({count} jobs wait): "
                    f"start one with `triggerd worker -Q {queue}`"
                )
            else:
                self._unconsumed[queue] += 1

    def queue_readings(self) -> list[Reading]:
        return [d.reading for d in self._queues.values()]

    def check(self, readings: Iterable[Reading], now: float | None = None) -> None:
        now = time.time() if now is None else now
        seen = set()
        for reading in readings:
            seen.add(reading.name)
            before = self._last.get(reading.name)
            self._last[reading.name] = reading
            was = before.ok if before is not None else None
            if reading.ok is False and was is not False:
                self._record_event(
                    "dependency.down",
                    f"{reading.name} ({reading.target}): {reading.error}; work that needs it waits "
                    f"(runs give up after {self._give_up_after:g} s: executor.give_up_after)",
                    level="warning",
                    data=reading.to_dict(),
                )
            elif reading.ok is True and was is False:
                assert before is not None
                down_for = reading.since - before.since
                self._record_event(
                    "dependency.up",
                    f"{reading.name} ({reading.target}) answers again after {_ago(down_for)}",
                    data={**reading.to_dict(), "down_for": down_for},
                )
        for gone in set(self._last) - seen:  # a queue without jobs waiting any more, say
            if self._last[gone].ok is False:
                self._record_event(
                    "dependency.up",
                    f"{gone}: nothing waits for it any more",
                    data={**self._last[gone].to_dict(), "state": "up"},
                )
            del self._last[gone]

    def down(self) -> list[Reading]:
        return [r for r in self._last.values() if r.ok is False]
