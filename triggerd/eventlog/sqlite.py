"""The event log in one SQLite file (WAL): the embedded default.

Tables (the same fields as a MongoDB event document; payloads as JSON text)::

    events(id PRIMARY KEY, ts REAL (epoch seconds), time TEXT (ISO), kind, run, workflow,
           dag, task, rule, level, message, host, pid, worker, source JSON, data JSON, v)
    run_summaries(run PRIMARY KEY, status, workflow, rule, first TEXT, last_ts REAL,
                  doc JSON (the summary, see triggerd.eventlog.summary))

Indexes serve the queries: (run, id), (workflow, id), (rule, id), (kind, id), (ts) on
events; (first), (status, first), (workflow, first), (rule, first) on summaries.

An insert is one ``BEGIN IMMEDIATE`` transaction: ``INSERT OR IGNORE`` of the events,
then each touched summary read, changed by :func:`~triggerd.eventlog.summary.apply`
and written back. The write lock taken before the read keeps two writers (threads or
processes) from losing each other's changes. ``retention_days`` deletes events and
summaries older than that at ``open()`` and at most hourly on insert.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from triggerd.errors import InternalError
from triggerd.eventlog.safe import sanitize
from triggerd.eventlog.schema import LogEvent, format_time
from triggerd.eventlog.store import EventQuery, EventStore
from triggerd.eventlog.summary import FAILED_STATUSES, apply, deltas, public
from triggerd.sqlite import connect_wal

__all__ = ["SqliteEventStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    run TEXT,
    workflow TEXT,
    dag TEXT,
    task TEXT,
    rule TEXT,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    worker TEXT,
    source TEXT,
    data TEXT NOT NULL,
    v INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_run ON events (run, id);
CREATE INDEX IF NOT EXISTS events_workflow ON events (workflow, id);
CREATE INDEX IF NOT EXISTS events_rule ON events (rule, id);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS run_summaries (
    run TEXT PRIMARY KEY,
    status TEXT,
    workflow TEXT,
    rule TEXT,
    first TEXT,
    last_ts REAL,
    doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_summaries_first ON run_summaries (first);
CREATE INDEX IF NOT EXISTS run_summaries_status ON run_summaries (status, first);
CREATE INDEX IF NOT EXISTS run_summaries_workflow ON run_summaries (workflow, first);
CREATE INDEX IF NOT EXISTS run_summaries_rule ON run_summaries (rule, first);
"""
_COLUMNS = (
    "id, ts, time, kind, run, workflow, dag, task, rule, level, message, host, pid, worker,"
    " source, data, v"
)
_INSERT = f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ({', '.join('?' * 17)})"
_PRUNE_EVERY = 3600.0  # seconds between retention passes on insert


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _row(event: LogEvent) -> tuple:
    source = None if event.source is None else _json(event.source)
    return (
        event.id,
        event.time.timestamp(),
        format_time(event.time),
        event.kind,
        event.run,
        event.workflow,
        event.dag,
        event.task,
        event.rule,
        event.level,
        event.message,
        event.host,
        event.pid,
        event.worker,
        source,
        _json(event.data),
        event.v,
    )


def _event(row: tuple) -> LogEvent:
    (
        ident,
        _,
        moment,
        kind,
        run,
        workflow,
        dag,
        task,
        rule,
        level,
        message,
        host,
        pid,
        worker,
        source,
        data,
        v,
    ) = row
    return LogEvent(
        kind,
        message,
        run=run,
        workflow=workflow,
        dag=dag,
        task=task,
        rule=rule,
        level=level,
        data=json.loads(data),
        id=ident,
        time=datetime.fromisoformat(moment),
        host=host,
        pid=pid,
        worker=worker,
        source=None if source is None else json.loads(source),
        v=v,
    )


