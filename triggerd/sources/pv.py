"""The PV source: Channel Access monitors (pyepics) feeding each rule's condition.

One pyepics ``PV`` per distinct PV name (``auto_monitor``, ``form="time"`` for the IOC's
timestamp and the alarm severity) and one :class:`PvRuleState` per watch. pyepics calls
back on its Channel Access threads; those callbacks only convert the value to plain
Python data and put it on one queue. One thread of the source takes the queue oldest
first, so a rule's state is only ever touched there, in the order CA reported. It blocks
on the queue until the nearest pending settle (``Decision.check_at``) or connection
deadline (kept as one number, so an update costs the same with 5 PVs or 500): no
polling loop. That thread never calls into CA, so it needs no CA context.

Values reach the conditions and the events as plain data: numbers as Python numbers, an
enum as an :class:`EnumValue` (its index, and its state name fetched from the IOC once per
connect; conditions compare either, events and snapshots carry the name), a DBR_STRING as
text, a CHAR array (a waveform of CHAR such as areaDetector's ``FullFileName_RBV``, a long
string record) as text up to its first NUL (UTF-8), other arrays as lists. A value the
condition cannot compare (text under ``above``) is reported through
``on_health(pv, "error", ...)`` once per rule until a good value comes, and the source
keeps going.

A rule whose condition was met but that does not fire (inside its ``debounce``) is reported
through ``on_skipped(event, reason)``: the event it would have emitted and a short reason.
An ``increment`` rule emits one event per fire with ``index`` (the counter value) and the
values no update showed in ``missed``; with ``each = true``, one event per counter value.
Once an enum PV's state names are known (at every connect), the state names its rules
compare against are checked: a name the PV does not have is an ``error`` report and a
warning in :meth:`PvSource.health`.

Connection states, reported through ``on_health(pv, state, message)`` and
:meth:`PvSource.health`: ``connecting`` (just started), ``connected``, ``disconnected``
(lost, CA keeps searching), ``never connected`` (no IOC answered within
``connection_timeout``; CA keeps searching and a late connect becomes ``connected``).
No pyepics object leaves this module: the outside sees PvEvents and health dicts.

Measured trap: a process that also loads epicscorelibs (``import softioc``) has two
libCom/libca copies, and CA callbacks then stall until exit. Run IOCs in their own process.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from triggerd.log import get_logger
from triggerd.sources.pv_conditions import Condition, Decision, EnumValue, PvRuleState

__all__ = ["EACH_MAX", "HEALTH_STATES", "PvEvent", "PvSource", "PvWatch"]

HEALTH_STATES = ("connecting", "connected", "disconnected", "never connected")

log = get_logger(__name__)

_STOP = object()
_HELD_MAX = 1000  # enum values kept while their PV's state names are fetched
#: An ``each = true`` increment rule starts at most this many runs for one jump; a larger
#: jump is no burst of captures but a counter set by hand: the older values count as missed.
EACH_MAX = 1000
_MISSED_SHOWN = 100  # missed counter values listed in an event (all of them are counted)


@dataclass(frozen=True)
class PvEvent:
    """A PV rule that fired: ``value`` made it fire, ``old_value`` is what it was compared with.

    ``timestamp`` is the IOC's time stamp of the value, ``seen_at`` the daemon's clock when
    the source decided; ``severity`` is the alarm severity (0 NO_ALARM .. 3 INVALID).
    Values are JSON-friendly (numbers, text, lists; None for "no previous value").
    ``snapshot`` holds the rule's snapshot PVs as the source had them when the rule fired:
    name -> ``{"value", "timestamp", "severity", "connected"}`` (timestamp None: no value yet).
    An ``increment`` rule's event has ``index``, the counter value the run is for, and
    ``missed``/``missed_count``: the counter values before it that no update showed
    (at most the first 100 listed) and how many there were.
    """

    rule: str
    pv: str
    value: Any
    old_value: Any
    timestamp: float
    severity: int
    reason: str
    seen_at: float
    snapshot: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    index: int | None = None
    missed: tuple[int, ...] = ()
    missed_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        counter = {
            "index": self.index,
            "missed": list(self.missed),
            "missed_count": self.missed_count,
        }
        return {
            "type": "pv",
            "rule": self.rule,
            "pv": self.pv,
            "value": self.value,
            "old_value": self.old_value,
            "timestamp": self.timestamp,
            "severity": self.severity,
            "reason": self.reason,
            "seen_at": self.seen_at,
            "snapshot": {name: dict(taken) for name, taken in self.snapshot.items()},
            **(counter if self.index is not None else {}),
        }


@dataclass(frozen=True)
class PvWatch:
    """One rule's condition on one PV, and the PVs whose values it takes when it fires."""

    rule: str
    pv: str
    condition: Condition
    snapshot: tuple[str, ...] = ()


