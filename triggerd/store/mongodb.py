"""The workflow data store on MongoDB: one document per run, large values in GridFS.

As in Lightflow, a run's document holds a ``meta`` and a ``data`` section::

    {_id: <run id>, workflow: <name>, meta: {...}, data: {...}, created, last_modified}

Values BSON cannot hold exactly (numpy arrays, bytes, sets, tuples, arbitrary objects,
ints beyond 64 bits) and every value whose BSON encoding exceeds ``gridfs_threshold``
(1 MiB by default) are signed codec blobs in the GridFS bucket ``<collection>_blobs``
(``metadata.run_id`` names the run), referenced in the document by the file's ObjectId.
A datetime is a binary of subtype 0x80 holding its ISO text: a BSON date would lose its
microseconds and time zone. Blobs are only ever unpickled through the codec, which
refuses anything it did not sign.

What is atomic. Every ``set``, ``set_many``, ``push`` and ``extend`` is one update
command on the run's document (``$set`` of each key, ``$push`` with ``$each``), so
writers in any number of threads and processes that write different keys, or push to
the same list, never lose each other's writes; ``set_many`` lands whole or not at all.
The command's filter refuses a write SQLite would refuse (an index past the end of a
list; MongoDB would pad the list with nulls), the server refuses the other shapes (a path
through a scalar, push onto a non-list), and the store then reads the document to raise
the same :class:`KeyConflict` the SQLite store raises.

What is not. Blobs are uploaded before the update that references them and the blobs of
a replaced value are deleted after it, from the value the update itself returned: a
crash in between leaves unreferenced files (``remove`` deletes them with the run). A
read that races a replacement of the same key may find its blob just deleted; it reads
the document again. ``remove`` deletes the document, then the run's files. ``snapshot``
reads the document in one command and its blobs after it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bson
from bson import Binary, ObjectId
from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import (
    ConfigurationError,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from triggerd.config import mask_url_password
from triggerd.errors import ConfigError, InternalError
from triggerd.mongodb import DEFAULT_DATABASE, client_for, reports_unavailable
from triggerd.store._common import (
    DATA,
    INDEX,
    MISSING,
    BlobCodec,
    BlobMissing,
    DocumentBase,
    DocumentExists,
    DocumentMissing,
    DocumentTooLarge,
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
from triggerd.store._gridfs import Blob, GridFiles

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "GRIDFS_THRESHOLD",
    "MongoDataStore",
    "MongoDocument",
]

DEFAULT_COLLECTION = "runs"
GRIDFS_THRESHOLD = 1 << 20
# What MongoClient gets unless the URL sets it (URL options are passed on unchanged).
_DATETIME = 0x80  # a binary subtype of the user-defined range
_INT64 = range(-(2**63), 2**63)
_ATTEMPTS = 3  # of a write racing a change of shape, of a read racing a replacement
# BadValue (push onto a non-list), TypeMismatch, PathNotViable (a path through a scalar)
_SHAPE_ERRORS = {2, 14, 28}
_TOO_LARGE_ERRORS = {10334, 17419, 17420}  # BSONObjectTooLarge; "resulting document ... too large"
_MAX_DOCUMENT = 16 * 1024 * 1024
_Write = tuple[list[str], str, Any]  # (segments, key as given, encoded value)


def _marker_kind(node: Any) -> str | None:
    kind = type(node)
    if kind is ObjectId:
        return "pickled object"
    if kind is Binary and node.subtype == _DATETIME:
        return "datetime"
    return None


def _split(key: str) -> list[str]:
    parts = split_key(key)
    if "\x00" in key:
        raise ValueError(f"invalid store key {key!r}: MongoDB field names cannot hold NUL")
    return parts


class _Encoder(ValueEncoder):
    """Turns a value into BSON, collecting the blobs the same write needs."""

    def __init__(self, codec: BlobCodec, run_id: str, threshold: int):
        super().__init__(codec, run_id)
        self.threshold = threshold
        self.blobs: list[Blob] = []

    def holds(self, value: int | str) -> bool:
        if type(value) is int:
            return value in _INT64
        if value.isascii():
            return True
        try:  # lone surrogates are not UTF-8, which BSON strings must be
            value.encode()
        except UnicodeEncodeError:
            return False
        return True

    def plain_key(self, key: str) -> bool:
        return super().plain_key(key) and "\x00" not in key

    def datetime(self, value: datetime) -> Any:
        return Binary(value.isoformat().encode(), _DATETIME)

    def blob(self, value: Any, what: str) -> Any:
        file_id = ObjectId()
        self.blobs.append((file_id, self.codec.dumps(value, bind=self.bind, what=what), what))
        return file_id

    def top(self, value: Any, what: str) -> Any:
        """A value written at a key; one over the threshold becomes a single blob."""
        first = len(self.blobs)
        encoded = self(value, what)
        if type(encoded) is not ObjectId and len(bson.encode({"v": encoded})) > self.threshold:
            del self.blobs[first:]
            return self.blob(value, what)
        return encoded


@dataclass
class _Staging:
    landed: bool = False


@dataclass(frozen=True)
class _Handles:
    runs: Collection
    blobs: GridFiles


class MongoDataStore:
    """Documents of workflow runs in a MongoDB collection, blobs in GridFS.

    ``url`` goes to MongoClient unchanged (credentials, TLS, replicaSet, ...); options it
    does not set get triggerd's defaults (serverSelectionTimeoutMS=5000, appName). The database is
    ``database``, else the one the URL names, else ``"triggerd"``. Nothing connects
    before ``open()``, which fails with :class:`BackendUnavailable` when the server does
    not answer. One store object may be shared by threads, not across a fork.
    """

    def __init__(
        self,
        url: str,
        codec: BlobCodec,
        *,
        database: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        gridfs_threshold: int = GRIDFS_THRESHOLD,
    ):
        self.url = url
        self.database = database
        self.collection = collection
        self.gridfs_threshold = gridfs_threshold
        self._codec = codec
        self._client: MongoClient | None = None
        self._handles: _Handles | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def open(self) -> MongoDataStore:
        with self._lock:
            if self._client is None:
                try:
                    client: MongoClient = client_for(self.url)
                except (ConfigurationError, ValueError) as exc:  # an unparsable URL or option
                    raise ConfigError(
                        f"{exc} ({mask_url_password(self.url)})", key="store.url"
                    ) from exc
                try:
                    with self._available("connecting", "the data store is not open"):
                        client.admin.command("ping")
                        handles = self._connect(client)
                except OperationFailure as exc:  # e.g. authentication failed, not authorised
                    client.close()
                    raise ConfigError(
                        f"MongoDB at {mask_url_password(self.url)} refused the data store: "
                        f"{_errmsg(exc)} (check the user, password and authSource in the URL)",
                        key="store.url",
                    ) from exc
                except BaseException:
                    client.close()
                    raise
                self._client, self._handles, self._pid = client, handles, os.getpid()
        return self

    def _connect(self, client: MongoClient) -> _Handles:
        db = (
            client[self.database]
            if self.database
            else client.get_default_database(DEFAULT_DATABASE)
        )
        return _Handles(db[self.collection], GridFiles.create(db, f"{self.collection}_blobs"))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = self._handles = None

    def __enter__(self) -> MongoDataStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _available(self, doing: str, outcome: str) -> Any:
        return reports_unavailable("data store", self.url, "store.url", doing, outcome)

    def _use(self) -> _Handles:
        # A MongoClient must not cross a fork (its sockets and threads would be shared).
        if self._handles is not None and self._pid != os.getpid():
            raise InternalError("this data store was opened in another process: open one here")
        handles = self._handles
        if handles is None:
            raise InternalError(f"the data store {mask_url_password(self.url)} is not open")
        return handles

    def _encoder(self, run_id: str) -> _Encoder:
        return _Encoder(self._codec, run_id, self.gridfs_threshold)

    def add(self, run_id: str, meta: dict | None = None) -> str:
        """Create the run's document ``{meta: meta, data: {}}``; returns ``run_id``."""
        meta, encode = dict(meta or {}), self._encoder(run_id)
        if not all(type(k) is str and encode.plain_key(k) for k in meta):
            raise ValueError("meta keys must be str, without '.' and without a leading '$'")
        encoded = {k: encode.top(v, f"store meta[{k!r}]") for k, v in meta.items()}
        name, now, handles = meta.get("name"), datetime.now(UTC), self._use()
        document = {
            "_id": run_id,
            "workflow": name if isinstance(name, str) else None,
            "meta": encoded,
            "data": {},
            "created": now,
            "last_modified": now,
        }
        with self._available(f"adding run {run_id}", "the run's document was not created"):
            with self._staged(handles, run_id, encode.blobs) as staging:
                try:
                    handles.runs.insert_one(document)
                except DuplicateKeyError:
                    raise DocumentExists(
                        f"the data store already holds a document for run {run_id}"
                    ) from None
                staging.landed = True
        return run_id

    def exists(self, run_id: str) -> bool:
        handles = self._use()
        with self._available(f"reading run {run_id}", "nothing was read"):
            return handles.runs.find_one({"_id": run_id}, {"_id": 1}) is not None

    def get(self, run_id: str) -> MongoDocument:
        if not self.exists(run_id):
            raise DocumentMissing(f"the data store holds no document for run {run_id}")
        return MongoDocument(self, run_id)

    def remove(self, run_id: str) -> None:
        """Delete the document and its GridFS files; a missing document is not an error."""
        handles = self._use()
        with self._available(f"removing run {run_id}", "the run may be removed only in part"):
            handles.runs.delete_one({"_id": run_id})
            handles.blobs.delete(handles.blobs.of_run(run_id))

    def snapshot(self, run_id: str) -> dict[str, dict]:
        """The whole document decoded, ``{"meta": ..., "data": ...}``."""
        document = self._read(run_id, {"meta": 1, "data": 1}, lambda doc: doc)
        if document is MISSING:
            raise DocumentMissing(f"the data store holds no document for run {run_id}")
        return document

    def _get(self, run_id: str, section: str, parts: list[str], default: Any) -> Any:
        value = self._read(
            run_id,
            {_projected(section, parts): 1},
            lambda doc: lookup(doc.get(section, {}), parts, MISSING, _marker_kind),
        )
        return default if value is MISSING else value

    def _read(self, run_id: str, projection: dict, pick: Any) -> Any:
        """``pick`` (document -> node) decoded, or MISSING without a document. A blob
        deleted under the read by a concurrent replacement makes it read again."""
        handles = self._use()
        with self._available(f"reading run {run_id}", "nothing was read"):
            for attempt in range(_ATTEMPTS):
                document = handles.runs.find_one({"_id": run_id}, projection)
                if document is None:
                    return MISSING
                node = pick({k: v for k, v in document.items() if k != "_id"})
                try:
                    return node if node is MISSING else self._decode(handles, run_id, node)
                except BlobMissing:
                    if attempt == _ATTEMPTS - 1:
                        raise
        raise InternalError("unreachable: the last attempt returns or raises")

    def _decode(self, handles: _Handles, run_id: str, node: Any) -> Any:
        file_ids = [m for m in markers(node, _marker_kind) if type(m) is ObjectId]
        bodies = handles.blobs.download(run_id, file_ids) if file_ids else {}

        def unmark(marker: Any) -> Any:
            if type(marker) is Binary:
                return datetime.fromisoformat(bytes(marker).decode())
            if marker not in bodies:
                raise BlobMissing(
                    f"run {run_id}: GridFS file {marker} referenced by the store is missing"
                )
            return self._codec.loads(bodies[marker], bind=blob_binding(run_id))

        return decode_tree(node, _marker_kind, unmark)

    def _write(
        self, run_id: str, section: str, writes: list[_Write], push: bool, blobs: list[Blob]
    ) -> bool:
        """One update command for all ``writes``; False when the document is gone, as
        Lightflow's modified_count. The blobs of the values it replaced are deleted."""
        handles, now = self._use(), datetime.now(UTC)
        paths = {".".join((section, *parts)): value for parts, _, value in writes}
        if push:
            update = {
                "$push": {p: {"$each": v} for p, v in paths.items()},
                "$set": {"last_modified": now},
            }
            fetch: list[str] = []
        else:
            update = {"$set": {**paths, "last_modified": now}}
            fetch = _disjoint(_projected(section, parts) for parts, _, _ in writes)
        query = {"_id": run_id, **_no_padding(section, writes)}
        with self._available(
            f"writing to run {run_id}", "the write may or may not have been stored"
        ):
            with self._staged(handles, run_id, blobs) as staging:
                for _attempt in range(_ATTEMPTS):
                    try:
                        before = handles.runs.find_one_and_update(
                            query,
                            update,
                            dict.fromkeys(fetch or ["_id"], 1),
                            return_document=ReturnDocument.BEFORE,
                        )
                    except OperationFailure as exc:
                        self._refuse_if_too_large(handles, run_id, paths, exc)
                        if exc.code not in _SHAPE_ERRORS:
                            raise
                        if not self._explain(handles, run_id, section, writes, push):
                            return False
                        raise InternalError(
                            f"MongoDB refused a write to run {run_id} that the "
                            f"store allows: {_errmsg(exc)}"
                        ) from exc
                    if before is not None:
                        staging.landed = True
                        break
                    if not self._explain(handles, run_id, section, writes, push):
                        return False
                else:
                    raise InternalError(
                        f"run {run_id}: the write's filter keeps refusing keys that fit"
                    )
            tree = before.get(section, {})
            old = (
                [lookup(tree, parts, MISSING, _marker_kind) for parts, _, _ in writes]
                if fetch
                else []
            )
            handles.blobs.delete(
                [m for n in old for m in markers(n, _marker_kind) if type(m) is ObjectId]
            )
        return True

    def _refuse_if_too_large(
        self, handles: _Handles, run_id: str, paths: Mapping[str, Any], exc: OperationFailure
    ) -> None:
        """Raise DocumentTooLarge if MongoDB refused writing ``paths`` for the 16 MiB limit."""
        if exc.code in _TOO_LARGE_ERRORS or self._too_large(handles, run_id, paths):
            raise DocumentTooLarge(
                f"run {run_id}: writing {', '.join(sorted(paths))} "
                "would make the run's document larger than MongoDB's 16 MiB "
                f"({_errmsg(exc)}); values over {self.gridfs_threshold:,} bytes "
                "go to GridFS, but many smaller ones add up: "
                "keep bulk data in files and store their paths"
            ) from exc

    @staticmethod
    def _too_large(handles: _Handles, run_id: str, paths: Mapping[str, Any]) -> bool:
        """Whether a refused write would have passed the 16 MiB limit (for servers that
        do not say so with MongoDB's own error codes): the document plus what was written."""
        document = handles.runs.find_one({"_id": run_id})
        if document is None:
            return False
        written = sum(len(bson.encode({"v": value})) for value in paths.values())
        return len(bson.encode(document)) + written > _MAX_DOCUMENT

    def _explain(
        self, handles: _Handles, run_id: str, section: str, writes: list[_Write], push: bool
    ) -> bool:
        """Why an update did not land: False without a document, else the KeyConflict
        the SQLite store raises; True when the keys fit by now (the shape changed back)."""
        fields = dict.fromkeys((f"{section}.{parts[0]}" for parts, _, _ in writes), 1)
        document = handles.runs.find_one({"_id": run_id}, fields)
        if document is None:
            return False
        tree = document.get(section, {})
        for parts, key, value in writes:  # in order, as the SQLite store applies them
            container, index, current = slot(tree, parts, key, _marker_kind)
            if push:
                check_appendable(current, key, _marker_kind)
            else:
                container[index] = value
        return True

    @contextmanager
    def _staged(self, handles: _Handles, run_id: str, blobs: list[Blob]) -> Iterator[_Staging]:
        """Uploads the blobs a write references; deletes them again unless the block
        marks the write as landed."""
        staging = _Staging()
        try:
            if blobs:
                handles.blobs.upload(run_id, blobs)
            yield staging
        finally:
            if not staging.landed and blobs:
                try:
                    handles.blobs.delete([file_id for file_id, _, _ in blobs])
                except PyMongoError:
                    pass  # the write failed already; these files go with the run's remove


