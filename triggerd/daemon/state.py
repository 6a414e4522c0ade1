"""The daemon's durable state in one SQLite file (WAL): runs (the outbox), the file ledger.

Runs and the ledger share one file so that dispatching a trigger is one transaction: the
ledger rows of its files and its run request are written together, or not at all. A
crash can never leave a file marked as dispatched without the run that was to follow.

A run row is the outbox entry while its state is ``queued`` (or ``waiting``: a PV rule's
run whose file is not complete yet); it stays as history after.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triggerd.errors import BackendUnavailable
from triggerd.runstate import ENDED
from triggerd.sqlite import connect_wal

__all__ = ["LedgerEntry", "RunRow", "StateDB", "StateUnavailable"]

_ENDED_SQL = ", ".join(f"'{state.value}'" for state in ENDED)  # constants, not input
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL UNIQUE,
    key         TEXT NOT NULL UNIQUE,      -- idempotency key: one run per (rule, file versions)
    rule        TEXT,
    workflow    TEXT NOT NULL,
    params      TEXT NOT NULL,             -- JSON
    trigger     TEXT NOT NULL,             -- JSON: the source events
    state       TEXT NOT NULL,             -- triggerd.runstate.RunState: waiting | queued | ...
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    queued_at   REAL NOT NULL,
    started_at  REAL,
    ended_at    REAL,
    replay_of   TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state, seq);
CREATE INDEX IF NOT EXISTS runs_rule ON runs(rule, seq);
CREATE INDEX IF NOT EXISTS runs_workflow ON runs(workflow, seq);  -- the console filters by it
CREATE TABLE IF NOT EXISTS ledger (
    rule        TEXT NOT NULL,
    path        BLOB NOT NULL,             -- os.fsencode: file names need not be UTF-8
    inode       INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    run_id      TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (rule, path, inode, size, mtime_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_path ON ledger(path);
CREATE TABLE IF NOT EXISTS watermarks (
    rule        TEXT PRIMARY KEY,
    -- when the rule first watched: catch_up='missed' looks back to here
    since       REAL NOT NULL
);
"""
_DISPATCHED = (
    "SELECT 1 FROM ledger WHERE rule = ? AND path = ? AND inode = ? AND size = ? AND mtime_ns = ?"
)


class StateUnavailable(BackendUnavailable):
    """The state file cannot be written now (its disk is full, say): try again later."""


@dataclass(frozen=True)
class RunRow:
    run_id: str
    key: str
    rule: str | None
    workflow: str
    params: dict[str, Any]
    trigger: list[dict[str, Any]]
    state: str
    error: str | None
    attempts: int
    queued_at: float
    started_at: float | None
    ended_at: float | None
    replay_of: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class LedgerEntry:
    rule: str
    path: str
    inode: int
    size: int
    mtime_ns: int
    run_id: str
    at: float


_RUN_COLUMNS = (
    "run_id, key, rule, workflow, params, trigger, state, error, attempts, queued_at,"
    " started_at, ended_at, replay_of"
)


def _run_row(r: Sequence[Any]) -> RunRow:
    """A row of :data:`_RUN_COLUMNS` as a :class:`RunRow`."""
    return RunRow(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), *r[6:])


def _dumps(value: Any) -> str:
    # ensure_ascii escapes lone surrogates (non-UTF-8 file names) instead of failing
    return json.dumps(value, ensure_ascii=True, default=str)