@dataclass
class _Channel:
    """A PV at run time: its state, the watches on it, and the pyepics object."""

    name: str
    rules: list[tuple[PvWatch, PvRuleState]]
    readers: list[str] = field(default_factory=list)  # rules taking it into their snapshot
    state: str = "connecting"
    since: float = field(default_factory=time.time)
    message: str = ""
    ever_connected: bool = False
    deadline: float = 0.0  # monotonic time after which "connecting" becomes "never connected"
    last_value: Any = None
    timestamp: float | None = None
    severity: int | None = None
    updates: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # rule -> the error last reported
    # rule -> what it names that the PV lacks
    warnings: dict[str, str] = field(default_factory=dict)
    pv: Any = None
    labels: tuple[str, ...] | None = None  # an enum PV's state names, once fetched
    fetching: bool = False
    held: list[tuple[Any, ...]] = field(default_factory=list)  # enum values waiting for labels


class PvSource:
    """Monitors every watch's PV and calls ``emit(PvEvent)`` each time a rule fires.

    ``emit``, ``on_health(pv, state, message)`` and ``on_skipped(event, reason)`` (a rule's
    condition was met but it does not fire: ``reason`` is "debounce") are called from the
    source's one thread, in the order Channel Access reported; they must be cheap and
    thread-safe.
    ``state`` is one of :data:`HEALTH_STATES` or ``"error"`` (a value a rule could not
    evaluate; the PV's connection state is unchanged). ``connection_timeout`` is how long
    a PV may take to connect at start before it is reported ``never connected``.
    """

    def __init__(
        self,
        watches: Iterable[PvWatch],
        emit: Callable[[PvEvent], None],
        *,
        on_health: Callable[[str, str, str], None] | None = None,
        on_skipped: Callable[[PvEvent, str], None] | None = None,
        connection_timeout: float = 5.0,
    ) -> None:
        self._watches = list(dict.fromkeys(watches))
        self._emit = emit
        self._on_health = on_health
        self._on_skipped = on_skipped
        self._connection_timeout = connection_timeout
        self._lock = threading.Lock()  # the channels' health fields (read by health())
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._channels: dict[str, _Channel] = {}
        self._thread: threading.Thread | None = None
        self._started = False
        # When the source's thread must next look at settles and connection deadlines
        # (monotonic; None: nothing pending). Early is harmless: _tick recomputes it.
        self._due: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the monitors and the source's thread; an absent IOC is never fatal."""
        if self._started:
            return
        import epics  # here, not at import: CA reads its EPICS_CA_* environment on first use

        self._started = True
        self._queue = queue.SimpleQueue()
        deadline = time.monotonic() + self._connection_timeout
        channels: dict[str, _Channel] = {}
        for watch in self._watches:
            for name in (watch.pv, *watch.snapshot):
                channels.setdefault(name, _Channel(name, [], deadline=deadline))
            channels[watch.pv].rules.append((watch, PvRuleState(watch.condition)))
            for name in watch.snapshot:
                channels[name].readers.append(watch.rule)
        self._channels = channels
        self._due = deadline if channels else None
        # The thread first: a channel already connected in this process calls back at once.
        self._thread = threading.Thread(target=self._run, name="triggerd-pv", daemon=True)
        self._thread.start()
        for name, channel in self._channels.items():
            channel.pv = epics.PV(
                name,
                form="time",
                auto_monitor=True,
                callback=self._on_value,
                connection_callback=self._on_connection,
                connection_timeout=self._connection_timeout,
            )
        epics.ca.flush_io()  # send the subscriptions of channels already connected now

    def stop(self) -> None:
        """Drop the monitors and callbacks, and end the thread (pending settles are dropped)."""
        if not self._started:
            return
        for channel in self._channels.values():
            pv, channel.pv = channel.pv, None
            if pv is None:
                continue
            try:
                pv.clear_callbacks(with_connect_callback=True)
                # Not ca.clear_channel: pyepics shares one CA channel per name in a
                # process, and other PV objects (a caput, another source) may use it.
                pv.disconnect()
            except Exception:
                log.exception("disconnecting a PV failed", pv=channel.name)
        self._queue.put(_STOP)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._started = False

    def backlog(self) -> int:
        """Updates Channel Access delivered that the source's thread has not handled yet."""
        return self._queue.qsize()

    def health(self) -> list[dict[str, Any]]:
        """Per PV: name, state, since (epoch s), message, last_value, timestamp, severity,
        updates (values received), rules (the rules watching it), snapshot_of (the rules
        taking its value when they fire), warnings (why a rule cannot work on this PV: a
        state name it does not have, a value the rule cannot compare)."""
        with self._lock:
            return [
                {
                    "name": c.name,
                    "state": c.state,
                    "since": c.since,
                    "message": c.message,
                    "last_value": c.last_value,
                    "timestamp": c.timestamp,
                    "severity": c.severity,
                    "updates": c.updates,
                    "rules": [w.rule for w, _ in c.rules],
                    "snapshot_of": list(c.readers),
                    "warnings": [
                        f"rule {rule!r}: {text}"
                        for rule, text in (*c.warnings.items(), *c.errors.items())
                    ],
                }
                for c in self._channels.values()
            ]

    # -- pyepics callbacks (CA threads): convert and queue, nothing else ------------------------

    def _on_connection(self, pvname: str | None = None, conn: bool = False, **_: Any) -> None:
        self._queue.put(("connection", pvname, bool(conn)))

    def _on_value(
        self,
        pvname: str | None = None,
        value: Any = None,
        ftype: Any = None,
        nelm: Any = None,
        timestamp: Any = None,
        severity: Any = None,
        **_: Any,
    ) -> None:
        try:
            native = _native(ftype)
            plain = _plain(value, native == "char" and isinstance(nelm, int) and nelm > 1)
        except Exception:  # never raise into libca
            log.exception("could not convert a PV value", pv=pvname)
            return
        self._queue.put(
            (
                "value",
                pvname,
                plain,
                float(timestamp) if timestamp is not None else time.time(),
                int(severity) if severity is not None else 0,
                native == "enum",
            )
        )

    # -- the source's thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            due = self._due
            try:
                item = self._queue.get(
                    timeout=None if due is None else max(0.0, due - time.monotonic())
                )
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            self._step(item)

    def _step(self, item: tuple[Any, ...] | None) -> None:
        """One turn of the source's thread: an item (None: the wait timed out), then the
        settles and connection deadlines that are due."""
        try:
            if item is not None:
                self._handle(item)
            if self._due is not None and time.monotonic() >= self._due:
                self._tick(time.monotonic())
        except Exception:
            log.exception("PV source failed to handle an event", item=repr(item)[:200])

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind, name = item[0], item[1]
        channel = self._channels.get(name)
        if channel is None:
            return
        now = time.monotonic()
        if kind == "connection":
            up = item[2]
            if up:
                again = channel.ever_connected
                channel.ever_connected = True
                channel.labels = None  # an IOC restarted may name its states differently
                self._set(channel, "connected", "reconnected" if again else "connected")
                for watch, state in channel.rules:
                    self._decided(channel, watch, state.connected(now), None, None)
            elif channel.state != "disconnected":
                self._set(
                    channel, "disconnected", "connection lost; Channel Access keeps searching"
                )
                for watch, state in channel.rules:
                    self._decided(channel, watch, state.disconnected(now), None, None)
            return
        if kind == "labels":
            channel.labels = item[2]
            self._check_states(channel)
            held, channel.held = channel.held, []
            for value_item in held:
                self._handle(value_item)
            return
        _, _, value, timestamp, severity, enum = item
        if enum:
            if channel.labels is None:  # the state names are on their way: keep the order
                self._fetch_labels(channel)
                channel.held.append(item)
                del channel.held[:-_HELD_MAX]
                return
            labels = channel.labels
            value = EnumValue(
                value,
                labels[value] if isinstance(value, int) and 0 <= value < len(labels) else None,
            )
        with self._lock:
            plain = (
                value.label if isinstance(value, EnumValue) and value.label is not None else value
            )
            channel.last_value, channel.timestamp, channel.severity = plain, timestamp, severity
            channel.updates += 1
        for watch, state in channel.rules:
            decision = state.update(value, timestamp=timestamp, severity=severity, now=now)
            self._decided(channel, watch, decision, timestamp, severity)

    def _check_states(self, channel: _Channel) -> None:
        """The state names the rules on an enum PV compare against, now that the IOC sent
        its own: each one it does not have is reported (again if it changed after a
        restart), and listed in health() while it lasts."""
        for watch, _ in channel.rules:
            problems = watch.condition.state_problems(channel.labels or ())
            text = "; ".join(problems)
            with self._lock:
                before = channel.warnings.pop(watch.rule, None)
                if text:
                    channel.warnings[watch.rule] = text
            if text and text != before:
                self._report(
                    channel.name, "error", f"rule {watch.rule!r}: {text}: it can never fire"
                )

    def _fetch_labels(self, channel: _Channel) -> None:
        """Ask the IOC for an enum PV's state names on a short-lived thread (a CA get may
        not run in a CA callback, and the source's thread stays out of CA); the answer
        comes back through the queue, so values keep their order."""
        if channel.fetching or channel.pv is None:
            return
        channel.fetching = True
        pv = channel.pv

        def fetch() -> None:
            labels: tuple[str, ...] = ()
            try:
                ctrl = pv.get_ctrlvars(timeout=self._connection_timeout) or {}
                labels = tuple(str(label) for label in ctrl.get("enum_strs") or ())
            except Exception:
                log.exception("could not read the state names of an enum PV", pv=channel.name)
            finally:
                channel.fetching = False
            if not labels:
                log.warning(
                    "enum PV without state names: text conditions cannot compare it",
                    pv=channel.name,
                )
            self._queue.put(("labels", channel.name, labels))

        threading.Thread(target=fetch, name="triggerd-pv-labels", daemon=True).start()

    def _tick(self, now: float) -> None:
        """Settles and connection deadlines that are due; then the next one.

        The one walk over every channel, and only when something is due (not per update:
        with 500 PVs a walk per update cost most of a core)."""
        due: list[float] = []
        for channel in self._channels.values():
            if channel.state == "connecting":
                if now >= channel.deadline:
                    self._set(
                        channel,
                        "never connected",
                        f"no IOC answered within {self._connection_timeout:g} s; still searching",
                    )
                else:
                    due.append(channel.deadline)
            for watch, state in channel.rules:
                if state.check_at is not None and now >= state.check_at:
                    self._decided(
                        channel, watch, state.tick(now), channel.timestamp, channel.severity
                    )
                if state.check_at is not None:
                    due.append(state.check_at)
        self._due = min(due, default=None)

    def _decided(
        self,
        channel: _Channel,
        watch: PvWatch,
        decision: Decision,
        timestamp: float | None,
        severity: int | None,
    ) -> None:
        if decision.check_at is not None and (self._due is None or decision.check_at < self._due):
            self._due = decision.check_at  # a settle began: wake up for it
        if decision.error is not None:
            if watch.rule not in channel.errors:  # once, not per update, until a good value
                with self._lock:
                    channel.errors[watch.rule] = decision.error
                self._report(channel.name, "error", f"rule {watch.rule!r}: {decision.error}")
            return
        if decision.value is not None and watch.rule in channel.errors:
            with self._lock:
                channel.errors.pop(watch.rule, None)
        if decision.skipped is not None and self._on_skipped is not None:
            event = self._event(channel, watch, decision, timestamp, severity)
            try:
                self._on_skipped(event, decision.skipped)
            except Exception:
                log.exception("PV skip consumer failed", rule=watch.rule, pv=channel.name)
        if not decision.fire:
            return
        for event in self._fired(channel, watch, decision, timestamp, severity):
            try:
                self._emit(event)
            except Exception:
                log.exception("PV event consumer failed", rule=watch.rule, pv=channel.name)

    def _fired(
        self,
        channel: _Channel,
        watch: PvWatch,
        decision: Decision,
        timestamp: float | None,
        severity: int | None,
    ) -> list[PvEvent]:
        """The events of one fire: one, or for ``increment`` with ``each``, one per counter
        value (at most EACH_MAX: the older values of a larger jump count as missed)."""
        counted = decision.increments
        if counted is None:
            return [self._event(channel, watch, decision, timestamp, severity)]
        if not watch.condition.each:
            return [
                self._event(
                    channel,
                    watch,
                    decision,
                    timestamp,
                    severity,
                    index=counted[-1],
                    missed=counted[:-1],
                )
            ]
        missed, runs = counted[:-EACH_MAX], counted[-EACH_MAX:]
        return [
            self._event(
                channel,
                watch,
                decision,
                timestamp,
                severity,
                index=n,
                missed=missed if n == runs[0] else range(0),
            )
            for n in runs
        ]

    def _event(
        self,
        channel: _Channel,
        watch: PvWatch,
        decision: Decision,
        timestamp: float | None,
        severity: int | None,
        *,
        index: int | None = None,
        missed: range = range(0),
    ) -> PvEvent:
        return PvEvent(
            rule=watch.rule,
            pv=channel.name,
            value=_jsonable(decision.value),
            old_value=_jsonable(decision.old_value),
            timestamp=timestamp if timestamp is not None else time.time(),
            severity=severity if severity is not None else 0,
            reason=decision.reason,
            seen_at=time.time(),
            snapshot={name: self._taken(self._channels[name]) for name in watch.snapshot},
            index=index,
            missed=tuple(missed[:_MISSED_SHOWN]),
            missed_count=len(missed),
        )

    @staticmethod
    def _taken(channel: _Channel) -> dict[str, Any]:
        """A snapshot PV as it is now (the source's thread is its only writer)."""
        return {
            "value": _jsonable(channel.last_value),
            "timestamp": channel.timestamp,
            "severity": channel.severity,
            "connected": channel.state == "connected",
        }

    def _set(self, channel: _Channel, state: str, message: str) -> None:
        with self._lock:
            if channel.state == state:
                return
            channel.state, channel.message, channel.since = state, message, time.time()
        self._report(channel.name, state, message)

    def _report(self, pv: str, state: str, message: str) -> None:
        level = logging.INFO if state == "connected" else logging.WARNING
        log.log(level, "PV " + state, pv=pv, message=message)
        if self._on_health is not None:
            try:
                self._on_health(pv, state, message)
            except Exception:
                log.exception("health consumer failed", pv=pv)


# ------------------------------------------------------------------------------- values


@functools.cache
def _native(ftype: Any) -> str:
    """What a field type is to the source: "char" (a CHAR array is text; a single CHAR, NELM
    1, stays a number), "enum", or "" (cached: it runs on every update)."""
    if ftype is None:
        return ""
    from epics import dbr

    native = dbr.native_type(ftype)
    return "char" if native == dbr.CHAR else "enum" if native == dbr.ENUM else ""


def _plain(value: Any, char: bool) -> Any:
    """A pyepics value as plain Python data; a CHAR array becomes text (see the module doc)."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy scalar or array
        value = value.tolist()
    elif isinstance(value, ctypes.Array):  # what pyepics gives for an empty or 1-element array
        value = list(value)
    if char and isinstance(value, int):
        value = [value]
    if char and isinstance(value, list):
        raw = bytes(c & 0xFF for c in value)
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, EnumValue):  # what operator screens show; the index if unnamed
        return value.label if value.label is not None else int(value)
    return value
