"""What only the SQLite event log has: one WAL file, indexed queries, retention by pruning."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from eventlog_cases import Clock, successful_run

from triggerd.errors import InternalError
from triggerd.eventlog.schema import LogEvent
from triggerd.eventlog.sqlite import SqliteEventStore


def test_one_wal_file_with_json_payloads_iso_times_and_epoch(tmp_path):
    path = tmp_path / "sub" / "events.sqlite"
    event = LogEvent(
        "log", "m", data={"n": 1}, time=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    )
    with SqliteEventStore(path) as store:
        store.insert([event])
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        row = raw.execute("SELECT id, ts, time, data, v FROM events").fetchone()
    assert row == (event.id, 1767323045.6, "2026-01-02T03:04:05.600000Z", '{"n":1}', 2)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ("run = 'r'", "events_run"),
        ("workflow = 'w'", "events_workflow"),
        ("rule = 'x'", "events_rule"),
        ("kind = 'log' OR (kind >= 'task.' AND kind < 'task/')", "events_kind"),
    ],
)
def test_the_queries_use_an_index(tmp_path, filters, index):
    with SqliteEventStore(tmp_path / "e.sqlite"):
        pass
    with sqlite3.connect(tmp_path / "e.sqlite") as raw:
        plan = raw.execute(
            f"EXPLAIN QUERY PLAN SELECT * FROM events WHERE {filters} ORDER BY id LIMIT 5"
        ).fetchall()
    assert index in " ".join(str(step) for step in plan)


def test_retention_deletes_old_events_and_summaries_at_open(tmp_path):
    """Events and run summaries whose last event is older than retention_days go; the rest stay."""
    path = tmp_path / "e.sqlite"
    old = successful_run(Clock(start=datetime.now(UTC) - timedelta(days=10)), run="old")
    new = successful_run(Clock(start=datetime.now(UTC) - timedelta(days=1)), run="new")
    with SqliteEventStore(path) as store:
        store.insert(old + new)
    with SqliteEventStore(path, retention_days=5) as store:
        assert {e.run for e in store.find()} == {"new"}
        assert [s["run"] for s in store.runs()] == ["new"]
        assert store.run("old") is None
    with pytest.raises(ValueError, match="retention_days must be positive"):
        SqliteEventStore(path, retention_days=-1)


def test_a_closed_store_says_so(tmp_path):
    store = SqliteEventStore(tmp_path / "e.sqlite")
    with pytest.raises(InternalError, match="not open"):
        store.insert([LogEvent("log")])