class StateDB:
    """Thread-safe access to the state file; open in ``open()``, close in ``close()``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def open(self) -> StateDB:
        self._conn = connect_wal(self.path, _SCHEMA)
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def ledger_reader(self) -> Iterator[Callable[[str, tuple[str, int, int, int]], bool]]:
        """A ``dispatched(rule, identity)`` on a connection of its own, for one thread.

        The catch-up scan asks it for every existing file; with its own read-only
        connection (WAL lets readers run beside the writer) those queries neither hold
        the lock nor run on the daemon's event loop.
        """
        conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None
        )
        try:

            def dispatched(rule: str, identity: tuple[str, int, int, int]) -> bool:
                path, inode, size, mtime_ns = identity
                row = conn.execute(
                    _DISPATCHED, (rule, os.fsencode(path), inode, size, mtime_ns)
                ).fetchone()
                return row is not None

            yield dispatched
        finally:
            conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError("state database is not open")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                # full, read-only, an I/O error, locked for 30 s
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise StateUnavailable(
                    f"the state file {self.path} cannot be written: {exc}"
                ) from exc

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            assert self._conn is not None, "state database is not open"
            return self._conn.execute(sql, args).fetchall()

    # -- dispatch ---------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        run_id: str,
        key: str,
        rule: str | None,
        workflow: str,
        params: dict[str, Any],
        trigger: list[dict[str, Any]],
        files: Iterable[tuple[str, int, int, int]] = (),
        replay_of: str | None = None,
        waiting: bool = False,
    ) -> bool:
        """Write a run request and its files' ledger rows in one transaction.

        ``waiting``: the run waits for its file (a PV rule's ``wait_for_file``) in state
        ``waiting`` until :meth:`release`; the wait resumes after a restart.
        Returns False (and writes nothing) when the key is already known: a duplicate.
        """
        now = time.time()
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO runs (run_id, key, rule, workflow, params, trigger, state,"
                    " queued_at, replay_of)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        key,
                        rule,
                        workflow,
                        _dumps(params),
                        _dumps(trigger),
                        "waiting" if waiting else "queued",
                        now,
                        replay_of,
                    ),
                )
                if rule is not None:
                    conn.executemany(
                        "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (rule, os.fsencode(p), ino, size, mt, run_id, now)
                            for p, ino, size, mt in files
                        ],
                    )
        except sqlite3.IntegrityError:
            return False
        return True

    def set_state(
        self, run_id: str, state: str, *, error: str | None = None, attempt: bool = False
    ) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET state = ?, error = COALESCE(?, error),"
                " attempts = attempts + ?,"
                " started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?)"
                " ELSE started_at END,"
                f" ended_at = CASE WHEN ? IN ({_ENDED_SQL}) THEN ? ELSE ended_at END"
                " WHERE run_id = ?",
                (state, error, 1 if attempt else 0, state, now, state, now, run_id),
            )

    def release(self, run_id: str, trigger: list[dict[str, Any]]) -> bool:
        """A waiting run's file is complete: it joins the queue, its trigger says which file."""
        with self._tx() as conn:
            return (
                conn.execute(
                    "UPDATE runs SET state = 'queued', trigger = ?"
                    " WHERE run_id = ? AND state = 'waiting'",
                    (_dumps(trigger), run_id),
                ).rowcount
                == 1
            )

    def requeue_unfinished(self) -> list[str]:
        """At start-up: runs submitted or running when the daemon died go back to the queue
        (they resume from their journal when they are handed out again); returns which."""
        with self._tx() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT run_id FROM runs WHERE state IN ('submitted', 'running') ORDER BY seq"
                )
            ]
            conn.execute("UPDATE runs SET state = 'queued' WHERE state IN ('submitted', 'running')")
            return ids

    def unfinished(self, run_ids: Iterable[str]) -> set[str]:
        """Which of ``run_ids`` have not ended (still in the outbox, or running)."""
        wanted = list(run_ids)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._query(
                f"SELECT run_id FROM runs WHERE run_id IN ({','.join('?' * len(chunk))})"
                " AND state IN ('waiting', 'queued', 'submitted', 'running')",
                chunk,
            )
            found.update(row[0] for row in rows)
        return found

    # -- queries ----------------------------------------------------------------------------

    def queued(self) -> list[RunRow]:
        return self._rows("WHERE state = 'queued' ORDER BY seq")

    def waiting(self) -> list[RunRow]:
        """Runs of PV rules waiting for their file, oldest first."""
        return self._rows("WHERE state = 'waiting' ORDER BY seq")

    def run(self, run_id: str) -> RunRow | None:
        rows = self._rows("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(
        self,
        *,
        states: Sequence[str] = (),
        rule: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        return self.runs_page(states=states, rule=rule, since=since, limit=limit)[0]

    def runs_page(
        self,
        *,
        states: Sequence[str] = (),
        rule: str | None = None,
        workflow: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> tuple[list[RunRow], int | None]:
        """Runs newest first, at most ``limit``, with the cursor of the next older page:
        ``before`` it gives the runs after these (None: there are none). Keyset paging on
        ``seq``, so a page deep in 100,000 runs costs what the first one does."""
        where, args = [], []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        for column, value in (("rule", rule), ("workflow", workflow)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("queued_at >= ?")
            args.append(since)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        found = self._query(
            f"SELECT seq, {_RUN_COLUMNS} FROM runs {clause} ORDER BY seq DESC LIMIT ?",
            (*args, limit + 1),
        )
        older = found[limit - 1][0] if len(found) > limit else None
        return [_run_row(r[1:]) for r in found[:limit]], older

    def counts(self) -> dict[str, int]:
        return dict(self._query("SELECT state, COUNT(*) FROM runs GROUP BY state"))

    def rule_stats(self) -> dict[str, dict[str, Any]]:
        """Per rule: runs fired (all time) and when the last was queued. From the runs_rule
        index alone, then one row per rule: MAX(queued_at) read every row (183 ms at
        100,000 runs, on the loop, for every status)."""
        rows = self._query(
            "SELECT rule, COUNT(*), MAX(seq) FROM runs WHERE rule IS NOT NULL GROUP BY rule"
        )
        if not rows:
            return {}
        marks = ", ".join("?" * len(rows))
        queued_at = dict(
            self._query(
                f"SELECT seq, queued_at FROM runs WHERE seq IN ({marks})", [r[2] for r in rows]
            )
        )
        return {rule: {"fired": n, "last_fired": queued_at.get(seq)} for rule, n, seq in rows}

    def _rows(self, clause: str, args: Sequence[Any] = ()) -> list[RunRow]:
        return [_run_row(r) for r in self._query(f"SELECT {_RUN_COLUMNS} FROM runs {clause}", args)]

    # -- ledger -----------------------------------------------------------------------------

    def dispatched(self, rule: str, identity: tuple[str, int, int, int]) -> bool:
        path, inode, size, mtime_ns = identity
        return bool(self._query(_DISPATCHED, (rule, os.fsencode(path), inode, size, mtime_ns)))

    def ledger_for(self, path: str) -> list[LedgerEntry]:
        rows = self._query("SELECT * FROM ledger WHERE path = ? ORDER BY at", (os.fsencode(path),))
        return [LedgerEntry(r[0], os.fsdecode(r[1]), *r[2:]) for r in rows]

    def watermark(self, rule: str, now: float) -> tuple[float, bool]:
        """When ``rule`` first watched, and whether that is now (its very first start)."""
        with self._tx() as conn:
            row = conn.execute("SELECT since FROM watermarks WHERE rule = ?", (rule,)).fetchone()
            if row is not None:
                return row[0], False
            conn.execute("INSERT INTO watermarks VALUES (?, ?)", (rule, now))
            return now, True
