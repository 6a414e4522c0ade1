"""Fixtures of the store tests: ``backend`` runs a test on SQLite (a file in its tmp dir)
and on MongoDB (a collection of its own on the session's real server, dropped after)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from store_backends import MongoBackend, SqliteBackend


@pytest.fixture(params=["sqlite", "mongodb"])
def backend(request, tmp_path: Path):
    if request.param == "sqlite":
        chosen: SqliteBackend | MongoBackend = SqliteBackend(tmp_path / "store.sqlite")
    else:
        server = request.getfixturevalue("mongo_server")
        chosen = MongoBackend(server.url, f"runs_{uuid.uuid4().hex[:12]}")
    yield chosen
    chosen.close()


@pytest.fixture
def store(backend):
    with backend.store() as opened:
        yield opened


@pytest.fixture
def doc(store):
    return store.get(store.add("run-1", {"name": "wf"}))
