"""The data store backend the settings name, opened.

:class:`StoreSpec` is what a process needs to open the store on its own: the local pool's
worker processes and Celery workers each open their own (neither a SQLite connection nor
a MongoClient may cross a fork), from a spec that pickles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from triggerd.config import Settings
from triggerd.errors import ConfigError
from triggerd.store._common import BlobCodec
from triggerd.store.sqlite import SqliteDataStore

if TYPE_CHECKING:
    from triggerd.store.mongodb import MongoDataStore

__all__ = ["StoreSpec", "make_store", "store_spec"]


@dataclass(frozen=True)
class StoreSpec:
    """Where the data store is: an SQLite file, or a MongoDB URL, database and collection."""

    backend: str
    path: Path
    url: str | None = None
    database: str | None = None
    collection: str = "runs"

    def open(self, codec: BlobCodec) -> SqliteDataStore | MongoDataStore:
        """The store, opened: the caller closes it (or uses ``with``).

        MongoDB raises :class:`~triggerd.errors.BackendUnavailable` when the server does
        not answer.
        """
        return self.create(codec).open()

    def create(self, codec: BlobCodec) -> SqliteDataStore | MongoDataStore:
        """The store, not opened yet: nothing connects before its ``open()`` (which a
        caller that rides out outages calls again until it succeeds)."""
        if self.backend == "sqlite":
            return SqliteDataStore(self.path, codec)
        if self.url is None:  # loaded settings never lack it; settings built unvalidated might
            raise ConfigError("required when backend = 'mongodb'", key="store.url")
        from triggerd.store.mongodb import MongoDataStore  # pymongo is loaded only where it is used

        return MongoDataStore(self.url, codec, database=self.database, collection=self.collection)

    def describe(self) -> str:
        """For messages: the file, or the URL without its password."""
        if self.backend == "sqlite":
            return str(self.path)
        from triggerd.config import mask_url_password

        return mask_url_password(self.url or "")


def store_spec(settings: Settings) -> StoreSpec:
    store = settings.store
    return StoreSpec(
        store.backend, settings.store_path, store.url, store.database, store.collection
    )


def make_store(settings: Settings, codec: BlobCodec) -> SqliteDataStore | MongoDataStore:
    """``settings.store``'s backend, opened: the caller closes it (or uses ``with``)."""
    return store_spec(settings).open(codec)
