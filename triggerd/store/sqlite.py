"""The embedded workflow data store: one SQLite file, one row per run.

Sections are JSON so ``sqlite3`` and ``triggerctl`` can read them; values JSON cannot
hold are signed pickles in the ``blobs`` table, referenced as ``{"$blob": id}``. Every
write is a ``BEGIN IMMEDIATE`` read-modify-write, so writers in several processes
serialise on SQLite's write lock instead of losing each other's updates.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from triggerd.errors import InternalError
from triggerd.sqlite import connect_wal
from triggerd.store._common import (
    DATA,
    MISSING,
    SECTIONS,
    BlobCodec,
    BlobMissing,
    DocumentBase,
    DocumentExists,
    DocumentMissing,
    KeyConflict,
    ValueEncoder,
    blob_binding,
    check_appendable,
    check_section,
    decode_tree,
    lookup,
    markers,
    slot,
    split_key,
)

__all__ = [
    "BlobCodec",
    "BlobMissing",
    "DocumentExists",
    "DocumentMissing",
    "KeyConflict",
    "SqliteDataStore",
    "SqliteDocument",
]

_SECTIONS = SECTIONS  # also the column names
_KINDS = {"$blob": "pickled object", "$datetime": "datetime", "$float": "float"}
_Blob = tuple[str, bytes]
_Change = Callable[[dict], list[str]]  # edits a section in place, returns orphaned blob ids
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    run_id TEXT PRIMARY KEY, workflow TEXT, meta TEXT NOT NULL, data TEXT NOT NULL,
    created REAL NOT NULL, last_modified REAL NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_run_id ON blobs (run_id);
"""


def _marker_kind(node: Any) -> str | None:
    """Markers are one-key dicts ``{"$blob": id}``, ``{"$datetime": iso}``, ``{"$float": repr}``."""
    if isinstance(node, dict) and len(node) == 1:
        return _KINDS.get(next(iter(node)))
    return None


def _blob_ids(node: Any) -> Iterator[str]:
    """Blob rows an encoded value references, so replacing it can delete them."""
    return (m["$blob"] for m in markers(node, _marker_kind) if "$blob" in m)


class _Encoder(ValueEncoder):
    """Turns a value into JSON, collecting the blob rows it needs for the same transaction."""

    def __init__(self, codec: BlobCodec, run_id: str):
        super().__init__(codec, run_id)
        self.blobs: list[_Blob] = []

    def special_float(self, value: float) -> Any:
        return {"$float": repr(value)}

    def datetime(self, value: datetime) -> Any:
        return {"$datetime": value.isoformat()}

    def blob(self, value: Any, what: str) -> Any:
        blob_id = uuid.uuid4().hex
        self.blobs.append((blob_id, self.codec.dumps(value, bind=self.bind, what=what)))
        return {"$blob": blob_id}


