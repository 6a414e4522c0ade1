"""When a PV trigger rule fires: its condition, as a state machine without I/O.

A :class:`Condition` is the ``[rule.pv]`` table of a rule file, validated. A
:class:`PvRuleState` is fed what Channel Access reports about one PV (``connected``,
``update``, ``disconnected``) plus ``tick`` calls for a pending settle, and answers each
with one :class:`Decision`. It reads no clock, starts no thread and talks to no IOC: the PV
source turns the crank, the tests feed hand-made events.

Semantics (the rule file's ``when``):

``change``
    Any new value that differs from the previous one.
``rising`` / ``falling``
    Numeric edges through ``threshold`` (default 0): rising fires when the value goes from
    ``<= threshold`` to ``> threshold`` (a bool or int goes from 0 to non-zero); falling
    fires when it goes from ``> threshold`` to ``<= threshold``.
``above`` / ``below``
    The value crosses ``threshold``: ``> threshold`` (above) or ``< threshold`` (below).
``enter_range`` / ``leave_range``
    The value enters ``low <= value <= high``, or leaves it.
``equals`` / ``not_equals`` / ``string_equals`` / ``regex``
    The value changes to one that equals ``value`` / differs from ``value`` / equals the
    text ``value`` / matches ``pattern`` (``re.search``; anchor with ``^...$``). A new file
    name matching the regex fires again even if the previous one matched too.
``transition``
    The value goes from ``from`` to ``to`` (either may be left out: any value).
``increment``
    A counter (areaDetector's ``FileNumber_RBV``, ``ArrayCounter_RBV``) went up: one fire
    per increase. Channel Access delivers the latest value, so a fast ``Capture`` 1 -> 0 -> 1
    can reach no client at all, while a counter never loses a count: a jump from n to n+k
    fires once and :attr:`Decision.missed` names the k-1 values no update showed (with
    ``each = true`` the PV source starts one run per value instead). A decrease (the counter
    reset to 0 when acquisition restarts) is a new baseline and never fires. The values are
    whole numbers; anything else is an error for the rule.

The threshold kinds (rising, falling, above, below, enter_range, leave_range) fire when
the boundary is crossed, then re-arm only once the value is ``hysteresis`` beyond the
boundary on the other side, so noise around the boundary cannot make them chatter.

An enum PV (a ``bi``/``bo``/``mbbi`` record such as areaDetector's ``Capture_RBV``) gives an
:class:`EnumValue`: its index for numbers (``falling``, ``equals = 0``), its state name
for text (``equals = "Done"``, ``transition`` from ``"Capture"`` to ``"Done"``, ``regex``).

String conditions accept ``str``, ``bytes`` and char arrays (a sequence of ints, e.g.
pyepics' numpy array): the text up to the first NUL, decoded as UTF-8.

A value that arrives with a (re)connect never fires unless the rule asks for it: what an
IOC sends when it comes back is its restart value, not something that happened (an IOC
killed during a capture comes back with ``Capture_RBV = Done`` and an empty file name: a
"Capture -> Done" seen across the outage is no capture that ended). Two explicit opt-ins:
``fire_on_connect = true`` (the first value after start-up fires if it satisfies the
condition on its own) and ``across_disconnect = "compare"`` (the first value after a
reconnect is compared with the last one before the loss, so a change made while the
connection was down fires). The default, ``across_disconnect = "ignore"``, makes it a
baseline only.

Other options: ``severity_max`` (default MAJOR: an INVALID value is ignored, it neither
fires nor becomes the value the next one is compared with); ``debounce`` (seconds of
hold-off after a fire: a fire inside it is dropped, not deferred, and the decision says
so with ``skipped = "debounce"``); ``settle`` (seconds the condition must keep holding
before the rule fires; the caller calls ``tick`` at ``Decision.check_at``).

:meth:`Condition.state_problems` checks the state names a rule compares against those of
an enum PV, once the IOC has sent them: a typo (``from = "Capture"`` where the states are
Done/Capturing) would otherwise never fire and never say why.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from triggerd.durations import parse_duration
from triggerd.errors import ConfigError

__all__ = [
    "ACROSS_DISCONNECT",
    "CONDITION_KEYS",
    "KINDS",
    "SEVERITIES",
    "Condition",
    "Decision",
    "EnumValue",
    "PvRuleState",
]

KINDS = (
    "change",
    "rising",
    "falling",
    "equals",
    "not_equals",
    "above",
    "below",
    "enter_range",
    "leave_range",
    "transition",
    "string_equals",
    "regex",
    "increment",
)
SEVERITIES = {"NO_ALARM": 0, "MINOR": 1, "MAJOR": 2, "INVALID": 3}
ACROSS_DISCONNECT = ("ignore", "compare")  # the first is the default

_NUMERIC = frozenset({"rising", "falling", "above", "below", "enter_range", "leave_range"})
_TEXT = frozenset({"string_equals", "regex"})

# The keys each kind takes beyond the common options.
_KIND_KEYS: dict[str, frozenset[str]] = {
    "change": frozenset(),
    "rising": frozenset({"threshold", "hysteresis"}),
    "falling": frozenset({"threshold", "hysteresis"}),
    "above": frozenset({"threshold", "hysteresis"}),
    "below": frozenset({"threshold", "hysteresis"}),
    "enter_range": frozenset({"low", "high", "hysteresis"}),
    "leave_range": frozenset({"low", "high", "hysteresis"}),
    "equals": frozenset({"value"}),
    "not_equals": frozenset({"value"}),
    "string_equals": frozenset({"value"}),
    "regex": frozenset({"pattern"}),
    "transition": frozenset({"from", "to"}),
    "increment": frozenset({"each"}),
}
_COMMON_KEYS = frozenset(
    {"when", "severity_max", "fire_on_connect", "across_disconnect", "debounce", "settle"}
)
#: Every key a condition may read; a rule loader can flag the others of ``[rule.pv]``.
CONDITION_KEYS = _COMMON_KEYS.union(*_KIND_KEYS.values())


class EnumValue(int):
    """The value of an enum PV: its index (it is an int) and its state name, ``label``.

    Number conditions compare the index, text conditions the label (None: the IOC's state
    names are not known, and a text condition reports that instead of guessing).
    """

    label: str | None

    def __new__(cls, index: int, label: str | None = None) -> EnumValue:
        value = super().__new__(cls, index)
        value.label = label
        return value

    def __repr__(self) -> str:
        return f"{int(self)} ({self.label!r})" if self.label is not None else str(int(self))


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Condition:
    """One rule's PV condition; build it with :meth:`parse` from the rule file's table."""

    kind: str
    threshold: float | None = None
    hysteresis: float = 0.0
    low: float | None = None
    high: float | None = None
    value: Any = None
    pattern: str | None = None
    from_value: Any = None
    to_value: Any = None
    severity_max: int = SEVERITIES["MAJOR"]
    fire_on_connect: bool = False
    across_disconnect: str = "ignore"
    debounce: float = 0.0
    settle: float = 0.0
    each: bool = False
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise _bad("when", f"unknown condition {self.kind!r} (allowed: {', '.join(KINDS)})")
        self._check_numbers()
        self._check_values()
        self._check_increment()
        self._check_limits()

    def _check_numbers(self) -> None:
        """Thresholds, hysteresis and range bounds."""
        if self.kind in ("above", "below") and self.threshold is None:
            raise _bad("threshold", f"'{self.kind}' needs a numeric threshold")
        if self.kind in ("rising", "falling") and self.threshold is None:
            object.__setattr__(self, "threshold", 0.0)
        if self.hysteresis < 0 or not math.isfinite(self.hysteresis):
            raise _bad("hysteresis", f"expected a number >= 0, not {self.hysteresis!r}")
        if self.kind in ("enter_range", "leave_range"):
            if self.low is None:
                raise _bad("low", f"'{self.kind}' needs a numeric low bound")
            if self.high is None:
                raise _bad("high", f"'{self.kind}' needs a numeric high bound")
            if self.low > self.high:
                raise _bad("high", f"expected high >= low ({self.low}), not {self.high}")
            if self.kind == "leave_range" and self.high - self.low < 2 * self.hysteresis:
                raise _bad(
                    "hysteresis",
                    f"a range {self.low}..{self.high} cannot re-arm with hysteresis "
                    f"{self.hysteresis}: expected at most {(self.high - self.low) / 2}",
                )

    def _check_values(self) -> None:
        """The values compared with: equals, string_equals, regex, transition."""
        if self.kind in ("equals", "not_equals"):
            if self.value is None:
                raise _bad("value", f"'{self.kind}' needs a value (number, bool or string)")
            if not isinstance(self.value, str) and not _is_number(self.value):
                raise _bad("value", f"expected a number, bool or string, not {self.value!r}")
        if self.kind == "string_equals" and not isinstance(self.value, str):
            raise _bad("value", f"'string_equals' needs a string value, not {self.value!r}")
        if self.kind == "regex":
            if not isinstance(self.pattern, str):
                raise _bad("pattern", f"'regex' needs a pattern string, not {self.pattern!r}")
            try:
                object.__setattr__(self, "_regex", re.compile(self.pattern))
            except re.error as exc:
                raise _bad(
                    "pattern", f"not a valid regular expression ({exc}): {self.pattern!r}"
                ) from None
        if self.kind == "transition":
            if self.from_value is None and self.to_value is None:
                raise _bad("to", "'transition' needs 'from', 'to' or both")
            for key, end in (("from", self.from_value), ("to", self.to_value)):
                if end is not None and not isinstance(end, str) and not _is_number(end):
                    raise _bad(key, f"expected a number, bool or string, not {end!r}")
            ends = [e for e in (self.from_value, self.to_value) if e is not None]
            if len({isinstance(e, str) for e in ends}) > 1:
                raise _bad("to", "'from' and 'to' must both be numbers or both be strings")

    def _check_increment(self) -> None:
        """What an increment takes and what only an increment takes."""
        if self.kind == "increment":
            if self.fire_on_connect:
                raise _bad(
                    "fire_on_connect",
                    "a counter's value at connect is no increment: "
                    "'increment' never fires on connect",
                )
            if self.settle:
                raise _bad(
                    "settle",
                    "an increment does not hold over time: "
                    "'increment' takes no settle (debounce works)",
                )
        if self.each and self.kind != "increment":
            raise _bad("each", "only when = 'increment' starts one run per value")

    def _check_limits(self) -> None:
        """Severity, reconnect behaviour and times, which every kind takes."""
        if self.severity_max not in SEVERITIES.values():
            raise _bad(
                "severity_max",
                f"expected one of {', '.join(SEVERITIES)} or 0..3, not {self.severity_max!r}",
            )
        if self.across_disconnect not in ACROSS_DISCONNECT:
            raise _bad(
                "across_disconnect",
                f"expected one of {', '.join(ACROSS_DISCONNECT)}, not {self.across_disconnect!r}",
            )
        for key in ("debounce", "settle"):
            seconds = getattr(self, key)
            if not math.isfinite(seconds) or seconds < 0:
                raise _bad(key, f"expected a duration >= 0, not {seconds!r}")

    @classmethod
    def parse(cls, mapping: Mapping[str, Any], where: str) -> Condition:
        """A condition from a rule file's table; ``where`` names the rule for errors.

        Keys not in :data:`CONDITION_KEYS` are left to the caller (``name``, ``snapshot``...);
        a condition key that the chosen kind does not take is an error (``low`` for ``above``).
        """
        kind = _parse_kind(mapping, where)
        severity = _parse_severity(mapping.get("severity_max", SEVERITIES["MAJOR"]), where)
        for key in ("fire_on_connect", "each"):
            if not isinstance(mapping.get(key, False), bool):
                raise ConfigError(
                    f"expected true or false, not {mapping[key]!r}", source=where, key=key
                )

        def number(key: str) -> float | None:
            raw = mapping.get(key)
            if raw is None:
                return None
            if not _is_number(raw) or isinstance(raw, bool) or not math.isfinite(raw):
                raise ConfigError(f"expected a number, not {raw!r}", source=where, key=key)
            return float(raw)

        def duration(key: str) -> float:
            raw = mapping.get(key, 0)
            try:
                return parse_duration(raw)
            except ValueError as exc:
                raise ConfigError(f"{exc}, not {raw!r}", source=where, key=key) from None

        try:
            return cls(
                kind=kind,
                threshold=number("threshold"),
                hysteresis=number("hysteresis") or 0.0,
                low=number("low"),
                high=number("high"),
                value=mapping.get("value"),
                pattern=mapping.get("pattern"),
                from_value=mapping.get("from"),
                to_value=mapping.get("to"),
                severity_max=severity,
                fire_on_connect=mapping.get("fire_on_connect", False),
                across_disconnect=mapping.get("across_disconnect", ACROSS_DISCONNECT[0]),
                debounce=duration("debounce"),
                settle=duration("settle"),
                each=mapping.get("each", False),
            )
        except ConfigError as exc:
            raise ConfigError(exc.reason, source=where, key=exc.key) from None

    # -- what the state machine asks of the spec

    @property
    def domain(self) -> str:
        """The values this condition compares: "number", "text" or "any"."""
        if self.kind in _NUMERIC or self.kind == "increment":
            return "number"
        if self.kind in _TEXT:
            return "text"
        ends = [e for e in (self.value, self.from_value, self.to_value) if e is not None]
        if ends:
            return "text" if isinstance(ends[0], str) else "number"
        return "any"

    @property
    def crossing(self) -> bool:
        """Whether this is a threshold kind (fires on a crossing, re-arms with hysteresis)."""
        return self.kind in _NUMERIC

    def inside(self, v: Any) -> bool:
        """The value satisfies the condition on its own (for a connect or a settle)."""
        k, t = self.kind, self.threshold
        if k in ("rising", "above"):
            return v > t
        if k == "falling":
            return v <= t
        if k == "below":
            return v < t
        if k == "enter_range":
            return self.low <= v <= self.high
        if k == "leave_range":
            return v < self.low or v > self.high
        if k in ("equals", "string_equals"):
            return _same(v, self.value)
        if k == "not_equals":
            return not _same(v, self.value)
        if k == "regex":
            assert self._regex is not None
            return self._regex.search(v) is not None
        if k == "transition":
            if self.to_value is not None:
                return _same(v, self.to_value)
            return not _same(v, self.from_value)
        return True  # change

    def rearmed(self, v: Any) -> bool:
        """For a threshold kind: the value is far enough back (hysteresis) to fire again."""
        k, t, h = self.kind, self.threshold, self.hysteresis
        if k in ("rising", "above"):
            return v <= t - h
        if k == "falling":
            return v > t + h
        if k == "below":
            return v >= t + h
        if k == "enter_range":
            return v < self.low - h or v > self.high + h
        if k == "leave_range":
            return self.low + h <= v <= self.high - h
        return True

    def describe(self) -> str:
        """A short text for reasons and logs, e.g. "above 5.0"."""
        k = self.kind
        if self.crossing and k not in ("enter_range", "leave_range"):
            return f"{k} {self.threshold:g}"
        if k in ("enter_range", "leave_range"):
            return f"{k} {self.low:g}..{self.high:g}"
        if k in ("equals", "not_equals", "string_equals"):
            return f"{k} {self.value!r}"
        if k == "regex":
            return f"regex {self.pattern!r}"
        if k == "transition":
            before = "*" if self.from_value is None else repr(self.from_value)
            after = "*" if self.to_value is None else repr(self.to_value)
            return f"transition {before} -> {after}"
        if k == "increment" and self.each:
            return "increment (each)"
        return k

    def state_problems(self, states: Sequence[str]) -> list[str]:
        """What this condition names that an enum PV with these ``states`` does not have.

        Called once the IOC sent the state names (they are not known before a connect): a
        state name that is not one of them, or an index beyond them, never matches, so
        the rule would never fire and never say why. Empty: nothing to report.
        """
        if (
            not states
            or self.domain not in ("text", "number")
            or self.kind in _NUMERIC
            or self.kind == "increment"
        ):
            return []
        named = {"value": self.value, "from": self.from_value, "to": self.to_value}
        if self.kind == "regex":
            assert self._regex is not None
            if not any(self._regex.search(state) for state in states):
                return [
                    f"pattern = {self.pattern!r} matches none of the PV's states "
                    f"({', '.join(states)})"
                ]
            return []
        problems = []
        for key, wanted in named.items():
            if wanted is None or isinstance(wanted, bool):
                continue
            if isinstance(wanted, str) and wanted not in states:
                problems.append(
                    f"{key} = {wanted!r} is not a state of the PV (its states: {', '.join(states)})"
                )
            elif not isinstance(wanted, str) and not (
                math.isfinite(wanted) and wanted == int(wanted) and 0 <= wanted < len(states)
            ):
                problems.append(
                    f"{key} = {wanted!r} is not a state index of the PV "
                    f"(0..{len(states) - 1}: {', '.join(states)})"
                )
        return problems


def _bad(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


def _parse_kind(mapping: Mapping[str, Any], where: str) -> str:
    """The table's ``when``, checked, and no condition key that kind does not take."""
    kind = mapping.get("when")
    if kind is None:
        raise ConfigError(f"missing: expected one of {', '.join(KINDS)}", source=where, key="when")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(
            f"unknown condition {kind!r} (allowed: {', '.join(KINDS)})",
            source=where,
            key="when",
        )
    for key in sorted(CONDITION_KEYS & set(mapping) - _COMMON_KEYS - _KIND_KEYS[kind]):
        raise ConfigError(
            f"not used by when = '{kind}' "
            f"(it takes: {', '.join(sorted(_KIND_KEYS[kind])) or 'no further keys'})",
            source=where,
            key=key,
        )
    return kind


