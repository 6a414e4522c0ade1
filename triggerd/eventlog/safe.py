"""Events in a form every sink can store: JSON text (SQLite) and BSON (MongoDB).

A producer may put anything into an event's payload: bytes, numpy arrays, a whole file
read into a string, a path that is not UTF-8. The event log must neither crash on it
nor lose the event, so :func:`sanitize` turns every value into plain JSON types and
says what it changed, in the value itself:

- a string longer than :data:`MAX_TEXT` characters keeps its head and ends in
  ``[truncated N chars]``;
- a string with lone surrogates (``os.fsdecode`` of a name that is not UTF-8) shows
  the undecodable bytes as ``\\xNN``;
- bytes become their Python repr (``b'ab\\xff'``), truncated like a string;
- numpy scalars become numbers; arrays and other objects their repr, truncated;
- tuples and sets become lists; datetimes ISO text; NaN and infinities the strings
  ``"nan"``, ``"inf"``, ``"-inf"``; integers beyond 64 bits their decimal text;
- a key that is not a string becomes its ``str``; ``.`` in a key becomes ``．`` (U+FF0E)
  and a leading ``$`` ``＄`` (U+FF04), which MongoDB refuses in field names;
- nesting deeper than :data:`MAX_DEPTH` becomes a repr;
- a payload (``data`` or ``source``) of more than :data:`MAX_PAYLOAD` characters is
  replaced by ``{"truncated": <note>, "preview": <its start as JSON text>}``.

It never raises: a value whose repr fails is stored as a note saying so.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from triggerd.eventlog.schema import LEVELS, LogEvent, format_time, new_id, parse_time

__all__ = [
    "MAX_DEPTH",
    "MAX_PAYLOAD",
    "MAX_TEXT",
    "safe_key",
    "safe_text",
    "safe_value",
    "sanitize",
]

MAX_TEXT = 64 * 1024  # characters of one string
MAX_PAYLOAD = 1024 * 1024  # characters (about) of data, and again of source
MAX_DEPTH = 32
_INT64 = range(-(2**63), 2**63)
_ZERO = timedelta(0)
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical", "err": "error", "information": "info"}
_NUMERIC_LEVELS = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [truncated {len(text) - limit} chars]"


def safe_text(value: str, limit: int = MAX_TEXT) -> str:
    """UTF-8-encodable (lone surrogates shown as ``\\xNN`` or ``\\udcNN``) and at most
    ``limit`` characters plus the note."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            try:  # surrogate escapes stand for the bytes a name really had
                value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "backslashreplace").decode()
    return _truncate(value, limit)


def safe_key(key: Any) -> str:
    """A field name MongoDB and JSON accept, readable as the original."""
    text = safe_text(
        key if isinstance(key, str) else _repr(key) if not _scalar(key) else str(key), 1024
    )
    text = text.replace(".", "\uff0e").replace("\x00", "\\x00")
    if text.startswith("$"):
        text = "\uff04" + text[1:]
    return text


def _plain_key(key: str) -> bool:
    return (
        len(key) <= 1024
        and "." not in key
        and "\x00" not in key
        and not key.startswith("$")
        and (key.isascii() or safe_text(key) is key)
    )


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the event
        return f"<{type(value).__name__} whose repr failed: {type(exc).__name__}>"
    return text if isinstance(text, str) else f"<{type(value).__name__}>"


class _Walk:
    """One payload's walk; ``size`` counts characters so far, about as JSON would."""

    def __init__(self) -> None:
        self.size = 0

    def text(self, value: str) -> str:
        value = safe_text(value)
        self.size += len(value) + 3
        return value

    def __call__(self, value: Any, depth: int = 0) -> Any:
        """The safe form of ``value``: the very same object when it is safe already."""
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind is bool:
            self.size += 5
            return value
        if kind is int:
            self.size += 8
            return value if value in _INT64 else str(value)
        if kind is float:
            self.size += 8
            return value if math.isfinite(value) else str(value)
        if depth >= MAX_DEPTH:
            return self.text(_repr(value))
        if isinstance(value, Mapping):
            same = kind is dict
            out: dict[str, Any] = {}
            for key, item in list(value.items()):
                name = key if type(key) is str and _plain_key(key) else safe_key(key)
                while name in out:  # two keys that read alike once made safe
                    name += "~"
                self.size += len(name) + 4
                safe = out[name] = self(item, depth + 1)
                same = same and name is key and safe is item
            return value if same else out
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
            self.size += 2
            safe_items = [self(item, depth + 1) for item in items]
            if kind is list and all(new is old for new, old in zip(safe_items, value, strict=True)):
                return value
            return safe_items
        return self.other(value, depth)

    def other(self, value: Any, depth: int) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            text = repr(raw)
            if len(text) > MAX_TEXT:  # keep as many bytes as surely fit (\xNN is 4 characters)
                kept = (MAX_TEXT - 64) // 4  # room for b'' and the note
                text = f"{raw[:kept]!r} [truncated {len(raw) - kept} bytes]"
            return self.text(text)
        if isinstance(value, str):  # a str subclass (an enum member, ...)
            return self.text(str.__str__(value))
        if isinstance(value, datetime):
            return self.text(format_time(value) if value.tzinfo else value.isoformat())
        if isinstance(value, date | time):
            return self.text(value.isoformat())
        if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a numpy scalar
            try:
                return self(value.item(), depth + 1)
            except Exception:
                return self.text(_repr(value))
        if isinstance(value, numbers.Integral):
            return self(int(value), depth + 1)
        if isinstance(value, numbers.Real):
            return self(float(value), depth + 1)
        return self.text(_repr(value))


