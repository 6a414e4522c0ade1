"""Durations, rates and "since" times: one spelling everywhere a user writes one.

A duration is a number with a unit, ``250ms``, ``5s``, ``2m``/``2min``, ``1.5h``, ``3d``
(or, in TOML, a plain number of seconds). Rules use it for ``debounce``, ``settle`` and
``file_settle``; the CLI's ``--since`` takes the same (meaning "that long ago") or an ISO
time. A rate is ``N/s``, ``N/min`` or ``N/h``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

__all__ = ["DURATION_HELP", "parse_duration", "parse_rate", "parse_since"]

DURATION_HELP = "a duration like 250ms, 5s, 30m, 2h or 3d"

_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "min": 60.0,
    "m": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|sec|s|min|m|h|d)\s*")
_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string with a unit (ms, s, m/min, h, d).

    Raises ValueError with a message for the user (what was expected).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            raise ValueError("expected a duration >= 0")
        return float(value)
    if isinstance(value, str):
        found = _DURATION.fullmatch(value)
        if found:
            return float(found[1]) * _SECONDS[found[2]]
    raise ValueError("expected a duration like '5s' (ms, s, m or min, h, d) or a number of seconds")


def parse_rate(value: object) -> tuple[int, float]:
    """``(count, per_seconds)`` from a string like "10/min"; raises ValueError for the user."""
    if isinstance(value, str):
        found = _RATE.fullmatch(value)
        if found and found[2] in _PER and int(found[1]) >= 1:
            return int(found[1]), _PER[found[2]]
    raise ValueError("expected a rate like '10/min' (N/s, N/min or N/h, N >= 1)")


def parse_since(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """The moment ``text`` names: a duration ago (``2h``, ``90min``, ``3d``) or an ISO time
    (without a zone: UTC); None for None or "". Raises ValueError saying what was expected."""
    if not text:
        return None
    try:
        ago = parse_duration(text)
    except ValueError:
        pass
    else:
        return (now or datetime.now(UTC)) - timedelta(seconds=ago)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"since: expected {DURATION_HELP} (that long ago) or an ISO time, not {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