def _errmsg(exc: PyMongoError) -> str:
    details = getattr(exc, "details", None)
    return str(details.get("errmsg", exc)) if isinstance(details, Mapping) else str(exc)


def _projected(section: str, parts: list[str]) -> str:
    """The path to fetch for a key: MongoDB projections do not index into arrays, so
    up to the segment before the first number."""
    end = next((i for i, part in enumerate(parts) if i and INDEX.fullmatch(part)), len(parts))
    return ".".join((section, *parts[:end]))


def _disjoint(paths: Iterator[str]) -> list[str]:
    """Paths without one below another: a projection may not hold both."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path.startswith(f"{shorter}.") for shorter in kept):
            kept.append(path)
    return kept


def _no_padding(section: str, writes: list[_Write]) -> dict:
    """The filter that keeps an index past a list's end from padding it with nulls."""
    conditions = []
    for parts, _, _ in writes:
        for depth in range(1, len(parts)):
            if INDEX.fullmatch(parts[depth]):
                container = ".".join((section, *parts[:depth]))
                conditions.append(
                    {
                        "$or": [
                            {container: {"$not": {"$type": "array"}}},
                            {f"{container}.{parts[depth]}": {"$exists": True}},
                        ]
                    }
                )
    return {"$and": conditions} if conditions else {}


