"""The daemon's side of the event log: write, forward, query, follow.

- Every event the daemon records (its own, and the runner's) goes to an
  :class:`~triggerd.eventlog.forwarder.EventWriter`.
- With the Celery executor, workers' events (task output and log records) arrive
  through the Redis stream; a :class:`~triggerd.eventlog.forwarder.StreamForwarder`
  thread moves them into the same store.
- Queries go to the store on a worker thread; a follower (``triggerctl logs -f``)
  asks for events after the last id it saw and waits until a batch is stored.

A store that is down at start-up does not stop the daemon: events spool to files in the
state directory and are forwarded when it answers.

``triggerctl run`` records its run in the same store with a :class:`RunEventLog`, daemon
or not; what it could not store it leaves in :func:`handover_dir`, and the daemon takes
that over at start (:func:`~triggerd.eventlog.handover.adopt`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from triggerd.config import Settings
from triggerd.engine.codec import Codec
from triggerd.engine.keys import hmac_key
from triggerd.errors import BackendUnavailable, TriggerdError
from triggerd.eventlog.factory import open_event_store
from triggerd.eventlog.forwarder import EventWriter, Spool, StreamForwarder
from triggerd.eventlog.handover import Handover, adopt
from triggerd.eventlog.schema import LogEvent
from triggerd.eventlog.store import EventStore
from triggerd.log import get_logger
from triggerd.private import make_private_dir

__all__ = ["DaemonEventLog", "RunEventLog", "event_store_for", "handover_dir"]

log = get_logger("triggerd.daemon")


def event_store_for(settings: Settings) -> EventStore:
    """The event store the settings name, not opened yet."""
    options: dict[str, Any] = {"retention_days": settings.eventlog.retention_days}
    if settings.eventlog_on_mongodb:
        options["database"] = settings.eventlog.database
    return open_event_store(settings.eventlog_target, **options)


class DaemonEventLog:
    """Started by the daemon on its event loop; :meth:`record` takes every event."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop):
        self._settings = settings
        self._loop = loop
        self.store = event_store_for(settings)
        state = settings.paths.state_dir
        self.writer = EventWriter(
            self.store,
            spool=Spool(state / "events-spool.jsonl"),
            pending=state / "events-pending.jsonl",
            target=_describe(settings),
        )
        self.writer.listeners.append(self._stored)
        self.forwarder: StreamForwarder | None = None
        self._forwarder_stop = threading.Event()
        self._forwarder_thread: threading.Thread | None = None
        self._redis: Any = None
        self._arrived = asyncio.Condition()
        self._batches = 0  # stored batches announced on the loop, for followers to compare

    def start(self) -> None:
        try:
            self.store.open()
        except TriggerdError as exc:
            log.error(
                "event log unavailable at start: events are spooled until it answers",
                error=str(exc),
            )
        self.writer.start()
        try:
            # what `triggerctl run`s could not store
            adopt(handover_dir(self._settings), self.record)
        except OSError as exc:
            log.error("cannot take over the events `triggerctl run` left", error=str(exc))
        if self._settings.executor.kind == "celery":
            from triggerd.engine.redis_channel import connect, event_is_ours, events_stream_key

            self._redis = connect(self._settings.celery.broker_url)
            self.forwarder = StreamForwarder(
                self._redis,
                self.store,
                stream=events_stream_key(),
                spool=Spool(self._settings.paths.state_dir / "events-stream-spool.jsonl"),
                backlog_bound=self._settings.eventlog.backlog_bound,
                authentic=event_is_ours(Codec(hmac_key(self._settings))),
            )
            self.forwarder.listeners.append(self._stored)
            self._forwarder_thread = threading.Thread(
                target=self.forwarder.run,
                args=(self._forwarder_stop,),
                name="triggerd-event-forwarder",
                daemon=True,
            )
            self._forwarder_thread.start()

    def record(self, event: LogEvent) -> None:
        self.writer.put(event)

    def close(self) -> None:
        """Write what is queued, stop forwarding (unread entries stay in the stream)."""
        self.writer.close()
        self._forwarder_stop.set()
        if self._forwarder_thread is not None:
            self._forwarder_thread.join(10)
        if self._redis is not None:
            self._redis.close()
        self.store.close()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "store": _describe(self._settings),
            "writer": self.writer.status(),
        }
        if self.forwarder is not None:
            status["forwarder"] = self.forwarder.status()
        return status

    # -- queries and following -------------------------------------------------------------

    def _answers(self) -> None:
        """Refuse at once while the store is known to be down, instead of holding the
        caller for the driver's server-selection timeout."""
        reading = self.writer.health.reading
        if reading.ok is False:
            since = datetime.fromtimestamp(reading.since).isoformat(timespec="seconds")
            raise BackendUnavailable(
                f"the event log ({reading.target}) has been unreachable since "
                f"{since}: {reading.error}; "
                "events wait in the daemon and are stored when it is back"
            )

    async def find(self, *, wait: float = 0.0, **query: Any) -> list[LogEvent]:
        """``store.find(**query)``; with ``wait``, if nothing matches yet, wait up to that
        many seconds for the next stored batch and ask again (long polling)."""
        self._answers()
        seen = self._batches
        found = await asyncio.to_thread(self.store.open().find, **query)
        deadline = self._loop.time() + wait
        while not found and wait > 0 and (left := deadline - self._loop.time()) > 0:
            async with self._arrived:
                try:  # a batch stored while the query ran counts: no wake-up is lost
                    await asyncio.wait_for(
                        self._arrived.wait_for(lambda seen=seen: self._batches != seen), left
                    )
                except TimeoutError:
                    return []
            seen = self._batches
            found = await asyncio.to_thread(self.store.open().find, **query)
        return found

    async def runs(self, **query: Any) -> list[dict[str, Any]]:
        self._answers()
        return await asyncio.to_thread(self.store.open().runs, **query)

    async def run(self, run_id: str) -> dict[str, Any] | None:
        self._answers()
        return await asyncio.to_thread(self.store.open().run, run_id)

    def _stored(self, events: list[LogEvent]) -> None:
        """Called on the writer's or forwarder's thread after a batch went in."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._wake()))

    async def _wake(self) -> None:
        async with self._arrived:
            self._batches += 1
            self._arrived.notify_all()


def handover_dir(settings: Settings) -> Path:
    """Where ``triggerctl run`` leaves events it could not store (see
    :mod:`triggerd.eventlog.handover`): the state directory itself, whose files are all the
    daemon's own (none triggers a rule)."""
    return settings.paths.state_dir


