"""Backends of the workflow data store (the ``store`` a task sees): SQLite embedded, and
MongoDB + GridFS in :mod:`triggerd.store.mongodb` (imported on demand: it loads pymongo).
:func:`triggerd.store.factory.make_store` opens the one the settings name."""

from triggerd.store._common import DocumentTooLarge
from triggerd.store.sqlite import (
    BlobCodec,
    BlobMissing,
    DocumentExists,
    DocumentMissing,
    KeyConflict,
    SqliteDataStore,
    SqliteDocument,
)

__all__ = [
    "BlobCodec",
    "BlobMissing",
    "DocumentExists",
    "DocumentMissing",
    "DocumentTooLarge",
    "KeyConflict",
    "SqliteDataStore",
    "SqliteDocument",
]
