"""Fixtures of the event log tests: ``make_store`` opens stores of one backend over one
test's data: SQLite (a file in the test's tmp dir) or MongoDB (a database of its own on
the session's real server, dropped after the test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymongo
import pytest

from triggerd.eventlog.mongodb import MongoEventStore
from triggerd.eventlog.sqlite import SqliteEventStore
from triggerd.eventlog.store import EventStore

MakeStore = Callable[..., EventStore]


@pytest.fixture(params=["sqlite", "mongodb"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_store(request, backend: str, tmp_path: Path) -> Iterator[MakeStore]:
    """``make_store(**options)``: a new, unopened store over this test's data."""
    if backend == "sqlite":
        path = tmp_path / "events.sqlite"
        yield lambda **options: SqliteEventStore(path, **options)
        return
    server = request.getfixturevalue("mongo_server")
    database = f"eventlog_{uuid.uuid4().hex[:12]}"
    yield lambda **options: MongoEventStore(server.url, database=database, **options)
    client: pymongo.MongoClient = pymongo.MongoClient(server.url, serverSelectionTimeoutMS=2000)
    try:
        client.drop_database(database)
    except pymongo.errors.PyMongoError:
        pass  # a test that stopped the server: its data goes with the session's tmp dir
    finally:
        client.close()


@pytest.fixture
def store(make_store: MakeStore) -> Iterator[EventStore]:
    with make_store() as opened:
        yield opened


@pytest.fixture
def mongo_db(mongo_server) -> Iterator[tuple[str, str]]:
    """(url, database) of a fresh database on the session's server, dropped after."""
    database = f"eventlog_{uuid.uuid4().hex[:12]}"
    yield mongo_server.url, database
    client: pymongo.MongoClient = pymongo.MongoClient(
        mongo_server.url, serverSelectionTimeoutMS=2000
    )
    try:
        client.drop_database(database)
    finally:
        client.close()
