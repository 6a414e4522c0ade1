"""Opening the event store a target names.

Apart from :mod:`triggerd.eventlog.store` because it imports both backends, and the
backends import ``store`` for :class:`~triggerd.eventlog.store.EventStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from triggerd.eventlog.store import EventStore

__all__ = ["open_event_store"]


def open_event_store(target: str | Path, **options: Any) -> EventStore:
    """A store (not opened yet) for ``target``: a ``mongodb://`` or ``mongodb+srv://``
    URL, else the path of a SQLite file. ``options`` go to the backend's constructor."""
    text = str(target)
    if text.startswith(("mongodb://", "mongodb+srv://")):
        # On demand: pymongo is heavy, and the embedded default never needs it.
        from triggerd.eventlog.mongodb import MongoEventStore

        return MongoEventStore(text, **options)
    from triggerd.eventlog.sqlite import SqliteEventStore

    return SqliteEventStore(Path(text), **options)