class RunEventLog:
    """The event log of one run started by ``triggerctl run``: the store the daemon
    writes (the SQLite file or MongoDB of the settings), whether a daemon runs or not.

    :meth:`record` never waits on the store: an :class:`EventWriter` inserts on a thread
    of its own, and keeps each event in the run's :class:`Handover` until it is stored
    (or spooled, while the store is away). :meth:`close` writes what is queued, waiting
    ``timeout`` at most, and says what it could not store; that is left for the daemon's
    next start or the next ``triggerctl run``. On Celery what the tasks print and log
    reaches the workers' events stream, not the executor: a thread follows the stream
    from before the run was sent, and records the entries of this run (a daemon's
    forwarder stores them too: the store keeps one event per id).
    """

    def __init__(self, settings: Settings, run_id: str):
        self.run_id = run_id
        self._settings = settings
        self.target = _describe(settings)
        self.store = event_store_for(settings)
        self.handover = Handover(handover_dir(settings), run_id)
        self.writer: EventWriter | None = None
        self._tail: _StreamTail | None = None

    def start(self) -> None:
        """Start the writer (the store opens on its thread), take over what earlier runs
        left, follow the events stream on Celery."""
        pending: Path | None = self.handover.pending
        try:
            paths = self._settings.paths
            make_private_dir(paths.state_dir, paths.state_dir_mode)
            self.handover.claim()
        except OSError as exc:
            log.warning("events of this run cannot be kept on disk until stored", error=str(exc))
            pending = None
        self.writer = EventWriter(
            self.store, spool=Spool(self.handover.spool), pending=pending, target=self.target
        )
        self.writer.start()
        try:
            adopt(self.handover.directory, self.writer.put)
        except OSError as exc:
            log.warning("cannot take over events earlier runs left", error=str(exc))
        if self._settings.executor.kind == "celery":
            self._tail = _StreamTail(self._settings, self.run_id, self.record)
            self._tail.start()

    def record(self, event: LogEvent) -> None:
        if self.writer is not None:
            self.writer.put(event)

    def close(self, timeout: float = 10.0) -> str | None:
        """Record the stream's last entries of the run, write what is queued; None when
        everything is stored, else a warning for the operator (what waits, and where)."""
        deadline = time.monotonic() + timeout
        if self._tail is not None:
            self._tail.close(deadline)
        if self.writer is None:
            return None
        self.writer.close(max(0.1, deadline - time.monotonic()))
        left = self.handover.release()
        self.store.close()
        if not left:
            return None
        why = self.writer.last_error or "it did not answer in time"
        return (
            f"the event log ({self.target}) could not take the events of run {self.run_id} "
            f"({why}): {left} wait in {self.handover.directory} and are stored when the "
            "daemon starts, or at the next `triggerctl run`"
        )


