"""The embedded workflow data store: one SQLite file, one row per run.

Sections are JSON so ``sqlite3`` and ``triggerctl`` can read them; values JSON cannot
hold are signed pickles in the ``blobs`` table, referenced as ``{"$blob": id}``. Every
write is a ``BEGIN IMMEDIATE`` read-modify-write, so writers in several processes
serialise on SQLite's write lock instead of losing each other's updates.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from triggerd.errors import InternalError, TriggerdError

__all__ = [
    "BlobCodec",
    "BlobMissing",
    "DocumentExists",
    "DocumentMissing",
    "KeyConflict",
    "SqliteDataStore",
    "SqliteDocument",
]

# The sections are also the column names, so they are spelled here rather than imported:
# importing triggerd.flow.store would load the whole model (and networkx) into triggerctl.
# They equal triggerd.flow.store.DataStoreDocumentSection.Meta/.Data; a test checks it.
_DATA = "data"
_SECTIONS = ("meta", _DATA)
_INDEX = re.compile(r"[0-9]+")
_FIELD = re.compile(r"[^$.][^.]*")  # what one dot-notation segment can name
_KINDS = {"$blob": "pickled object", "$datetime": "datetime", "$float": "float"}
_MISSING = object()
_Blob = tuple[str, bytes]
_Change = Callable[[dict], list[str]]  # edits a section in place, returns orphaned blob ids
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    run_id TEXT PRIMARY KEY, workflow TEXT, meta TEXT NOT NULL, data TEXT NOT NULL,
    created REAL NOT NULL, last_modified REAL NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_run_id ON blobs (run_id);
"""


class DocumentExists(TriggerdError):
    """``add`` was given a run id that already has a document (Lightflow's DataStoreIDExists)."""


class DocumentMissing(TriggerdError):
    """No document for this run id: never added, or removed when the run's store was cleared."""


class KeyConflict(TriggerdError):
    """A key runs into a value of the wrong shape: push onto a non-list, set through a scalar."""


class BlobMissing(TriggerdError):
    """A section references a blob row that is gone: the file was edited or damaged."""


class BlobCodec(Protocol):
    """What the store needs of ``triggerd.engine.codec.Codec``; injected to keep layering."""

    def dumps(self, obj: Any, *, what: str) -> bytes: ...

    def loads(self, blob: bytes) -> Any: ...


def _split(key: str) -> list[str]:
    """Dot notation to segments; ``$`` segments are refused so a key cannot forge a marker."""
    parts = key.split(".") if isinstance(key, str) else [""]
    if not all(_FIELD.fullmatch(p) for p in parts):
        raise ValueError(f"invalid store key {key!r}: dot-separated, non-empty, no leading '$'")
    return parts


def _check_section(section: str) -> str:
    if section not in _SECTIONS:
        raise ValueError(f"section must be 'meta' or 'data', not {section!r}")
    return section


