"""The event schema: one record for everything that happens (triggers, runs, tasks, logs).

Every event carries an id set by its producer: time-ordered (a ULID), unique, so a sink
that receives an event twice can tell (the event log is idempotent).

Schema version 2, field by field (a MongoDB document names ``id`` ``_id``; a field that
is ``None`` may be absent from a stored document, and reads back as ``None``):

``id``
    26 characters, a ULID (Crockford base32: 48 bits of milliseconds, 80 random bits)
    set by the producer. Sorting by id sorts by time; a sink stores one event per id,
    so a replay is harmless.
``v``
    The schema version the producer wrote (1 lacks ``worker`` and ``source``).
``time``
    When it happened, UTC. Serialised as ISO 8601 with microseconds and ``Z``,
    ``2026-11-25T18:55:17.123456Z`` (fixed width: text order is time order).
``kind``
    What happened, ``<family>.<what>``: ``trigger.fired``, ``trigger.skipped`` (a match
    that did not become a run; ``data.reason`` is one of the dispatcher's ``SKIP_REASONS``:
    paused, draining, duplicate, reloaded-away, debounce, snapshot-failed, snapshot-empty,
    params-failed), ``trigger.waiting`` (a PV rule's run waits for its file),
    ``trigger.failed`` (a waiting PV run whose file never became complete: rejected);
    ``run.queued|started|succeeded|failed|stopped|aborted|rejected|ignored``;
    ``dag.started|succeeded|failed|stopped|aborted``;
    ``task.started|succeeded|failed|skipped|stopped|cancelled|aborted|retried``;
    ``signal.start_dag|join_dags|stop``; ``log`` (a log record of a task or the daemon);
    ``output`` (a line a BashTask wrote, ``data.stream`` is ``stdout`` or ``stderr``);
    ``source.*`` (watch and PV connection health: ``source.connected|disconnected|
    never_connected|error`` with ``data.pv``); ``pv.missed_values`` (an ``increment`` rule's
    counter jumped: the values no update showed in ``data.missed``, how many in ``data.count``);
    ``rule.paused|resumed`` (``data.by``); ``daemon.started|stopped|reloaded|reload_failed``,
    ``daemon.warning`` (a setup that is valid but likely a mistake: no rules, a missing
    directory), ``daemon.status_pvs_failed``, ``daemon.status_pv_refused``
    (a Channel Access write refused); ``eventlog.refused`` (stands in for an event the store
    refused: its kind, run and the error in ``data``). Refused as not ours (see
    docs/security.md): ``job.refused`` (a worker refused a job, nothing ran),
    ``message.refused`` (the executor refused an inbox message), ``eventlog.forged`` (a
    stream entry without a worker's tag).
``run``, ``workflow``, ``dag``, ``task``, ``rule``
    What it belongs to: the run id, the workflow's name, the DAG and task names, the
    trigger rule that started the run. Each may be ``None``.
``source``
    The source event that fired a trigger, as a dict (a file event: path, size, mtime,
    inode, kind; a PV event: pv, value, old_value, timestamp, severity, reason, seen_at,
    snapshot, and for a PV-and-file rule wait_for_file and file).
``host``, ``pid``, ``worker``
    Where it happened: host name, process id, and the executor worker's name.
``level``
    ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
``message``
    One line for people.
``data``
    The payload, a dict: ``duration`` (seconds), ``exit_code``, ``traceback``,
    ``params``, ``error``, ``reason``, ``worker``, ``stream``, ...

A sink stores what :func:`triggerd.eventlog.safe.sanitize` makes of an event: strings of
at most 64 Ki characters, bytes and foreign objects as their repr, undecodable file
names with ``\\x`` escapes, payloads of at most 1 MiB, keys MongoDB accepts.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

__all__ = ["LEVELS", "SCHEMA_VERSION", "LogEvent", "format_time", "new_id", "parse_time"]

SCHEMA_VERSION = 2
# In rising order of severity; a minimum level selects itself and those after it.
LEVELS = ("debug", "info", "warning", "error", "critical")
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


def format_time(moment: datetime) -> str:
    """UTC, microseconds, ``Z``: fixed width, so text order is time order. A naive
    datetime counts as UTC."""
    offset = moment.utcoffset()
    if offset:
        moment -= offset  # the wall time in UTC; the zone is cut off below
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


def parse_time(value: Any) -> datetime:
    """A datetime (aware, UTC) from ISO text, a datetime (naive counts as UTC) or epoch seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _mapping(value: Any) -> Any:
    """A stored dict: as it is, or JSON text (SQLite), else None."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"text": value}
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class LogEvent:
    """One entry of the event log (the fields: see this module's docstring)."""

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
    host: str | None = _HOST
    pid: int | None = field(default_factory=os.getpid)
    worker: str | None = None
    source: dict[str, Any] | None = None
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The event as plain data (``time`` as ISO text). ``data`` and ``source`` are new
        dicts, their values shared: a copy one level deep, not ``dataclasses.asdict``'s
        deep copy, which cost 150 µs an event on the daemon's loop."""
        doc = {name: getattr(self, name) for name in _FIELDS}
        doc["time"] = format_time(self.time)
        doc["data"] = dict(self.data)
        if self.source is not None:
            doc["source"] = dict(self.source)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LogEvent:
        """The inverse of :meth:`to_dict`; also reads stored documents (``_id`` for
        ``id``, ``time`` as a datetime, ``data`` as JSON text), fills in missing
        optional fields and ignores unknown ones."""
        ident = doc.get("id") or doc.get("_id")
        moment = doc.get("time") or doc.get("ts")
        pid = doc.get("pid")

        def text(name: str) -> str | None:
            value = doc.get(name)
            return None if value is None else str(value)

        return cls(
            kind=str(doc.get("kind") or ""),
            message=str(doc.get("message") or ""),
            run=text("run"),
            workflow=text("workflow"),
            dag=text("dag"),
            task=text("task"),
            rule=text("rule"),
            level=str(doc.get("level") or "info"),
            data=_mapping(doc.get("data")) or {},
            id=str(ident) if ident else new_id(),
            time=parse_time(moment) if moment is not None else datetime.now(UTC),
            host=text("host"),
            pid=pid if isinstance(pid, int) else None,
            worker=text("worker"),
            source=_mapping(doc.get("source")),
            v=int(doc.get("v") or 1),
        )


_FIELDS = tuple(f.name for f in fields(LogEvent))
