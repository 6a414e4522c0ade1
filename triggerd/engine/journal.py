"""What happened to each run, durably: a run resumes after a crash, it does not restart.

The runner (:mod:`triggerd.engine.runner`) is a deterministic state machine: the events
it was fed, in order, give back its state. So the executor appends every event that
changes a run (a task finished or failed, a signal, a stop request) to the run's journal
*before* feeding it to the runner, and records each job it hands to a worker. A daemon
that was killed rebuilds each unfinished run by feeding a new runner the same events:
tasks that finished are not run again, tasks that were running are waited for (their
job is still with a worker) or sent again, and a run that had finished is recorded as
such without running anything.

The journal is an SQLite file (WAL) in the daemon's state directory, written by the
executor's thread only; a run's entries are deleted when it ends. It also keeps the
executor's identity, so the Celery inbox a restarted daemon reads is the one its
workers still report to.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triggerd.health import Dependency
from triggerd.log import get_logger
from triggerd.sqlite import connect_wal

from . import runner as r

__all__ = ["Begun", "Ended", "Entry", "Journal", "Record", "Sent", "decode", "encode"]

_log = get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    kind     TEXT NOT NULL,     -- begun | sent | finished | failed | signal | stop | ended
    body     TEXT NOT NULL,     -- JSON
    data     BLOB,              -- signed task data (a task's output, start_dag data)
    at       REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key      TEXT PRIMARY KEY,
    value    TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Begun:
    """The first entry of a run: which workflow file it runs (a changed file starts over)."""

    workflow: str
    content_hash: str


@dataclass(frozen=True)
class Sent:
    """A job handed to a worker: ``delivery`` is Celery's task id (the local pool: the
    worker's name), ``attempt`` the attempt whose stop flags the job reads."""

    dag: str
    task: str
    delivery: str
    attempt: int


@dataclass(frozen=True)
class Ended:
    """The run's end as the executor recorded it (the event beside it is recorded again,
    with the same id, if the daemon died before the event log had it)."""

    status: str
    error: str | None = None


Entry = Begun | Sent | Ended | r.TaskFinished | r.TaskFailed | r.SignalReceived | r.StopRequested


def encode(
    entry: Entry, extra: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any], bytes | None]:
    """``(kind, body, data)`` of an entry; ``extra`` goes into the body (e.g. a signal's
    reply key, the event that reported a task's end)."""
    body: dict[str, Any]
    data: bytes | None = None
    match entry:
        case Begun(workflow=workflow, content_hash=content_hash):
            kind, body = "begun", {"workflow": workflow, "content_hash": content_hash}
        case Sent(dag=dag, task=task, delivery=delivery, attempt=attempt):
            kind, body = (
                "sent",
                {"dag": dag, "task": task, "delivery": delivery, "attempt": attempt},
            )
        case Ended(status=status, error=error):
            kind, body = "ended", {"status": status, "error": error}
        case r.TaskFinished(
            dag=dag, task=task, outcome=outcome, limit=limit, data=blob, message=message
        ):
            kind, body, data = (
                "finished",
                {
                    "dag": dag,
                    "task": task,
                    "outcome": outcome,
                    "limit": list(limit) if limit is not None else None,
                    "message": message,
                },
                blob,
            )
        case r.TaskFailed(dag=dag, task=task, error=error, traceback=tb):
            kind, body = "failed", {"dag": dag, "task": task, "error": error, "traceback": tb}
        case r.SignalReceived(request_id=request_id, dag=dag, action=action, payload=payload):
            plain = {k: v for k, v in payload.items() if k != "data"}
            kind, body, data = (
                "signal",
                {
                    "request_id": request_id,
                    "dag": dag,
                    "action": action,
                    "payload": plain,
                    "has_data": payload.get("data") is not None,
                },
                payload.get("data"),
            )
        case r.StopRequested(reason=reason):
            kind, body = "stop", {"reason": reason}
        case _:
            raise TypeError(f"not a journal entry: {entry!r}")
    return kind, {**body, **(extra or {})}, data