def _parse_severity(raw: Any, where: str) -> int:
    """``severity_max`` as a name (``"MAJOR"``, any case) or a number; the number's range is
    the condition's to check."""
    if isinstance(raw, str) and raw.upper() in SEVERITIES:
        return SEVERITIES[raw.upper()]
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(
            f"expected one of {', '.join(SEVERITIES)} or 0..3, not {raw!r}",
            source=where,
            key="severity_max",
        )
    return raw


# ----------------------------------------------------------------------- the decisions


@dataclass(frozen=True)
class Decision:
    """What one event meant for one rule.

    ``fire``: start the rule now. ``value``/``old_value``: the (converted) value that made the
    decision and the one it was compared with. ``check_at``: a settle is pending, call
    :meth:`PvRuleState.tick` at that time. ``error``: the value could not be evaluated (wrong
    type for the condition); the state is unchanged apart from a cancelled settle.
    ``skipped``: the condition was met but the rule does not fire, as a short identifier
    for the event log ("debounce"); None otherwise. ``increments``: for ``increment``, the
    counter values this fire stands for (old + 1 .. value).
    """

    fire: bool
    reason: str
    value: Any = None
    old_value: Any = None
    check_at: float | None = None
    error: str | None = None
    skipped: str | None = None
    increments: range | None = None

    @property
    def missed(self) -> range:
        """The counter values of an increment fire that no update showed (a jump of k: k-1)."""
        return self.increments[:-1] if self.increments is not None else range(0)