class _StreamTail:
    """Follows the workers' events stream (without a consumer group: the daemon's stays
    whole) from its end at :meth:`start`, and hands the entries of one run to ``record``."""

    def __init__(self, settings: Settings, run_id: str, record: Callable[[LogEvent], None]):
        from triggerd.engine.redis_channel import connect, event_is_ours, events_stream_key

        self._client = connect(settings.celery.broker_url, retries=1)
        self._key = events_stream_key()
        self._authentic = event_is_ours(Codec(hmac_key(settings)))
        self._run_id = run_id
        self._run = run_id.encode()  # a quick test before an entry is parsed
        self._record = record
        self._last = "0-0"
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread = threading.Thread(
            target=self._follow, name="triggerctl-event-stream", daemon=True
        )

    def start(self) -> None:
        import redis

        try:
            newest = self._client.xrevrange(self._key, count=1)
        except redis.RedisError:
            newest = []  # the executor says Redis is away; from the start then (filtered by run)
        self._last = newest[0][0].decode() if newest else "0-0"
        self._thread.start()

    def close(self, deadline: float) -> None:
        """Read on to the stream's end as it is now (the run's tasks sent their events
        before saying they ended), until ``deadline`` at most."""
        self._deadline = deadline
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._client.close()

    def _follow(self) -> None:
        import redis

        end: tuple[int, ...] | None = None
        while True:
            stopping = self._stop.is_set()
            try:
                if stopping and end is None:
                    newest = self._client.xrevrange(self._key, count=1)
                    end = _entry_id(newest[0][0]) if newest else (0, 0)
                if end is not None and (
                    _entry_id(self._last) >= end or time.monotonic() > self._deadline
                ):
                    return
                reply = self._client.xread(
                    {self._key: self._last}, count=1000, block=None if stopping else 1000
                )
            except redis.RedisError as exc:
                if stopping:
                    log.warning("cannot read the run's last output from Redis", error=str(exc))
                    return
                self._stop.wait(1.0)
                continue
            entries = reply[0][1] if reply else []
            if stopping and not entries:
                return  # nothing newer (the daemon may have taken the rest: then it stored it)
            for entry_id, fields in entries:
                self._last = entry_id.decode()
                document = fields.get(b"e", b"")
                if self._run in document and self._authentic(document, fields.get(b"t")):
                    try:
                        event = LogEvent.from_dict(json.loads(document))
                    except ValueError:
                        continue
                    if event.run == self._run_id:
                        self._record(event)


def _entry_id(entry: bytes | str) -> tuple[int, ...]:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return tuple(int(part) for part in text.split("-"))


def _describe(settings: Settings) -> str:
    from triggerd.config import mask_url_password

    return mask_url_password(settings.eventlog_target)
