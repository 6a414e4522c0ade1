"""Shared fixtures: a real local executor (worker processes, SQLite store) for the suite,
and, for tests that ask for it, a real Redis with a real Celery worker (redis_fixture)."""

from __future__ import annotations

from typing import Any

import pytest

# Fixtures of the Celery tests, imported here so every test module can ask for them;
# nothing starts until a test does.
from ioc_fixture import soft_ioc  # noqa: F401
from mongo_fixture import mongo_server  # noqa: F401
from redis_fixture import celery_cluster, celery_engine, redis_server  # noqa: F401
from support import WORKFLOWS, EventCollector, Outcome, make_executor


@pytest.fixture(scope="session")
def events() -> EventCollector:
    return EventCollector()


@pytest.fixture(scope="session")
def engine(tmp_path_factory, events):
    """One executor for the session over the repository's workflows/ (2 workers)."""
    executor, store = make_executor(
        tmp_path_factory.mktemp("engine"), [WORKFLOWS], events, workers=2
    )
    executor.start()
    yield executor, store
    executor.close()
    store.close()


@pytest.fixture(scope="session")
def runner_for(events):
    """``runner_for((executor, store))``: a ``run_workflow`` function on that executor."""

    def make(engine_and_store: tuple[Any, Any]):
        executor, store = engine_and_store

        def run(name: str, args: dict[str, Any] | None = None, timeout: float = 60) -> Outcome:
            handle = executor.submit(name, args or {})
            result = handle.wait(timeout)
            return Outcome(result, store.snapshot(result.run_id), events.of(result.run_id))

        return run

    return make


@pytest.fixture
def run_workflow(engine, runner_for):
    """``run_workflow(name, args=None, timeout=60) -> Outcome`` on the session executor."""
    return runner_for(engine)


@pytest.fixture
def collector() -> EventCollector:
    """A fresh event collector for one test."""
    return EventCollector()
