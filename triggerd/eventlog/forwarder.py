"""Getting events into the event store without losing or doubling any.

Two ways in, one store:

- :class:`StreamForwarder` (Celery): workers append events to a Redis stream; the
  daemon reads it as a consumer group, inserts each batch into the store and
  acknowledges the batch only after the insert. A daemon killed between the two reads
  the same entries again at its next start (they are still pending for its consumer),
  and the store ignores ids it has (inserts are idempotent).
- :class:`EventWriter` (the daemon's own events, and the local executor's): a queue and
  a thread that inserts in batches.

Both ride out a store that is down (MongoDB restarting, say). An event the store refuses
for what it holds (while it takes others) cannot hold up the rest: :func:`insert_isolating`
finds it and stores an ``eventlog.refused`` note in its place. The forwarder leaves the
events in the stream while fewer than ``backlog_bound`` wait there; past it, and the
writer at once (its queue is memory), they go to a :class:`Spool`: an append-only file
that is forwarded, in order, before anything newer once the store answers again. The
status (:meth:`StreamForwarder.status`) shows the backlog in the stream and the spool.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis

from triggerd.errors import BackendUnavailable
from triggerd.health import Dependency
from triggerd.log import get_logger

from .schema import LogEvent
from .store import EventStore

__all__ = ["EventWriter", "Spool", "StreamForwarder", "insert_isolating"]

_log = get_logger(__name__)

Listener = Callable[[list[LogEvent]], None]
Authentic = Callable[[bytes, "bytes | None"], bool]  # (document, tag): written by a worker?
_RETRY = 1.0  # seconds between attempts while the store is down
_STATUS_EVERY = 2.0  # seconds between two readings of the stream's backlog for status()


def insert_isolating(store: EventStore, events: Sequence[LogEvent]) -> int:
    """``store.insert(events)``; a batch refused for its content is halved until the events
    the store refuses are found, and each is stored as an ``eventlog.refused`` note (same
    id, kind and error in ``data``) so that the batches after it flow on.

    A store that is down (:class:`BackendUnavailable`) raises at once; a store that
    refuses even the small note raises the original error (the store itself is broken:
    the caller keeps the events and retries). Inserts are idempotent, so the halves
    stored before such a failure are harmless when the batch comes again. Depth-first, a
    broken store costs about log2(len(events)) attempts, not one per event.
    """
    try:
        return store.insert(list(events))
    except BackendUnavailable:
        raise
    except Exception as exc:
        if len(events) > 1:
            half = len(events) // 2
            return insert_isolating(store, events[:half]) + insert_isolating(store, events[half:])
        (event,) = events
        note = _refused(event, exc)
        try:
            store.insert([note])
        except Exception:
            raise exc from None
        _log.error(
            "the event store refused an event; a note is stored in its place",
            kind=event.kind,
            id=event.id,
            run=event.run,
            error=note.data["error"],
        )
        return 1


def _refused(event: LogEvent, exc: Exception) -> LogEvent:
    """A small stand-in for an event the store refused. It carries no run (a run summary
    the store refuses would refuse it too): ``data.run`` names it."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    return LogEvent(
        "eventlog.refused",
        f"the event store refused this {event.kind} event ({error[:200]})",
        level="error",
        workflow=event.workflow,
        dag=event.dag,
        task=event.task,
        rule=event.rule,
        data={
            "kind": event.kind,
            "run": event.run,
            "error": error,
            "message": event.message[:2000],
        },
        id=event.id,
        time=event.time,
        host=event.host,
        pid=event.pid,
        worker=event.worker,
    )