@dataclass
class _Pending:
    due: float
    value: Any
    old_value: Any
    reason: str


# -------------------------------------------------------------------- the state machine


class PvRuleState:
    """One rule's view of one PV: feed it events oldest first, one :class:`Decision` each."""

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self._connected = False
        self._fresh = True  # the next value is the first after a connect
        self._has_baseline = False
        self._baseline: Any = None
        self._last_timestamp: float | None = None
        self._armed = True
        self._last_fire: float | None = None
        self._pending: _Pending | None = None

    @property
    def baseline(self) -> Any:
        """The last value accepted (the one the next value is compared with), or None."""
        return self._baseline

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def check_at(self) -> float | None:
        """When a pending settle is due, or None."""
        return self._pending.due if self._pending else None

    # -- events

    def connected(self, now: float) -> Decision:
        """The channel (re)connected: the next value is the first after a connect."""
        del now
        self._connected = True
        self._fresh = True
        return self._decision(False, "connected")

    def disconnected(self, now: float) -> Decision:
        """The channel was lost: a pending settle is cancelled; the baseline is kept."""
        del now
        self._connected = False
        self._fresh = True
        if self._pending is not None:
            self._pending = None
            return self._decision(False, "disconnected; pending settle cancelled")
        return self._decision(False, "disconnected")

    def update(self, value: Any, *, timestamp: float, severity: int = 0, now: float) -> Decision:
        """A new value from the IOC (``timestamp``: the IOC's; ``now``: the daemon's clock)."""
        cond = self.condition
        first = self._fresh
        ignored = self._ignored(value, timestamp, severity, first)
        if ignored is not None:
            return ignored
        try:
            v = _convert(value, cond.domain)
            if cond.kind == "increment":
                v = _whole(v)
        except TypeError as exc:
            return self._wrong_type(value, exc)

        self._connected = True
        self._fresh = False
        self._last_timestamp = timestamp
        old, had_baseline = self._baseline, self._has_baseline
        self._baseline, self._has_baseline = v, True

        if first:
            baseline_only = self._first_value(now, v, old, had_baseline)
            if baseline_only is not None:
                return baseline_only
        if cond.kind == "increment":
            return self._count(now, v, old)
        if self._pending is not None:
            return self._settling(now, v, old, self._pending)
        if self._matches(old, v):
            return self._trigger(now, v, old, cond.describe())
        return self._decision(False, f"not {cond.describe()}", value=v, old_value=old)

    def _ignored(self, value: Any, timestamp: float, severity: int, first: bool) -> Decision | None:
        """The decision to ignore an update older than the last one or too severe; None
        for an update to evaluate."""
        cond = self.condition
        if not first and self._last_timestamp is not None and timestamp < self._last_timestamp:
            return self._decision(
                False,
                f"out of order: timestamp {timestamp} before {self._last_timestamp}; ignored",
                value=value,
            )
        if severity > cond.severity_max:
            self._last_timestamp = timestamp
            return self._decision(
                False,
                f"severity {_severity_name(severity)} above "
                f"{_severity_name(cond.severity_max)}; ignored",
                value=value,
            )
        return None

    def _wrong_type(self, value: Any, exc: TypeError) -> Decision:
        """A value the condition cannot compare: no trigger, and a pending settle ends."""
        cond = self.condition
        cancelled = self._pending is not None
        self._pending = None
        message = f"{cond.describe()}: {exc}"
        if cond.kind == "increment":
            message = f"when = 'increment' needs a numeric counter PV (like FileNumber_RBV): {exc}"
        return self._decision(
            False,
            "wrong value type" + ("; pending settle cancelled" if cancelled else ""),
            value=value,
            old_value=self._baseline,
            error=message,
        )

    def _first_value(self, now: float, v: Any, old: Any, had_baseline: bool) -> Decision | None:
        """The first value since (re)connecting, when it only sets the baseline (or fires
        with ``fire_on_connect``); None when it is compared like any other."""
        cond = self.condition
        if not had_baseline:
            self._armed = not cond.inside(v) if cond.crossing else True
            if cond.fire_on_connect and cond.inside(v):
                return self._trigger(now, v, None, f"initial value on connect: {cond.describe()}")
            return self._decision(False, "initial value on connect; baseline only", value=v)
        if cond.across_disconnect == "ignore":
            self._armed = not cond.inside(v) if cond.crossing else True
            return self._decision(
                False,
                "first value after reconnect; baseline only "
                "(across_disconnect = 'compare' would compare it)",
                value=v,
                old_value=old,
            )
        return None

    def _settling(self, now: float, v: Any, old: Any, pending: _Pending) -> Decision:
        """A value while ``pending`` settles: does the condition still hold?"""
        cond = self.condition
        if cond.kind == "change":
            if _same(v, pending.old_value):
                self._pending = None
                return self._decision(
                    False, "changed back during settle; cancelled", value=v, old_value=old
                )
            if not _same(v, old):
                pending.due, pending.value = now + cond.settle, v
                return self._decision(False, "changed again; settling", value=v, old_value=old)
            return self._decision(False, "unchanged; settling", value=v, old_value=old)
        if cond.crossing:
            self._rearm(v)
        if cond.inside(v):
            pending.value = v
            return self._decision(False, "still holds; settling", value=v, old_value=old)
        self._pending = None
        return self._decision(
            False,
            f"no longer {cond.describe()} during settle; cancelled",
            value=v,
            old_value=old,
        )

    def tick(self, now: float) -> Decision:
        """Time passed: fire a settle that is due and still holds."""
        pending = self._pending
        if pending is None:
            return self._decision(False, "nothing pending")
        if now < pending.due:
            return self._decision(
                False, "settling", value=pending.value, old_value=pending.old_value
            )
        self._pending = None
        if self.condition.kind != "change" and not self.condition.inside(self._baseline):
            return self._decision(
                False,
                "no longer holds at settle time",
                value=self._baseline,
                old_value=pending.old_value,
            )
        return self._fire_now(
            now,
            pending.value,
            pending.old_value,
            f"{pending.reason}; settled {self.condition.settle:g}s",
        )

    # -- inside

    def _matches(self, old: Any, v: Any) -> bool:
        cond = self.condition
        if cond.crossing:
            fire = self._armed and cond.inside(v)
            self._rearm(v)
            return fire
        if _same(v, old):
            return False
        if cond.kind == "transition":
            return (cond.from_value is None or _same(old, cond.from_value)) and (
                cond.to_value is None or _same(v, cond.to_value)
            )
        return cond.inside(v)

    def _count(self, now: float, v: int, old: int) -> Decision:
        """An increment rule's value after the baseline: up fires, down is a new baseline."""
        if v > old:
            increments = range(old + 1, v + 1)
            what = "increment" if len(increments) == 1 else f"increment by {len(increments)}"
            return self._trigger(now, v, old, what, increments=increments)
        if v < old:
            return self._decision(
                False, "counter went down (reset); new baseline", value=v, old_value=old
            )
        return self._decision(False, "counter unchanged", value=v, old_value=old)

    def _rearm(self, v: Any) -> None:
        if self.condition.inside(v):
            self._armed = False
        elif self.condition.rearmed(v):
            self._armed = True

    def _trigger(
        self, now: float, v: Any, old: Any, reason: str, *, increments: range | None = None
    ) -> Decision:
        cond = self.condition
        if cond.settle > 0 and not self._debounced(now):
            self._pending = _Pending(now + cond.settle, v, old, reason)
            return self._decision(
                False, f"{reason}; settling {cond.settle:g}s", value=v, old_value=old
            )
        return self._fire_now(now, v, old, reason, increments=increments)

    def _fire_now(
        self, now: float, v: Any, old: Any, reason: str, *, increments: range | None = None
    ) -> Decision:
        if self._debounced(now):
            until = self._last_fire + self.condition.debounce  # type: ignore[operator]
            return self._decision(
                False,
                f"{reason}; suppressed by debounce until {until}",
                value=v,
                old_value=old,
                skipped="debounce",
                increments=increments,
            )
        self._last_fire = now
        return self._decision(True, reason, value=v, old_value=old, increments=increments)

    def _debounced(self, now: float) -> bool:
        """A fire now falls inside the hold-off after the last one."""
        return self._last_fire is not None and now < self._last_fire + self.condition.debounce

    def _decision(
        self,
        fire: bool,
        reason: str,
        *,
        value: Any = None,
        old_value: Any = None,
        error: str | None = None,
        skipped: str | None = None,
        increments: range | None = None,
    ) -> Decision:
        return Decision(fire, reason, value, old_value, self.check_at, error, skipped, increments)


