"""Shared fixtures: a real local executor (worker processes, SQLite store) for the suite."""

from __future__ import annotations

from typing import Any

import pytest
from support import WORKFLOWS, EventCollector, Outcome, make_executor


@pytest.fixture(scope="session")
def events() -> EventCollector:
    return EventCollector()


@pytest.fixture(scope="session")
def engine(tmp_path_factory, events):
    """One executor for the session over the repository's workflows/ (2 workers)."""
    executor, store = make_executor(tmp_path_factory.mktemp("engine"), [WORKFLOWS], events, workers=2)
    executor.start()
    yield executor, store
    executor.close()
    store.close()


@pytest.fixture
def run_workflow(engine, events):
    """``run_workflow(name, args=None, timeout=60) -> Outcome`` on the session executor."""
    executor, store = engine

    def run(name: str, args: dict[str, Any] | None = None, timeout: float = 60) -> Outcome:
        handle = executor.submit(name, args or {})
        result = handle.wait(timeout)
        return Outcome(result, store.snapshot(result.run_id), events.of(result.run_id))

    return run
