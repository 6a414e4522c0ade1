"""Durations ("250ms", "5s", "2m", "1h" or a number of seconds) and rates ("10/min") of rules."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_rate"]

_SECONDS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
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
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|sec|s|min|m|h)\s*")
_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")


def parse_duration(value: object) -> float:
    """Seconds from a TOML value: a number of seconds or a string with a unit.

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
    raise ValueError("expected a duration like '5s' (ms, s, m, h) or a number of seconds")


def parse_rate(value: object) -> tuple[int, float]:
    """``(count, per_seconds)`` from a string like "10/min"; raises ValueError for the user."""
    if isinstance(value, str):
        found = _RATE.fullmatch(value)
        if found and found[2] in _PER and int(found[1]) >= 1:
            return int(found[1]), _PER[found[2]]
    raise ValueError("expected a rate like '10/min' (N/s, N/min or N/h, N >= 1)")
