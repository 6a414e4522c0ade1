"""``/ui/stream``: the event log followed live, as server-sent events (text/event-stream).

Each event is one message: ``id:`` its event id (a browser's EventSource sends the last
one back as ``Last-Event-ID`` when it reconnects, and the stream goes on after it: nothing
lost, nothing twice), ``data:`` the event as JSON with every text passed through
:func:`~triggerd.text.shown` (the page sets it with ``textContent``; no control or bidi
character reaches it). Filters as on ``/ui/events``: ``run``, ``rule``, ``kind``,
``level``. Without ``after`` or ``Last-Event-ID`` the stream starts with what comes next.

A stream waits on the event log's own wait (it never blocks the loop), takes what is
stored in one query per wake-up (up to :data:`BATCH` events; after sending it waits
:data:`GATHER` seconds, so a query takes several stored batches), looks back for
events stored after newer ones (:class:`_Cursor`), sends a comment every
:data:`HEARTBEAT` seconds, and ends when the client goes away or the API stops
(:meth:`Streams.close`). At most :data:`MAX_STREAMS` are open at once (503 beyond).
benchmarks/console_live.py measures it at 200 events/s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from triggerd.errors import TriggerdError
from triggerd.eventlog.schema import LogEvent
from triggerd.text import dumps, shown

from ...events import DaemonEventLog
from ..base import Control, eventlog_of

__all__ = ["BATCH", "HEARTBEAT", "MAX_STREAMS", "Streams", "routes", "streams_of"]

MAX_STREAMS = 32  # open streams at once, over every client
HEARTBEAT = 15.0  # seconds between comments on a quiet stream (proxies close idle ones)
BATCH = 500  # events one query takes at most; a backlog is sent in batches of this
RETRY_MS = 2000  # how long a browser waits before it reconnects
UNAVAILABLE_RETRY = 5.0  # seconds before the event log is asked again after it failed
GATHER = 0.2  # seconds a stream waits after it sent, so that its next query takes more
SETTLE = 1.0  # seconds an event may be stored after newer ones and still be sent
LOOK_BACK = 0.25  # seconds between two look-backs for such events, while events come
LOOK_BACK_LIMIT = 20_000  # events one look-back reads at most (SETTLE s of them)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # the digits of an event id (a ULID)
_FROM_CROCKFORD = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")

routes = APIRouter(include_in_schema=False)


class Streams:
    """The open streams of one app: how many, and the signal that ends them all."""

    def __init__(self, limit: int = MAX_STREAMS):
        self.limit = limit
        self.open = 0
        self.closing = asyncio.Event()

    def close(self) -> None:
        """End every stream (at its next wake-up: at once) and refuse new ones."""
        self.closing.set()


def streams_of(app: Any) -> Streams:
    """The :class:`Streams` of ``app`` (a FastAPI app), made at the first use."""
    streams = getattr(app.state, "console_streams", None)
    if streams is None:
        streams = app.state.console_streams = Streams()
    return streams


def _displayed(value: Any) -> Any:
    """``value`` (an event as a dict) with every text, keys too, as :func:`shown` shows it."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown(k): _displayed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_displayed(v) for v in value]
    return value


def message(event: dict[str, Any], resume: str) -> bytes:
    """One SSE message: the id to resume after (the event's own, unless it came late: then
    the newest sent before it) and the event as one line of JSON."""
    return f"id: {shown(resume)}\ndata: {dumps(_displayed(event))}\n\n".encode()


