"""How triggerd opens its SQLite files (daemon state, data store, event log): one way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from triggerd.private import create_private_file, make_private_dir

__all__ = ["connect_wal"]


def connect_wal(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to ``path`` (created with its directory) in WAL mode with ``schema``
    applied. Transactions are the caller's (``isolation_level=None``: it issues BEGIN,
    IMMEDIATE for writes); a writer waits up to 30 s for another. One connection may be
    shared by threads under the caller's lock."""
    make_private_dir(path.parent)
    create_private_file(path)  # 0600: its -wal and -shm files take its mode
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash or power
    # loss may lose the last commits.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(schema)
    return conn
