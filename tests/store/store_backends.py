"""The backends the store tests run on: how to open stores over one test's data, and how
to look at what a backend stored without going through the store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pymongo
from bson import ObjectId
from gridfs import GridFSBucket
from pymongo.errors import PyMongoError

from triggerd.engine.codec import Codec
from triggerd.store.mongodb import MongoDataStore
from triggerd.store.sqlite import SqliteDataStore

__all__ = ["KEY", "MongoBackend", "SqliteBackend", "open_store"]

KEY = b"k" * 32


class SqliteBackend:
    name = "sqlite"

    def __init__(self, db: Path):
        self.db = db

    @property
    def spec(self) -> tuple[str, ...]:
        """Picklable: what a spawned process needs to open the same store."""
        return ("sqlite", str(self.db))

    def store(self, codec: Codec | None = None) -> SqliteDataStore:
        return SqliteDataStore(self.db, codec or Codec(KEY))

    def _query(self, sql: str, *args: Any) -> list[tuple]:
        with sqlite3.connect(self.db) as raw:
            return raw.execute(sql, args).fetchall()

    def blob_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM blobs")[0][0]

    def stored(self, run_id: str) -> dict:
        """The data section as stored (JSON, markers not decoded)."""
        return json.loads(self._query("SELECT data FROM documents WHERE run_id = ?", run_id)[0][0])

    def is_blob_ref(self, node: Any) -> bool:
        return isinstance(node, dict) and set(node) == {"$blob"}

    def blob_body(self) -> bytes:
        (body,) = [row[0] for row in self._query("SELECT body FROM blobs")]
        return body

    def replace_blob_body(self, body: bytes) -> None:
        with sqlite3.connect(self.db) as raw:
            raw.execute("UPDATE blobs SET body = ?", (body,))

    def close(self) -> None:
        pass


class MongoBackend:
    name = "mongodb"

    def __init__(self, url: str, collection: str):
        self.url = url
        self.collection = collection
        self.client: pymongo.MongoClient = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        self.db = self.client.get_default_database("triggerd")
        self.runs = self.db[collection]
        self.files = self.db[f"{collection}_blobs.files"]
        self.chunks = self.db[f"{collection}_blobs.chunks"]
        self.bucket = GridFSBucket(self.db, f"{collection}_blobs")

    @property
    def spec(self) -> tuple[str, ...]:
        return ("mongodb", self.url, self.collection)

    def store(self, codec: Codec | None = None, **options: Any) -> MongoDataStore:
        return MongoDataStore(self.url, codec or Codec(KEY), collection=self.collection, **options)

    def blob_count(self) -> int:
        return self.files.count_documents({})

    def stored(self, run_id: str) -> dict:
        """The data section as stored (BSON, markers not decoded)."""
        return self.runs.find_one({"_id": run_id})["data"]

    def is_blob_ref(self, node: Any) -> bool:
        return type(node) is ObjectId and self.files.count_documents({"_id": node}) == 1

    def blob_body(self) -> bytes:
        (file,) = self.files.find()
        return self.bucket.open_download_stream(file["_id"]).read()

    def replace_blob_body(self, body: bytes) -> None:
        """What someone with write access to the database could do: same file, new bytes."""
        (file,) = self.files.find()
        self.bucket.delete(file["_id"])
        self.bucket.upload_from_stream_with_id(
            file["_id"], file["filename"], body, metadata=file["metadata"]
        )

    def close(self) -> None:
        try:
            for name in (self.runs.name, self.files.name, self.chunks.name):
                self.db.drop_collection(name)
        except PyMongoError:
            pass  # the server is down: a failure of the test itself says why
        self.client.close()


def open_store(spec: tuple[str, ...], codec: Codec) -> SqliteDataStore | MongoDataStore:
    """An opened store from a backend's ``spec`` (in a spawned process)."""
    if spec[0] == "sqlite":
        return SqliteDataStore(Path(spec[1]), codec).open()
    return MongoDataStore(spec[1], codec, collection=spec[2]).open()