def safe_value(value: Any, limit: int = MAX_PAYLOAD) -> Any:
    """``value`` as plain JSON types (see the module docstring); a result of more than
    ``limit`` characters becomes ``{"truncated": note, "preview": JSON text}``."""
    try:
        walk = _Walk()
        out = walk(value)
        if walk.size <= limit:
            return out
        text = json.dumps(out, ensure_ascii=False)
    except Exception as exc:  # RecursionError and the like: the note is the payload
        return {
            "unstorable": (
                f"{type(value).__name__}: {type(exc).__name__}: {safe_text(str(exc), 1000)}"
            )
        }
    if len(text) <= limit:
        return out
    return {
        "truncated": f"payload of {len(text)} chars over the limit of {limit}",
        "preview": _truncate(text, MAX_TEXT),
    }


def _level(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _NUMERIC_LEVELS.get(value, "info" if value < 30 else "error")
    name = str(value).strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    return name if name in LEVELS else "info"


def _optional_text(value: Any, limit: int = 1024) -> str | None:
    if value is None:
        return None
    return safe_text(
        value if isinstance(value, str) else _repr(value) if not _scalar(value) else str(value),
        limit,
    )


# (field, its limit): the text fields of an event
_TEXTS = (
    ("kind", 200),
    ("message", MAX_TEXT),
    ("run", 1024),
    ("workflow", 1024),
    ("dag", 1024),
    ("task", 1024),
    ("rule", 1024),
    ("id", 200),
    ("host", 1024),
    ("worker", 1024),
)


def _payload(value: Any) -> dict[str, Any]:
    safe = safe_value(value if isinstance(value, Mapping) else {"value": value})
    return safe if isinstance(safe, dict) else {"value": safe}


def sanitize(event: LogEvent) -> LogEvent:
    """``event`` with every field storable as JSON and BSON (the same object when it
    is already); never raises. A level it does not know becomes ``info`` (``warn`` is
    ``warning``, ``fatal`` ``critical``, 40 ``error``); a naive time counts as UTC."""
    try:
        return _sanitized(event)
    except Exception as exc:  # our own gap: keep what surely stores, and say why

        def plain(value: Any) -> str | None:
            return (
                value if type(value) is str and value.isascii() and 0 < len(value) <= 200 else None
            )

        return LogEvent(
            "log",
            f"an event could not be made storable: {type(exc).__name__}",
            level="error",
            id=plain(event.id) or new_id(),
            run=plain(event.run),
            data={"error": _optional_text(exc, 2000), "kind": plain(event.kind)},
        )


def _sanitized(event: LogEvent) -> LogEvent:
    changes: dict[str, Any] = {}
    for name, limit in _TEXTS:
        value = getattr(event, name)
        if value is None or (type(value) is str and safe_text(value, limit) is value):
            continue
        changes[name] = _optional_text(value, limit)
    if event.kind is None:
        changes["kind"] = ""
    if event.message is None:
        changes["message"] = ""
    if not changes.get("id", event.id):
        changes["id"] = new_id()
    if event.level not in LEVELS:
        changes["level"] = _level(event.level)
    data = _payload(event.data)
    if data is not event.data:
        changes["data"] = data
    if event.source is not None:
        source = _payload(event.source)
        if source is not event.source:
            changes["source"] = source
    pid = event.pid
    if pid is not None and not (type(pid) is int and pid in _INT64):
        changes["pid"] = None
    moment = event.time
    if not (type(moment) is datetime and moment.utcoffset() == _ZERO):
        try:
            changes["time"] = parse_time(moment)  # aware, UTC: a naive datetime counts as UTC
        except (TypeError, ValueError, OverflowError):
            changes["time"] = datetime.now(UTC)
    return replace(event, **changes) if changes else event