def _merged(writes: list[_Write]) -> list[_Write]:
    """``set_many``'s keys as paths none of which lies below another, applied in order as
    SQLite applies them: a key below an earlier one is written into that one's value, a
    key above earlier ones replaces them."""
    merged: dict[tuple[str, ...], _Write] = {}
    for parts, key, value in writes:
        path = tuple(parts)
        above = next((p for p in merged if len(p) < len(path) and path[: len(p)] == p), None)
        if above is None:
            for below in [p for p in merged if p[: len(path)] == path]:
                del merged[below]
            merged[path] = (parts, key, value)
            continue
        tree: dict = {}
        node = tree
        for segment in above[:-1]:
            node = node.setdefault(segment, {})
        node[above[-1]] = merged[above][2]
        container, index, _ = slot(tree, parts, key, _marker_kind)
        container[index] = value
    return list(merged.values())


class MongoDocument(DocumentBase):
    """One run's document in the MongoDB store."""

    _store: MongoDataStore

    def get(self, key: str, default: Any = None, *, section: str = DATA) -> Any:
        """The decoded value at ``key``, or ``default`` when any segment is missing."""
        return self._store._get(self.run_id, check_section(section), _split(key), default)

    def set_many(self, values: Mapping[str, Any], *, section: str = DATA) -> bool:
        """``set`` of every ``key: value`` in one update command (the engine's bookkeeping)."""
        section, encode = check_section(section), self._store._encoder(self.run_id)
        writes = _merged(
            [(_split(k), k, encode.top(v, f"store {section}.{k}")) for k, v in values.items()]
        )
        used = {m for _, _, value in writes for m in markers(value, _marker_kind)}
        blobs = [blob for blob in encode.blobs if blob[0] in used]  # of keys later ones replaced
        return self._store._write(self.run_id, section, writes, False, blobs)

    def _append(self, key: str, values: list, section: str) -> bool:
        section, parts, encode = (
            check_section(section),
            _split(key),
            self._store._encoder(self.run_id),
        )
        encoded = [encode.top(v, f"store {section}.{key}[+{i}]") for i, v in enumerate(values)]
        return self._store._write(self.run_id, section, [(parts, key, encoded)], True, encode.blobs)