def _is_marker(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in _KINDS


def _kind(node: Any) -> str:
    return _KINDS[next(iter(node))] if _is_marker(node) else type(node).__name__


def _blob_ids(node: Any) -> Iterator[str]:
    """Blob rows an encoded value references, so replacing it can delete them."""
    if isinstance(node, dict):
        if _is_marker(node) and "$blob" in node:
            yield node["$blob"]
        else:
            for child in node.values():
                yield from _blob_ids(child)
    elif isinstance(node, list):
        for child in node:
            yield from _blob_ids(child)


class _Encoder:
    """Turns a value into JSON, collecting the blob rows it needs for the same transaction."""

    def __init__(self, codec: BlobCodec):
        self._codec = codec
        self.blobs: list[_Blob] = []

    def __call__(self, value: Any, what: str) -> Any:
        # Exact types, not isinstance: an IntEnum or np.float64 goes to a blob and comes
        # back as itself instead of silently becoming a plain int or float.
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if kind is datetime:
            return {"$datetime": value.isoformat()}
        if kind is list:
            return [self(v, f"{what}[{i}]") for i, v in enumerate(value)]
        if kind is dict and all(type(k) is str and _FIELD.fullmatch(k) for k in value):
            return {k: self(v, f"{what}[{k!r}]") for k, v in value.items()}
        blob_id = uuid.uuid4().hex
        self.blobs.append((blob_id, self._codec.dumps(value, what=what)))
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
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # isolation_level=None: we issue BEGIN ourselves, IMMEDIATE for writes.
                conn = sqlite3.connect(self.path, 30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 30000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(_SCHEMA)
                self._conn, self._pid = conn, os.getpid()
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
        encode = _Encoder(self._codec)
        encoded = encode(dict(meta or {}), "store meta")
        if _is_marker(encoded):
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
            node: Any = json.loads(row[0])
            for part in parts:
                if isinstance(node, dict) and not _is_marker(node) and part in node:
                    node = node[part]
                elif isinstance(node, list) and _INDEX.fullmatch(part) and int(part) < len(node):
                    node = node[int(part)]
                else:
                    return default
            return self._decode(conn, run_id, node)

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
        if isinstance(node, list):
            return [self._decode(conn, run_id, v) for v in node]
        if not isinstance(node, dict):
            return node
        if not _is_marker(node):
            return {k: self._decode(conn, run_id, v) for k, v in node.items()}
        tag, value = next(iter(node.items()))
        if tag == "$datetime":
            return datetime.fromisoformat(value)
        if tag == "$float":
            return float(value)
        query = "SELECT body FROM blobs WHERE id = ? AND run_id = ?"
        row = conn.execute(query, (value, run_id)).fetchone()
        if row is None:
            raise BlobMissing(f"run {run_id}: blob {value} referenced by the store is missing")
        return self._codec.loads(row[0])


def _row(conn: sqlite3.Connection, columns: str, run_id: str) -> tuple | None:
    return conn.execute(f"SELECT {columns} FROM documents WHERE run_id = ?", (run_id,)).fetchone()


def _put_blobs(conn: sqlite3.Connection, run_id: str, blobs: list[_Blob]) -> None:
    conn.executemany("INSERT INTO blobs VALUES (?, ?, ?)", [(i, run_id, b) for i, b in blobs])


def _dumps(tree: Any) -> str:
    return json.dumps(tree, allow_nan=False, separators=(",", ":"))


def _slot(tree: dict, parts: list[str], key: str) -> tuple[dict | list, Any, Any]:
    """Where a write lands: (container, index, current value or _MISSING). Intermediate
    dicts are created, as Mongo's ``$set``/``$push`` do."""
    node: Any = tree
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, dict) and not _is_marker(node):
            if last:
                return node, part, node.get(part, _MISSING)
            node = node.setdefault(part, {})
        elif isinstance(node, list) and _INDEX.fullmatch(part) and int(part) < len(node):
            if last:
                return node, int(part), node[int(part)]
            node = node[int(part)]
        else:
            where = ".".join(parts[:depth])
            has = f"a list without index {part}" if isinstance(node, list) else f"a {_kind(node)}"
            raise KeyConflict(f"store key '{key}': '{where}' holds {has}, not a dict")
    raise InternalError("a store key without segments got past _split")


class SqliteDocument:
    """One run's document; implements :class:`triggerd.flow.store.DataStoreDocument`."""

    def __init__(self, store: SqliteDataStore, run_id: str):
        self._store = store
        self.run_id = run_id

    def get(self, key: str, default: Any = None, *, section: str = _DATA) -> Any:
        """The decoded value at ``key``, or ``default`` when any segment is missing."""
        return self._store._read(self.run_id, _check_section(section), _split(key), default)

    def set(self, key: str, value: Any, *, section: str = _DATA) -> bool:
        """Store ``value`` at ``key``; blobs of the value it replaces are deleted."""
        section, parts, encode = _check_section(section), _split(key), _Encoder(self._store._codec)
        encoded = encode(value, f"store {section}.{key}")

        def change(tree: dict) -> list[str]:
            container, index, old = _slot(tree, parts, key)
            container[index] = encoded
            return list(_blob_ids(old))

        return self._store._update(self.run_id, section, change, encode.blobs)

    def set_many(self, values: Mapping[str, Any], *, section: str = _DATA) -> bool:
        """``set`` of every ``key: value`` in one transaction (the engine's bookkeeping)."""
        section, encode = _check_section(section), _Encoder(self._store._codec)
        encoded = [(_split(k), k, encode(v, f"store {section}.{k}")) for k, v in values.items()]

        def change(tree: dict) -> list[str]:
            orphans: list[str] = []
            for parts, key, value in encoded:
                container, index, old = _slot(tree, parts, key)
                container[index] = value
                orphans += _blob_ids(old)
            return orphans

        return self._store._update(self.run_id, section, change, encode.blobs)

    def push(self, key: str, value: Any, *, section: str = _DATA) -> bool:
        """Append ``value`` to the list at ``key``, creating the list when the key is missing."""
        return self._append(key, [value], section)

    def extend(self, key: str, values: list, *, section: str = _DATA) -> bool:
        """Append each of ``values``; False (nothing written) unless it is a list or tuple."""
        if not isinstance(values, (list, tuple)):
            return False
        return self._append(key, list(values), section)

    def _append(self, key: str, values: list, section: str) -> bool:
        section, parts, encode = _check_section(section), _split(key), _Encoder(self._store._codec)
        encoded = [encode(v, f"store {section}.{key}[+{i}]") for i, v in enumerate(values)]

        def change(tree: dict) -> list[str]:
            container, index, current = _slot(tree, parts, key)
            if current is _MISSING:
                container[index] = encoded
            elif isinstance(current, list):
                current.extend(encoded)
            else:
                kind = _kind(current)
                raise KeyConflict(f"store key '{key}' holds a {kind}, not a list: cannot push")
            return []

        return self._store._update(self.run_id, section, change, encode.blobs)

