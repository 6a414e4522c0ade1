"""The event log on MongoDB: an events collection and a run summaries collection.

An event is one document, its id the ``_id`` (so a replay is a duplicate key, ignored)::

    {_id, v, time: "2026-11-25T18:55:17.123456Z", ts: ISODate(...), kind, run, workflow,
     dag, task, rule, level, message, host, pid, worker, source, data}

``time`` is the exact time as text, ``ts`` the same instant as a BSON date (milliseconds)
for ``since`` and the TTL index; fields that are None are left out. Indexes: ``_id``,
(run, _id), (workflow, _id), (rule, _id), (kind, _id), (ts) — a TTL index when
``retention_days`` is set, changed in place (collMod) when that changes and a plain one
again when it is removed.

A run summary is one document per run (``_id`` = run id, the fields of
:mod:`triggerd.eventlog.summary` plus ``last_ts``, a BSON date that carries the TTL
index when ``retention_days`` is set), indexed by (first, _id), (status, first, _id),
(workflow, first, _id), (rule, first, _id). Each insert brings them up to date with one
``bulk_write`` of one upsert per run whose update is a pipeline (MongoDB 4.2+): the
order-independent fields set, first and last times as ``$min``/``$max`` of stored and
new, and each state with its fields under a ``$cond`` that keeps the stored ones unless
the new key is greater. Each is atomic on the server and idempotent, so two forwarders,
replays and events out of order need no transaction and no replica set.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    OperationFailure,
    PyMongoError,
)

from triggerd.config import mask_url_password
from triggerd.errors import ConfigError, InternalError
from triggerd.eventlog.safe import sanitize
from triggerd.eventlog.schema import LogEvent, format_time
from triggerd.eventlog.store import EventQuery, EventStore
from triggerd.eventlog.summary import FAILED_STATUSES, RunDelta, deltas, public
from triggerd.mongodb import DEFAULT_DATABASE, client_for, reports_unavailable

__all__ = ["MongoEventStore"]

_DUPLICATE_KEY = 11000
# What MongoClient gets unless the URL sets it (URL options are passed on unchanged).
_EVENT_INDEXES = {"run_id": "run", "workflow_id": "workflow", "rule_id": "rule", "kind_id": "kind"}
_RUN_INDEXES = {
    "first_id": [],
    "status_first_id": ["status"],
    "workflow_first_id": ["workflow"],
    "rule_first_id": ["rule"],
}


def _document(event: LogEvent) -> dict[str, Any]:
    doc = {name: value for name, value in vars(event).items() if value is not None}
    doc["_id"] = doc.pop("id")
    doc["time"], doc["ts"] = format_time(event.time), event.time
    return doc


def _summary_update(delta: RunDelta) -> UpdateOne:
    """The delta as one upsert whose update is a pipeline: ``$min``/``$max`` against the
    stored values, and each guarded state with its fields under a ``$cond`` on the stored
    key. One stage reads the document as it was, so every condition sees the old key."""
    fields: dict[str, Any] = {path: {"$literal": value} for path, value in delta.set.items()}
    for path, value in delta.min.items():
        fields[path] = {"$min": [f"${path}", {"$literal": value}]}
    for path, value in {**delta.max, "last_ts": delta.last_time}.items():
        fields[path] = {"$max": [f"${path}", {"$literal": value}]}
    for key_path, candidate in delta.guarded.items():
        newer = {"$lt": [{"$ifNull": [f"${key_path}", ""]}, candidate.key]}
        for path, value in {key_path: candidate.key, **candidate.fields}.items():
            fields[path] = {"$cond": [newer, {"$literal": value}, f"${path}"]}
    return UpdateOne({"_id": delta.run}, [{"$set": fields}], upsert=True)


def _duplicate_id(error: Mapping[str, Any]) -> bool:
    """A write error that says the event is stored already (not a clash on another unique index)."""
    return error.get("code") == _DUPLICATE_KEY and list(error.get("keyPattern") or {"_id": 1}) == [
        "_id"
    ]


def _errmsg(exc: PyMongoError) -> str:
    details = getattr(exc, "details", None)
    return str(details.get("errmsg", exc)) if isinstance(details, Mapping) else str(exc)


def _ttl_seconds(retention_days: float | None) -> int | None:
    if retention_days is None:
        return None
    if retention_days <= 0:
        raise ValueError(f"retention_days must be positive, not {retention_days}")
    return max(1, round(retention_days * 86400))


def _ensure_ttl(
    collection: Collection, field: str, name: str, seconds: int | None, *, plain: bool
) -> None:
    """The single-field index on ``field`` expires documents after ``seconds`` (None:
    never; then it stays as a plain index only if ``plain``)."""
    current = None
    for index_name, spec in collection.index_information().items():
        if [(k, int(d)) for k, d in spec["key"]] == [(field, 1)]:
            current = (index_name, spec.get("expireAfterSeconds"))
    if current is not None:
        index_name, held = current
        if (None if held is None else int(held)) == seconds:
            return
        if seconds is not None and held is not None:
            try:
                collection.database.command(
                    "collMod",
                    collection.name,
                    index={"name": index_name, "expireAfterSeconds": seconds},
                )
                return
            except OperationFailure:
                pass  # a server without collMod of TTL indexes: build it again
        collection.drop_index(index_name)
    if seconds is not None:
        collection.create_index([(field, ASCENDING)], name=name, expireAfterSeconds=seconds)
    elif plain:
        collection.create_index([(field, ASCENDING)], name=name)


class MongoEventStore(EventStore):
    """Events and run summaries in MongoDB (a standalone server will do).

    ``url`` goes to MongoClient unchanged (credentials, TLS, replicaSet, ...); without a
    ``serverSelectionTimeoutMS`` of its own the client gives up after 5 s. The database
    is ``database``, else the one the URL names, else ``"triggerd"``. ``open()`` checks
    the server answers (else :class:`BackendUnavailable`), creates the indexes and
    applies ``retention_days`` to the TTL indexes.
    """

    def __init__(
        self,
        url: str,
        database: str | None = None,
        collection: str = "events",
        runs_collection: str = "run_summaries",
        retention_days: float | None = None,
    ):
        self.url = url
        self.database = database
        self.collection = collection
        self.runs_collection = runs_collection
        self.retention_days = retention_days
        self._ttl = _ttl_seconds(retention_days)
        self._client: MongoClient | None = None
        self._events: Collection | None = None
        self._summaries: Collection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def open(self) -> MongoEventStore:
        with self._lock:
            if self._client is None:
                try:
                    client: MongoClient = client_for(self.url, tz_aware=True)
                except (ConfigurationError, ValueError) as exc:  # an unparsable URL or option
                    raise ConfigError(
                        f"{exc} ({mask_url_password(self.url)})", key="eventlog.url"
                    ) from exc
                try:
                    with self._available("connecting", "the event log is not open"):
                        client.admin.command("ping")
                        db = (
                            client[self.database]
                            if self.database
                            else client.get_default_database(DEFAULT_DATABASE)
                        )
                        events, runs = db[self.collection], db[self.runs_collection]
                        self._create_indexes(events, runs)
                except OperationFailure as exc:  # e.g. authentication failed, not authorised
                    client.close()
                    raise ConfigError(
                        f"MongoDB at {mask_url_password(self.url)} refused the event log: "
                        f"{_errmsg(exc)} (check the user, password and authSource in the URL)",
                        key="eventlog.url",
                    ) from exc
                except BaseException:
                    client.close()
                    raise
                self._client, self._events, self._summaries, self._pid = (
                    client,
                    events,
                    runs,
                    os.getpid(),
                )
        return self

    def _create_indexes(self, events: Collection, runs: Collection) -> None:
        for name, field in _EVENT_INDEXES.items():
            events.create_index([(field, ASCENDING), ("_id", ASCENDING)], name=name)
        _ensure_ttl(events, "ts", "ts", self._ttl, plain=True)
        for name, fields in _RUN_INDEXES.items():
            runs.create_index([(f, ASCENDING) for f in (*fields, "first", "_id")], name=name)
        _ensure_ttl(runs, "last_ts", "last_ts", self._ttl, plain=False)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = self._events = self._summaries = None

    def _available(self, doing: str, outcome: str) -> Any:
        return reports_unavailable("event log", self.url, "eventlog.url", doing, outcome)

    def _use(self) -> tuple[Collection, Collection]:
        # A MongoClient must not cross a fork (its sockets and threads would be shared).
        if self._client is not None and self._pid != os.getpid():
            raise InternalError("this event store was opened in another process: open one here")
        events, runs = self._events, self._summaries
        if events is None or runs is None:
            raise InternalError(f"the event log {mask_url_password(self.url)} is not open")
        return events, runs

    def insert(self, events: Sequence[LogEvent]) -> int:
        """``insert_many`` (unordered; duplicate ids ignored, any other error raised),
        then the summaries; a failure in between is mended by inserting the batch again."""
        if not events:
            return 0
        collection, runs = self._use()
        safe = [sanitize(event) for event in events]
        documents = [_document(event) for event in safe]
        with self._available(
            f"inserting {len(documents)} events", "they may be stored in part: insert them again"
        ):
            try:
                stored = len(collection.insert_many(documents, ordered=False).inserted_ids)
            except BulkWriteError as exc:
                details = exc.details
                errors = details.get("writeErrors") or []
                if details.get("writeConcernErrors") or not all(map(_duplicate_id, errors)):
                    raise
                stored = int(details.get("nInserted", 0))
            updates = [_summary_update(delta) for delta in deltas(safe)]
            if updates:
                self._update_summaries(runs, updates)
        return stored

    @staticmethod
    def _update_summaries(runs: Collection, updates: list[UpdateOne]) -> None:
        for attempt in range(3):
            try:
                runs.bulk_write(updates, ordered=False)
                return
            except BulkWriteError as exc:
                # Two upserts creating one summary at once: the loser gets a duplicate key
                # (servers before 4.2 do not retry it). Every update is idempotent: again.
                errors = exc.details.get("writeErrors") or []
                if (
                    attempt == 2
                    or exc.details.get("writeConcernErrors")
                    or not all(map(_duplicate_id, errors))
                ):
                    raise
                updates = [updates[error["index"]] for error in errors]

    def _find(self, query: EventQuery) -> list[LogEvent]:
        collection, _ = self._use()
        where: dict[str, Any] = {}
        for name in ("run", "workflow", "rule"):
            value = getattr(query, name)
            if value is not None:
                where[name] = value
        kinds: list[dict[str, Any]] = []
        if query.exact_kinds:
            kinds.append({"kind": {"$in": list(query.exact_kinds)}})
        for family in query.kind_families:  # "/" follows "." in code points
            kinds += [{"kind": family}, {"kind": {"$gte": f"{family}.", "$lt": f"{family}/"}}]
        if len(kinds) == 1:
            where.update(kinds[0])
        elif kinds:
            where["$or"] = kinds
        if query.since is not None:
            # ts (milliseconds) narrows through the index, the fixed-width text is exact
            floor = query.since.replace(microsecond=query.since.microsecond // 1000 * 1000)
            where["ts"] = {"$gte": floor}
            where["time"] = {"$gte": format_time(query.since)}
        if query.levels is not None:
            where["level"] = {"$in": list(query.levels)}
        if query.after_id is not None:
            where["_id"] = {"$gt": query.after_id}
        order = DESCENDING if query.newest_first else ASCENDING
        with self._available("reading events", "nothing was read"):
            documents = list(
                collection.find(where, {"ts": 0}).sort("_id", order).limit(query.limit)
            )
        return [LogEvent.from_dict(doc) for doc in documents]

    def _runs(
        self,
        failed: bool,
        since: datetime | None,
        workflow: str | None,
        rule: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        _, runs = self._use()
        where: dict[str, Any] = {}
        if failed:
            where["status"] = {"$in": list(FAILED_STATUSES)}
        if since is not None:
            where["first"] = {"$gte": format_time(since)}
        if workflow is not None:
            where["workflow"] = workflow
        if rule is not None:
            where["rule"] = rule
        with self._available("reading run summaries", "nothing was read"):
            documents = list(
                runs.find(where, {"dags": 0})
                .sort([("first", DESCENDING), ("_id", DESCENDING)])
                .limit(limit)
            )
        return [public(doc, with_dags=False) for doc in documents]

    def _run(self, run_id: str) -> dict[str, Any] | None:
        _, runs = self._use()
        with self._available(f"reading run {run_id}", "nothing was read"):
            document = runs.find_one({"_id": run_id})
        return None if document is None else public(document)