class SqliteDataStore:
    """Documents of workflow runs in one SQLite file (WAL), shared by processes and threads.

    One connection per process, guarded by a lock: SQLite admits one writer at a time
    anyway and every call is a short transaction, so per-thread connections would buy
    little and make ``close()`` unable to reach connections of other threads.
    """

    def __init__(self, path: Path, codec: BlobCodec):
        self.path = Path(path)
        self._codec = codec
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()

    def open(self) -> SqliteDataStore:
        with self._lock:
            if self._conn is None:
                self._conn, self._pid = connect_wal(self.path, _SCHEMA), os.getpid()
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteDataStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` for writes (take the write lock before reading, so a
        read-modify-write cannot interleave); plain ``BEGIN`` for reads (one WAL snapshot,
        so a section and the blobs it references are read consistently)."""
        # A SQLite connection must not cross a fork; checked before the lock, which a fork
        # may have copied while another thread held it.
        if self._conn is not None and self._pid != os.getpid():
            raise InternalError("this data store was opened in another process: open one here")
        with self._lock:
            if self._conn is None:
                raise InternalError(f"the data store {self.path} is not open")
            self._conn.execute(begin)
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:  # some errors already rolled back
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add(self, run_id: str, meta: dict | None = None) -> str:
        """Create the run's document ``{meta: meta, data: {}}``; returns ``run_id``."""
        encode = _Encoder(self._codec, run_id)
        encoded = encode(dict(meta or {}), "store meta")
        if _marker_kind(encoded) is not None:
            raise ValueError("meta keys must be str, without '.' and without a leading '$'")
        name = (meta or {}).get("name")
        workflow, now = (name if isinstance(name, str) else None), time.time()
        with self._transaction("BEGIN IMMEDIATE") as conn:
            if _row(conn, "1", run_id):
                raise DocumentExists(f"the data store already holds a document for run {run_id}")
            conn.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, workflow, _dumps(encoded), "{}", now, now),
            )
            _put_blobs(conn, run_id, encode.blobs)
        return run_id

    def exists(self, run_id: str) -> bool:
        with self._transaction("BEGIN") as conn:
            return _row(conn, "1", run_id) is not None

    def get(self, run_id: str) -> SqliteDocument:
        if not self.exists(run_id):
            raise DocumentMissing(f"the data store holds no document for run {run_id}")
        return SqliteDocument(self, run_id)

    def remove(self, run_id: str) -> None:
        """Delete the document and its blobs; a missing document is not an error."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute("DELETE FROM blobs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM documents WHERE run_id = ?", (run_id,))

    def snapshot(self, run_id: str) -> dict[str, dict]:
        """The whole document decoded, ``{"meta": ..., "data": ...}``."""
        with self._transaction("BEGIN") as conn:
            row = _row(conn, "meta, data", run_id)
            if row is None:
                raise DocumentMissing(f"the data store holds no document for run {run_id}")
            sections = zip(_SECTIONS, row, strict=True)
            return {s: self._decode(conn, run_id, json.loads(text)) for s, text in sections}

    def _read(self, run_id: str, section: str, parts: list[str], default: Any) -> Any:
        with self._transaction("BEGIN") as conn:
            row = _row(conn, section, run_id)
            if row is None:
                return default
            node = lookup(json.loads(row[0]), parts, MISSING, _marker_kind)
            return default if node is MISSING else self._decode(conn, run_id, node)

    def _update(self, run_id: str, section: str, change: _Change, blobs: list[_Blob]) -> bool:
        """One write transaction: ``change`` edits the section in place and names the blob
        rows it orphaned. False when the document is gone, as Lightflow's modified_count."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            row = _row(conn, section, run_id)
            if row is None:
                return False
            tree = json.loads(row[0])
            orphans = change(tree)
            conn.execute(
                f"UPDATE documents SET {section} = ?, last_modified = ? WHERE run_id = ?",
                (_dumps(tree), time.time(), run_id),
            )
            _put_blobs(conn, run_id, blobs)
            orphaned = [(i, run_id) for i in orphans]
            conn.executemany("DELETE FROM blobs WHERE id = ? AND run_id = ?", orphaned)
        return True

    def _decode(self, conn: sqlite3.Connection, run_id: str, node: Any) -> Any:
        def unmark(marker: dict) -> Any:
            tag, value = next(iter(marker.items()))
            if tag == "$datetime":
                return datetime.fromisoformat(value)
            if tag == "$float":
                return float(value)
            query = "SELECT body FROM blobs WHERE id = ? AND run_id = ?"
            row = conn.execute(query, (value, run_id)).fetchone()
            if row is None:
                raise BlobMissing(f"run {run_id}: blob {value} referenced by the store is missing")
            return self._codec.loads(row[0], bind=blob_binding(run_id))

        return decode_tree(node, _marker_kind, unmark)


def _row(conn: sqlite3.Connection, columns: str, run_id: str) -> tuple | None:
    return conn.execute(f"SELECT {columns} FROM documents WHERE run_id = ?", (run_id,)).fetchone()


def _put_blobs(conn: sqlite3.Connection, run_id: str, blobs: list[_Blob]) -> None:
    conn.executemany("INSERT INTO blobs VALUES (?, ?, ?)", [(i, run_id, b) for i, b in blobs])


def _dumps(tree: Any) -> str:
    return json.dumps(tree, allow_nan=False, separators=(",", ":"))


class SqliteDocument(DocumentBase):
    """One run's document in the SQLite store."""

    _store: SqliteDataStore

    def get(self, key: str, default: Any = None, *, section: str = DATA) -> Any:
        """The decoded value at ``key``, or ``default`` when any segment is missing."""
        return self._store._read(self.run_id, check_section(section), split_key(key), default)

    def set_many(self, values: Mapping[str, Any], *, section: str = DATA) -> bool:
        """``set`` of every ``key: value`` in one transaction (the engine's bookkeeping)."""
        section, encode = check_section(section), _Encoder(self._store._codec, self.run_id)
        encoded = [(split_key(k), k, encode(v, f"store {section}.{k}")) for k, v in values.items()]

        def change(tree: dict) -> list[str]:
            orphans: list[str] = []
            for parts, key, value in encoded:
                container, index, old = slot(tree, parts, key, _marker_kind)
                container[index] = value
                orphans += _blob_ids(old)
            return orphans

        return self._store._update(self.run_id, section, change, encode.blobs)

    def _append(self, key: str, values: list, section: str) -> bool:
        section, parts, encode = (
            check_section(section),
            split_key(key),
            _Encoder(self._store._codec, self.run_id),
        )
        encoded = [encode(v, f"store {section}.{key}[+{i}]") for i, v in enumerate(values)]

        def change(tree: dict) -> list[str]:
            container, index, current = slot(tree, parts, key, _marker_kind)
            check_appendable(current, key, _marker_kind)
            if current is MISSING:
                container[index] = encoded
            else:
                current.extend(encoded)
            return []

        return self._store._update(self.run_id, section, change, encode.blobs)