class Spool:
    """Events that could not be stored yet, in a file, oldest first (JSON lines).

    Appends are flushed and fsynced before the events they hold are acknowledged
    elsewhere, so a crash loses nothing that left the stream. ``drain`` hands the
    events to ``insert`` in batches and empties the file when all went in.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._count = self._lines()

    def _lines(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def __len__(self) -> int:
        return self._count

    def append(self, events: Iterable[LogEvent]) -> None:
        lines = [json.dumps(e.to_dict(), default=repr) + "\n" for e in events]
        if not lines:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            self._count += len(lines)

    def drain(self, insert: Callable[[list[LogEvent]], Any], batch: int = 1000) -> int:
        """Insert everything spooled; raises what ``insert`` raises (the file stays)."""
        with self._lock:
            if not self._count:
                return 0
            with self.path.open(encoding="utf-8") as f:
                events = [LogEvent.from_dict(json.loads(line)) for line in f if line.strip()]
            for start in range(0, len(events), batch):
                # idempotent: a retry after a failure is harmless
                insert(events[start : start + batch])
            self.path.unlink()
            self._count = 0
            return len(events)


class StreamForwarder:
    """Reads the events stream as a consumer group and inserts into ``store``.

    ``listeners`` see every batch once it is stored (``triggerctl logs -f`` follows the
    log this way). ``authentic`` checks each entry's tag (the daemon passes the HMAC
    key's check); an entry it refuses is stored as an ``eventlog.forged`` error instead.
    Run :meth:`run` on a thread; set ``stop`` to end it.
    """

    def __init__(
        self,
        client: redis.Redis,
        store: EventStore,
        *,
        stream: str,
        spool: Spool,
        group: str = "triggerd-forwarder",
        consumer: str = "daemon",
        batch: int = 1000,
        block: float = 1.0,
        backlog_bound: int = 100_000,
        authentic: Authentic | None = None,
    ):
        self._client = client
        self._authentic = authentic
        self._store = store
        self._stream = stream
        self._spool = spool
        self._group = group
        self._consumer = consumer
        self._batch = batch
        self._block_ms = int(block * 1000)
        self._bound = backlog_bound
        self.listeners: list[Listener] = []
        self.forwarded = 0
        self.store_ok = True
        self.redis_ok = True
        self.last_error = ""
        self._group_seen: dict[str, Any] = {}  # the group's XINFO entry, read by the loop
        self._group_read_at = 0.0

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Backlog in the stream (entries not yet read plus read and not acknowledged),
        in the spool, and whether the store and Redis answer. Never calls Redis: the
        forwarder's own thread reads the group's numbers every few seconds (the daemon's
        event loop asks, and a Redis that is down would hold it for the client's retries)."""
        group = self._group_seen
        lag, pending = group.get("lag"), group.get("pending")
        return {
            "forwarded": self.forwarded,
            "stream_lag": lag,
            "stream_pending": pending,
            "spooled": len(self._spool),
            "store_ok": self.store_ok,
            "redis_ok": self.redis_ok,
            "last_error": self.last_error,
        }

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._ensure_group(stop)
        resume = True  # first what this consumer read and did not acknowledge before a crash
        while not stop.is_set():
            try:
                if len(self._spool) and not self._drain_spool():
                    if not self._over_bound():
                        stop.wait(_RETRY)
                        continue
                entries = self._read(resume)
                self.redis_ok = True
            except redis.RedisError as exc:
                self._trouble("Redis", exc)
                self.redis_ok = False
                stop.wait(_RETRY)
                continue
            if resume and not entries:
                resume = False
                continue
            if entries:
                self._forward(entries, stop)
            self._refresh_group()

    def _refresh_group(self) -> None:
        """The numbers :meth:`status` shows, at most every ``_STATUS_EVERY`` seconds."""
        if time.monotonic() - self._group_read_at < _STATUS_EVERY:
            return
        self._group_read_at = time.monotonic()
        try:
            self._group_seen = self._group_info()
        except redis.RedisError:
            self._group_seen = {}

    def _ensure_group(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
                return
            except redis.ResponseError as exc:
                if "BUSYGROUP" in str(exc):
                    return
                raise
            except redis.RedisError as exc:
                self._trouble("Redis", exc)
                stop.wait(_RETRY)

    def _read(self, resume: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self._client.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: "0" if resume else ">"},
            count=self._batch,
            block=None if resume else self._block_ms,
        )
        return reply[0][1] if reply else []

    def _forward(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], stop: threading.Event
    ) -> None:
        ids = [entry_id for entry_id, _fields in entries]
        events = [_decode(entry_id, fields, self._authentic) for entry_id, fields in entries]
        while not stop.is_set():
            if len(self._spool) == 0 and self._insert(events):
                break
            if len(self._spool) or self._over_bound():
                self._spool.append(events)  # fsynced: safe to acknowledge
                break
            stop.wait(_RETRY)  # the store is down and the stream may hold more: wait there
        else:
            return  # stopping: unacknowledged, they are read again at the next start
        self._client.xack(self._stream, self._group, *ids)
        self._client.xdel(self._stream, *ids)  # read and stored: the stream need not keep them

    def _insert(self, events: list[LogEvent]) -> bool:
        try:
            # open: a no-op once open; a store down at start opens late
            insert_isolating(self._store.open(), events)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep the events, retry
            self._trouble("the event store", exc)
            self.store_ok = False
            return False
        if not self.store_ok:
            _log.info("event store answers again: forwarding resumes")
        self.store_ok = True
        self.forwarded += len(events)
        for listener in self.listeners:
            listener(events)
        return True

    def _drain_spool(self) -> bool:
        try:
            store = self._store.open()
            drained = self._spool.drain(lambda events: insert_isolating(store, events), self._batch)
        except Exception as exc:  # noqa: BLE001
            self._trouble("the event store", exc)
            self.store_ok = False
            return False
        _log.info("forwarded the spooled events", events=drained)
        self.store_ok = True
        self.forwarded += drained
        return True

    def _over_bound(self) -> bool:
        """More than ``backlog_bound`` entries wait in the stream: spool, do not wait."""
        try:
            lag = self._group_info().get("lag")
        except redis.RedisError:
            return False
        return lag is None or lag > self._bound  # None: Redis could not tell (trimmed): be safe

    def _group_info(self) -> dict[str, Any]:
        """Redis's XINFO GROUPS entry of this forwarder's group ({} if there is none)."""
        groups = self._client.xinfo_groups(self._stream)
        return next((g for g in groups if g["name"] in (self._group, self._group.encode())), {})

    def _trouble(self, what: str, exc: Exception) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        if message != self.last_error:
            _log.warning("event forwarding held up", error=message)
        self.last_error = message