def decode(kind: str, body: dict[str, Any], data: bytes | None) -> Entry:
    if kind == "begun":
        return Begun(body["workflow"], body["content_hash"])
    if kind == "sent":
        return Sent(body["dag"], body["task"], body["delivery"], int(body["attempt"]))
    if kind == "ended":
        return Ended(body["status"], body.get("error"))
    if kind == "finished":
        limit = body.get("limit")
        return r.TaskFinished(
            body["dag"],
            body["task"],
            body["outcome"],
            tuple(limit) if limit is not None else None,
            data,
            body.get("message", ""),
        )
    if kind == "failed":
        return r.TaskFailed(body["dag"], body["task"], body["error"], body.get("traceback", ""))
    if kind == "signal":
        payload = dict(body.get("payload") or {})
        if body.get("has_data"):
            payload["data"] = data
        return r.SignalReceived(body["request_id"], body["dag"], body["action"], payload)
    if kind == "stop":
        return r.StopRequested(body.get("reason", "stop requested"))
    raise ValueError(f"unknown journal entry kind {kind!r}")


@dataclass(frozen=True)
class Record:
    """An entry as read back, with what was stored beside it."""

    entry: Entry
    attempt: int
    body: dict[str, Any]


class Journal:
    """Run journals in one SQLite file; see the module docstring.

    A write that fails (the disk is full) is logged and counted in ``failures``, not
    raised: the run goes on, and only a crash before the disk has room again would make
    it repeat work. ``health`` says whether the last write went in.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self.failures = 0
        self.health = Dependency("run journal", str(self.path))

    def open(self) -> Journal:
        with self._lock:
            if self._conn is None:
                self._conn = connect_wal(self.path, _SCHEMA)
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def identity(self) -> str:
        """An id made once per journal file: the executor of a daemon keeps its inbox."""
        with self._lock:
            conn = self._use()
            row = conn.execute("SELECT value FROM meta WHERE key = 'executor_id'").fetchone()
            if row is not None:
                return str(row[0])
            ident = uuid.uuid4().hex
            conn.execute("INSERT INTO meta VALUES ('executor_id', ?)", (ident,))
            return ident

    def append(
        self, run_id: str, attempt: int, entry: Entry, extra: dict[str, Any] | None = None
    ) -> bool:
        """Append ``entry`` to the run's journal; False (logged) when it could not be written."""
        kind, body, data = encode(entry, extra)
        with self._lock:
            seq = self._seq.get(run_id)
            try:
                conn = self._use()
                if seq is None:
                    row = conn.execute(
                        "SELECT MAX(seq) FROM entries WHERE run_id = ?", (run_id,)
                    ).fetchone()
                    seq = (row[0] or 0) if row else 0
                seq += 1
                conn.execute(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        seq,
                        attempt,
                        kind,
                        json.dumps(body, ensure_ascii=True, default=repr),
                        data,
                        time.time(),
                    ),
                )
            except sqlite3.Error as exc:
                self._failed(exc, run_id)
                return False
            self._seq[run_id] = seq
            self.health.up()
            return True

    def records(self, run_id: str) -> list[Record]:
        """The run's entries in the order they were appended (none for a new run)."""
        with self._lock:
            rows = (
                self._use()
                .execute(
                    "SELECT attempt, kind, body, data FROM entries WHERE run_id = ? ORDER BY seq",
                    (run_id,),
                )
                .fetchall()
            )
        records = []
        for attempt, kind, body, data in rows:
            fields = json.loads(body)
            records.append(Record(decode(kind, fields, data), attempt, fields))
        return records

    def forget(self, run_id: str) -> None:
        """The run has ended: its entries go (a failure to delete them costs only space)."""
        with self._lock:
            self._seq.pop(run_id, None)
            try:
                self._use().execute("DELETE FROM entries WHERE run_id = ?", (run_id,))
            except sqlite3.Error as exc:
                self._failed(exc, run_id)

    def runs(self) -> list[str]:
        """Runs with entries (unfinished, or ended while their deletion failed)."""
        with self._lock:
            return [row[0] for row in self._use().execute("SELECT DISTINCT run_id FROM entries")]

    def _use(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the run journal is not open")
        return self._conn

    def _failed(self, exc: sqlite3.Error, run_id: str) -> None:
        self.failures += 1
        message = f"{type(exc).__name__}: {exc}"
        if self.health.ok is not False or message != self.health.reading.error:
            _log.error(
                "the run journal cannot be written: "
                "runs go on, but a crash now would repeat their work",
                path=str(self.path),
                run=run_id,
                error=message,
            )
        self.health.down(message)
