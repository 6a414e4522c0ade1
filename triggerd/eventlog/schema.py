"""The event schema: one record for everything that happens (triggers, runs, tasks, logs).

Every event carries an id set by its producer: time-ordered (a ULID), unique, so a sink
that receives an event twice can tell (the event log is idempotent).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["SCHEMA_VERSION", "LogEvent", "new_id"]

SCHEMA_VERSION = 1
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last = (0, 0)


def new_id(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds, 80 random bits, strictly increasing per process."""
    global _last
    with _lock:
        ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        last_ms, last_rand = _last
        rand = last_rand + 1 if ms <= last_ms else secrets.randbits(80)
        ms = max(ms, last_ms)
        _last = (ms, rand)
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


_HOST = socket.gethostname()


@dataclass(frozen=True)
class LogEvent:
    """One entry of the event log (see README, "Event schema")."""

    kind: str
    message: str = ""
    run: str | None = None
    workflow: str | None = None
    dag: str | None = None
    task: str | None = None
    rule: str | None = None
    level: str = "info"
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    host: str = _HOST
    pid: int = field(default_factory=os.getpid)
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["time"] = self.time.isoformat().replace("+00:00", "Z")
        return doc