def _decode(
    entry_id: bytes, fields: dict[bytes, bytes], authentic: Authentic | None = None
) -> LogEvent:
    """The event of a stream entry; a malformed one, or one ``authentic`` refuses (its tag
    is not a worker's), becomes an error event saying so, not a crash and not a log line."""
    if authentic is not None and not authentic(fields.get(b"e", b""), fields.get(b"t")):
        raw = repr(fields)[:500]
        return LogEvent(
            "eventlog.forged",
            f"stream entry {entry_id.decode()} does not carry a worker's tag: dropped",
            level="error",
            data={"entry": raw},
        )
    try:
        return LogEvent.from_dict(json.loads(fields[b"e"]))
    except Exception as exc:  # noqa: BLE001 - a writer may have put anything there
        raw = repr(fields)[:2000]
        return LogEvent(
            "eventlog.malformed",
            f"stream entry {entry_id.decode()} is not an event: {exc}",
            level="error",
            data={"entry": raw},
        )


class _StillDown(Exception):
    """The store was down at the last try, and the writer is closing: spool, do not wait."""


class EventWriter:
    """The daemon's own events into ``store``, in batches, from a thread of its own.

    ``put`` never blocks on the store and never raises. With ``pending``, each event is
    also appended to that file as it is put (one write, no fsync: it survives the
    process, kill -9 included), and the file is emptied whenever everything put has
    been stored or spooled; a daemon killed with events in memory stores them at its
    next start (the store ignores ids it has). While the store is down, queued events
    go to the spool.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        spool: Spool,
        pending: Path | None = None,
        batch: int = 1000,
        delay: float = 0.02,
        target: str = "the event store",
    ):
        self._store = store
        self.health = Dependency("event log", target)
        self._spool = spool
        self._batch = batch
        self._delay = delay
        self._queue: queue.SimpleQueue[LogEvent | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending_path = pending
        self._pending_fd = -1
        self._pending_lock = threading.Lock()
        self.listeners: list[Listener] = []
        self.written = 0
        self.store_ok = True
        self.last_error = ""
        self._closing = False

    def start(self) -> None:
        if self._pending_path is not None:
            self._pending_path.parent.mkdir(parents=True, exist_ok=True)
            left = Spool(self._pending_path)  # the same format: JSON lines
            if len(left):
                with left.path.open(encoding="utf-8") as f:
                    events = [LogEvent.from_dict(json.loads(line)) for line in f if line.strip()]
                _log.info(
                    "storing the events a previous run of the daemon had not stored",
                    events=len(events),
                )
                for event in events:  # in front of anything new; still in the file until stored
                    self._queue.put(event)
            self._pending_fd = os.open(
                self._pending_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
            )
        self._thread = threading.Thread(target=self._run, name="triggerd-event-writer", daemon=True)
        self._thread.start()

    def put(self, event: LogEvent) -> None:
        if self._pending_fd < 0:
            self._queue.put(event)
            return
        line = (json.dumps(event.to_dict(), default=repr) + "\n").encode()
        with self._pending_lock:
            try:
                os.write(self._pending_fd, line)
            except OSError as exc:
                # a full disk: the event is still stored, unless the daemon dies first
                self.last_error = f"cannot keep events pending on disk: {exc}"
            self._queue.put(event)

    def _requeue(self, batch: Sequence[LogEvent]) -> None:
        """Put ``batch`` back in front of what waits (a fresh queue, same order)."""
        rest: list[LogEvent | None] = []
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in [*batch, *rest]:
            self._queue.put(item)

    def _stored_everything(self) -> None:
        """Everything put so far is stored or spooled: the pending file may be emptied."""
        if self._pending_fd < 0:
            return
        with self._pending_lock:
            if self._queue.empty():
                try:
                    os.ftruncate(self._pending_fd, 0)
                except OSError:
                    pass

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop. A store known to be down is not tried again
        now (each try may take a server-selection timeout): what is queued is spooled."""
        self._closing = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._pending_fd >= 0:
            os.close(self._pending_fd)
            self._pending_fd = -1

    def status(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "queued": self._queue.qsize(),
            "spooled": len(self._spool),
            "store_ok": self.store_ok,
            "last_error": self.last_error,
        }

    def _run(self) -> None:
        closing = False
        while not closing:
            try:  # with events spooled, try the store again now and then even when idle
                first = self._queue.get(timeout=_RETRY if len(self._spool) else None)
            except queue.Empty:
                self._write([])
                continue
            if first is None:
                closing = True
                batch: list[LogEvent] = []
            else:
                batch = [first]
                time.sleep(self._delay)  # let a burst gather into one insert
            while len(batch) < self._batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: Sequence[LogEvent]) -> None:
        try:
            if self._closing and self.health.ok is False:
                raise _StillDown(self.last_error)
            store = self._store.open()  # a no-op once open; a store down at start opens late
            if len(self._spool):
                self._spool.drain(lambda events: insert_isolating(store, events), self._batch)
            if batch:
                insert_isolating(store, batch)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep the events
            message = str(exc) if isinstance(exc, _StillDown) else f"{type(exc).__name__}: {exc}"
            if message != self.last_error:
                _log.warning("event store unavailable: events spooled", error=message)
            self.last_error, self.store_ok = message, False
            self.health.down(message)
            try:
                self._spool.append(batch)
            except OSError as exc:  # the spool's disk is full too: keep them queued, in order
                self.last_error = f"{message}; cannot spool either: {exc}"
                self._requeue(batch)
                time.sleep(_RETRY)
                return
            self._stored_everything()
            return
        self.store_ok = True
        self.health.up()
        self.written += len(batch)
        self._stored_everything()
        for listener in self.listeners:
            listener(list(batch))
