"""Backends of the workflow data store (the ``store`` a task sees): SQLite embedded."""

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
    "KeyConflict",
    "SqliteDataStore",
    "SqliteDocument",
]