# ----------------------------------------------------------------------------- values


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real)


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (a PV stuck at NaN has not changed)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _convert(value: Any, domain: str) -> Any:
    """The value as the condition compares it; TypeError says what was expected."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy scalar or array
        value = value.tolist()
    if domain == "number":
        if isinstance(value, bool):
            return int(value)
        if _is_number(value):
            return value
        raise TypeError(f"expected a number, got {_kind(value)}")
    if domain == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, EnumValue):
            if value.label is None:
                raise TypeError(
                    f"an enum index ({int(value)}) whose state name the IOC did not send"
                )
            return value.label
        if isinstance(value, bytes | bytearray):
            return _text(bytes(value))
        if isinstance(value, list | tuple) and all(
            isinstance(c, int) and not isinstance(c, bool) for c in value
        ):
            return _text(bytes(c & 0xFF for c in value))
        raise TypeError(f"expected a string or char array, got {_kind(value)}")
    # "any" (change): make arrays comparable, char arrays stay sequences.
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value))
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def _whole(v: int | float) -> int:
    """A counter's value as an int; TypeError for a fraction (a counter counts)."""
    if isinstance(v, int):
        return v
    if math.isfinite(v) and v == int(v):
        return int(v)
    raise TypeError(f"a counter counts in whole numbers (like FileNumber_RBV), got {v!r}")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _severity_name(severity: int) -> str:
    for name, number in SEVERITIES.items():
        if number == severity:
            return name
    return str(severity)