class SqliteEventStore(EventStore):
    """Events and run summaries in the SQLite file ``path`` (created with its parent
    directory). One connection per store, guarded by a lock; other processes may open
    the same file (WAL: readers do not wait for the writer)."""

    def __init__(self, path: Path | str, *, retention_days: float | None = None):
        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"retention_days must be positive, not {retention_days}")
        self.path = Path(path)
        self.retention_days = retention_days
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._pruned = 0.0
        self._lock = threading.RLock()

    def open(self) -> SqliteEventStore:
        with self._lock:
            if self._conn is None:
                self._conn, self._pid = connect_wal(self.path, _SCHEMA), os.getpid()
                self._prune()
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        if self._conn is not None and self._pid != os.getpid():
            raise InternalError("this event store was opened in another process: open one here")
        with self._lock:
            conn = self._conn
            if conn is None:
                raise InternalError(f"the event store {self.path} is not open")
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _prune(self) -> None:
        if self.retention_days is None:
            return
        cutoff = time.time() - self.retention_days * 86400
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM run_summaries WHERE last_ts < ?", (cutoff,))
        self._pruned = time.monotonic()

    def insert(self, events: Sequence[LogEvent]) -> int:
        if not events:
            return 0
        safe = [sanitize(event) for event in events]
        rows = [_row(event) for event in safe]
        changes = deltas(safe)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            before = conn.total_changes
            conn.executemany(_INSERT, rows)
            stored = conn.total_changes - before
            for delta in changes:
                found = conn.execute(
                    "SELECT doc, last_ts FROM run_summaries WHERE run = ?", (delta.run,)
                ).fetchone()
                doc = apply(json.loads(found[0]) if found else {}, delta)
                last_ts = delta.last_time.timestamp() if delta.last_time else None
                if found and found[1] is not None:
                    last_ts = max(found[1], last_ts or found[1])
                conn.execute(
                    "INSERT OR REPLACE INTO run_summaries"
                    " (run, status, workflow, rule, first, last_ts, doc)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        delta.run,
                        doc.get("status"),
                        doc.get("workflow"),
                        doc.get("rule"),
                        doc.get("first"),
                        last_ts,
                        _json(doc),
                    ),
                )
        if self.retention_days is not None and time.monotonic() - self._pruned > _PRUNE_EVERY:
            self._prune()
        return stored

    def _find(self, query: EventQuery) -> list[LogEvent]:
        where: list[str] = []
        args: list[Any] = []
        for column in ("run", "workflow", "rule"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        kinds: list[str] = []
        if query.exact_kinds:
            kinds.append(f"kind IN ({', '.join('?' * len(query.exact_kinds))})")
            args.extend(query.exact_kinds)
        for family in query.kind_families:
            kinds.append("(kind = ? OR (kind >= ? AND kind < ?))")
            args.extend((family, f"{family}.", f"{family}/"))  # "/" follows "." in code points
        if kinds:
            where.append(f"({' OR '.join(kinds)})")
        if query.since is not None:
            # ts (a float) narrows through the index, the fixed-width text is exact
            where.append("ts >= ? AND time >= ?")
            args += [query.since.timestamp() - 0.001, format_time(query.since)]
        if query.levels is not None:
            where.append(f"level IN ({', '.join('?' * len(query.levels))})")
            args.extend(query.levels)
        if query.after_id is not None:
            where.append("id > ?")
            args.append(query.after_id)
        sql = f"SELECT {_COLUMNS} FROM events"
        if (
            query.since is not None
            and query.run is None
            and query.workflow is None
            and query.rule is None
        ):
            # without statistics the planner walks the ids from the oldest; a recent
            # ``since`` on a large log wants the time index
            sql += " INDEXED BY events_ts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'DESC' if query.newest_first else 'ASC'} LIMIT ?"
        args.append(query.limit)
        with self._transaction() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_event(row) for row in rows]

    def _runs(
        self,
        failed: bool,
        since: datetime | None,
        workflow: str | None,
        rule: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        if failed:
            where.append(f"status IN ({', '.join('?' * len(FAILED_STATUSES))})")
            args.extend(FAILED_STATUSES)
        if since is not None:
            where.append("first >= ?")
            args.append(format_time(since))
        for column, value in (("workflow", workflow), ("rule", rule)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT doc FROM run_summaries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first DESC, run DESC LIMIT ?"
        args.append(limit)
        with self._transaction() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [public(json.loads(doc), with_dags=False) for (doc,) in rows]

    def _run(self, run_id: str) -> dict[str, Any] | None:
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT doc FROM run_summaries WHERE run = ?", (run_id,)
            ).fetchone()
        return None if found is None else public(json.loads(found[0]))
