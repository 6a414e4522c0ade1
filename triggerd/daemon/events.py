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
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

from triggerd.config import Settings
from triggerd.errors import BackendUnavailable, TriggerdError
from triggerd.eventlog.forwarder import EventWriter, Spool, StreamForwarder
from triggerd.eventlog.schema import LogEvent
from triggerd.eventlog.store import EventStore, open_event_store
from triggerd.log import get_logger

__all__ = ["DaemonEventLog", "event_store_for", "parse_since"]

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
        self.writer = EventWriter(self.store, spool=Spool(state / "events-spool.jsonl"), pending=state / "events-pending.jsonl",
                                  target=_describe(settings))  # fmt: skip
        self.writer.listeners.append(self._stored)
        self.forwarder: StreamForwarder | None = None
        self._forwarder_stop = threading.Event()
        self._forwarder_thread: threading.Thread | None = None
        self._redis: Any = None
        self._arrived = asyncio.Condition()

    def start(self) -> None:
        try:
            self.store.open()
        except TriggerdError as exc:
            log.error("event log unavailable at start: events are spooled until it answers", error=str(exc))
        self.writer.start()
        if self._settings.executor.kind == "celery":
            from triggerd.engine.codec import Codec
            from triggerd.engine.embedded import hmac_key
            from triggerd.engine.redis_channel import connect, event_is_ours, events_stream_key

            self._redis = connect(self._settings.celery.broker_url)
            self.forwarder = StreamForwarder(
                self._redis, self.store, stream=events_stream_key(),
                spool=Spool(self._settings.paths.state_dir / "events-stream-spool.jsonl"),
                backlog_bound=self._settings.eventlog.backlog_bound,
                authentic=event_is_ours(Codec(hmac_key(self._settings))),
            )  # fmt: skip
            self.forwarder.listeners.append(self._stored)
            self._forwarder_thread = threading.Thread(
                target=self.forwarder.run, args=(self._forwarder_stop,), name="triggerd-event-forwarder", daemon=True
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
        status: dict[str, Any] = {"store": _describe(self._settings), "writer": self.writer.status()}
        if self.forwarder is not None:
            status["forwarder"] = self.forwarder.status()
        return status

    # -- queries and following -------------------------------------------------------------

    def _answers(self) -> None:
        """Refuse at once while the store is known to be down, instead of holding the
        caller for the driver's server-selection timeout."""
        reading = self.writer.health.reading
        if reading.ok is False:
            raise BackendUnavailable(
                f"the event log ({reading.target}) has been unreachable since "
                f"{datetime.fromtimestamp(reading.since).isoformat(timespec='seconds')}: {reading.error}; "
                "events wait in the daemon and are stored when it is back"
            )

    async def find(self, *, wait: float = 0.0, **query: Any) -> list[LogEvent]:
        """``store.find(**query)``; with ``wait``, if nothing matches yet, wait up to that
        many seconds for the next stored batch and ask again (long polling)."""
        self._answers()
        found = await asyncio.to_thread(self.store.open().find, **query)
        deadline = self._loop.time() + wait
        while not found and wait > 0 and (left := deadline - self._loop.time()) > 0:
            async with self._arrived:
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    return []
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
            self._arrived.notify_all()


def _describe(settings: Settings) -> str:
    from triggerd.config import mask_url_password

    return mask_url_password(settings.eventlog_target)


def parse_since(text: str | None) -> datetime | None:
    """``2h``, ``30m``, ``45s``, ``3d`` ago, or an ISO time; None for None."""
    if text is None:
        return None
    from datetime import UTC, timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"since: expected e.g. 2h, 30m, 3d or an ISO time, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