@routes.get("/stream")
async def stream(
    request: Request,
    control: Control,
    run: str = "",
    rule: str = "",
    kind: str = "",
    level: str = "",
    after: str = "",
) -> Response:
    """Events as they are stored, after ``Last-Event-ID`` (or ``after``), filtered."""
    streams = streams_of(request.app)
    if streams.open >= streams.limit or streams.closing.is_set():
        return PlainTextResponse(
            f"{streams.open} streams are open, the most there may be; try again later",
            status_code=503,
            headers={"retry-after": "10"},
        )
    eventlog = eventlog_of(control)
    query: dict[str, Any] = {
        "run": run or None,
        "rule": rule or None,
        "kinds": [k for k in kind.replace(",", " ").split() if k] or None,
        "level": level or None,
    }
    start = request.headers.get("last-event-id") or after or None
    try:  # a bad filter is refused here, before the stream begins
        if start is None:  # from now on: after the newest event that matches
            newest = await eventlog.find(**query, newest_first=True, limit=1)
            start = newest[0].id if newest else None
        else:
            await eventlog.find(**query, after_id=start, limit=1)
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return StreamingResponse(
        _follow(request, eventlog, query, start, streams),
        media_type="text/event-stream; charset=utf-8",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


class _Cursor:
    """Where a stream is: ``after``, the newest id sent (a reconnect resumes after it), and
    the ids sent in the :data:`SETTLE` seconds before it.

    An id begins with the millisecond it was made, in the process that made it: a
    worker's output line may be stored after the daemon's own newer events, and a query
    "after the newest id sent" alone would skip it. :meth:`floor` is where a look-back
    query starts (SETTLE seconds back, never before where the stream began); what it
    finds that was not sent is sent then, once."""

    def __init__(self, start: str | None):
        self.start = self.after = start
        self._recent: set[str] = set()

    def fresh(self, events: list[LogEvent]) -> list[tuple[str, LogEvent]]:
        """(the id to resume after, event) for each of ``events`` not sent yet."""
        new = []
        for event in events:
            if event.id not in self._recent:
                self._recent.add(event.id)
                self.after = event.id if self.after is None else max(self.after, event.id)
                new.append((self.after, event))
        return new

    def floor(self) -> str | None:
        """The id a look-back asks after; the ids sent before it are forgotten."""
        if self.after is None:
            return None
        try:
            ms = int(self.after[:10].translate(_FROM_CROCKFORD), 32) - int(SETTLE * 1000)
        except ValueError:  # an id that is not a ULID: no look-back
            return self.after
        floor = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5)) + "0" * 16
        floor = max(floor, self.start or "")
        self._recent = {i for i in self._recent if i > floor}
        return floor


async def _follow(
    request: Request,
    eventlog: DaemonEventLog,
    query: dict[str, Any],
    start: str | None,
    streams: Streams,
) -> AsyncIterator[bytes]:
    """The messages of one stream, until the client leaves or the streams close."""
    streams.open += 1
    cursor, loop = _Cursor(start), asyncio.get_running_loop()
    closing = asyncio.ensure_future(streams.closing.wait())
    finding: asyncio.Future[Any] = closing
    sent_at, said_at, look_back_at = -SETTLE, loop.time(), None
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        while not await request.is_disconnected():
            now = loop.time()
            if look_back_at is not None and now >= look_back_at:  # what was stored late
                after, wait, limit = cursor.floor(), 0.0, LOOK_BACK_LIMIT
                look_back_at = now + LOOK_BACK if now - sent_at < SETTLE else None
            else:  # what is new
                after, limit = cursor.after, BATCH
                wait = HEARTBEAT if look_back_at is None else look_back_at - now
            finding = asyncio.ensure_future(
                eventlog.find(wait=wait, after_id=after, limit=limit, **query)
            )
            await asyncio.wait((finding, closing), return_when=asyncio.FIRST_COMPLETED)
            if not finding.done():
                return
            try:
                batch = cursor.fresh(finding.result())
            except TriggerdError as exc:  # the event log is away: say so, ask again later
                yield f": the event log cannot be read now: {shown(exc)}\n\n".encode()
                await asyncio.wait((closing,), timeout=UNAVAILABLE_RETRY)
                continue
            if batch:
                yield b"".join(message(event.to_dict(), resume) for resume, event in batch)
                sent_at = said_at = loop.time()
                look_back_at = look_back_at or sent_at + LOOK_BACK
                if len(batch) < BATCH:  # let more come: one query for several stored batches
                    await asyncio.wait((closing,), timeout=GATHER)
            elif loop.time() - said_at >= HEARTBEAT:
                yield b": still here\n\n"
                said_at = loop.time()
    finally:  # the client left (this is cancelled), the streams close, or it failed
        streams.open -= 1
        for waiting in (finding, closing):
            waiting.cancel()
