"""The event log's queries give the same answers on SQLite and on a real MongoDB server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from eventlog_cases import BASE, Clock, failed_run, successful_run

from triggerd.eventlog.factory import open_event_store
from triggerd.eventlog.schema import LogEvent, format_time


def ids(events: list[LogEvent]) -> list[str]:
    return [event.id for event in events]


@pytest.fixture
def mixed(store) -> dict[str, LogEvent]:
    """A stored mix of kinds, levels, runs, workflows and rules, by name; times one second apart."""
    clock = Clock()
    a = {"run": "r1", "workflow": "wf-a", "rule": "rule-a"}
    b = {"run": "r2", "workflow": "wf-b", "rule": "rule-b"}
    made = {
        "fired": clock.event("trigger.fired", **a),
        "started": clock.event("run.started", **a),
        "task_started": clock.event("task.started", dag="main", task="t1", **a),
        "task_bare": clock.event("task", "a kind without a dot", **a),
        "tasks_lookalike": clock.event("tasks.listed", **a),
        "debug": clock.event("log", "detail", level="debug", **b),
        "warning": clock.event("log", "disk nearly full", level="warning", **b),
        "output": clock.event("output", "a line", **b),
        "failed": clock.event(
            "task.failed", "t2 failed", level="error", dag="main", task="t2", **b
        ),
        "critical": clock.event("daemon.stop", "out of memory", level="critical"),
        "logs_lookalike": clock.event("logs.rotated"),
    }
    assert store.insert(list(made.values())) == len(made)
    return made


def pick(made: dict[str, LogEvent], *names: str) -> list[str]:
    return [made[name].id for name in names]


def test_events_read_back_field_for_field(store):
    """Every field of an event, worker and source included, comes back as it went in."""
    event = LogEvent(
        "task.started",
        "t1 started on w3",
        run="r1",
        workflow="wf",
        dag="main",
        task="t1",
        rule="rule",
        level="info",
        data={"worker": "w3", "nested": {"list": [1, 2.5, None, True]}},
        time=BASE,
        host="mx-sq1",
        pid=4242,
        worker="w3",
        source={"path": "/data/a.h5", "size": 3},
    )
    store.insert([event])
    [back] = store.find()
    assert back == event
    assert back.to_dict()["time"] == "2026-11-25T18:00:00.123456Z"


def test_inserting_the_same_events_twice_stores_them_once(store):
    """A replay stores nothing, raises nothing and leaves the summary as it was."""
    events = successful_run(Clock())
    assert store.insert(events) == len(events)
    summary = store.run("run-ok")
    assert store.insert(events) == 0
    assert store.insert(events[3:] + failed_run(Clock())) == 9  # only the new run's events
    assert ids(store.find(run="run-ok")) == ids(events)
    assert store.run("run-ok") == summary


def test_duplicates_within_one_batch_store_one_event(store):
    """The same id twice in one batch is one event."""
    event = LogEvent("log", "once")
    assert store.insert([event, event]) == 1
    assert ids(store.find()) == [event.id]


def test_each_filter_selects_exactly_its_events(store, mixed):
    """run, workflow, rule and their combination select only matching events, in id order."""
    everything = ids(store.find())
    assert everything == sorted(everything) == [e.id for e in mixed.values()]
    run_a = pick(mixed, "fired", "started", "task_started", "task_bare", "tasks_lookalike")
    assert ids(store.find(run="r1")) == run_a
    assert ids(store.find(workflow="wf-b")) == pick(mixed, "debug", "warning", "output", "failed")
    assert ids(store.find(rule="rule-a")) == run_a
    assert ids(store.find(run="r1", workflow="wf-b")) == []
    assert ids(store.find(run="nope")) == []


def test_a_kind_without_a_dot_selects_its_family(store, mixed):
    """ "task" matches task and task.*, not tasks.*; "log" matches log, not logs.*; dotted
    kinds match exactly."""
    assert ids(store.find(kinds="task")) == pick(mixed, "task_started", "task_bare", "failed")
    assert ids(store.find(kinds=["log"])) == pick(mixed, "debug", "warning")
    assert ids(store.find(kinds=["log", "output"])) == pick(mixed, "debug", "warning", "output")
    assert ids(store.find(kinds=["task.failed", "trigger"])) == pick(mixed, "fired", "failed")
    assert ids(store.find(kinds=["task.fail"])) == []
    assert ids(store.find(kinds=["task"], run="r2")) == pick(mixed, "failed")


def test_level_is_a_minimum(store, mixed):
    """warning selects warning, error and critical; debug selects everything;
    unknown levels are refused."""
    assert ids(store.find(level="warning")) == pick(mixed, "warning", "failed", "critical")
    assert ids(store.find(level="ERROR")) == pick(mixed, "failed", "critical")
    assert len(store.find(level="debug")) == len(mixed)
    assert ids(store.find(level="info", run="r2")) == pick(mixed, "warning", "output", "failed")
    with pytest.raises(ValueError, match="unknown level 'loud'"):
        store.find(level="loud")


def test_since_selects_events_at_or_after_a_time(store, mixed):
    """since is inclusive and exact to the microsecond; a naive datetime counts as UTC."""
    fourth = mixed["task_bare"].time
    assert ids(store.find(since=fourth))[:2] == pick(mixed, "task_bare", "tasks_lookalike")
    assert len(store.find(since=fourth)) == len(mixed) - 3
    assert (
        ids(store.find(since=fourth + timedelta(microseconds=1)))[0] == mixed["tasks_lookalike"].id
    )
    assert ids(store.find(since=fourth.replace(tzinfo=None), run="r1")) == pick(
        mixed, "task_bare", "tasks_lookalike"
    )
    assert store.find(since=BASE + timedelta(days=1)) == []


def test_following_with_after_id_sees_every_event_once(store):
    """Asking again and again for events after the last id seen yields each event
    exactly once, in order."""
    clock, seen, last = Clock(), [], None
    made = [clock.event("output", f"line {i}", run="r1") for i in range(25)]
    for start in range(0, 25, 7):
        store.insert(made[start : start + 7])
        while batch := store.find(run="r1", kinds=["log", "output"], after_id=last, limit=3):
            seen += batch
            last = batch[-1].id
    assert ids(seen) == ids(made)
    assert store.find(run="r1", after_id=last) == []


def test_limit_and_newest_first(store, mixed):
    """limit keeps the oldest; newest_first keeps the newest, newest first; limit 0 is nothing."""
    names = list(mixed)
    assert ids(store.find(limit=2)) == pick(mixed, *names[:2])
    assert ids(store.find(limit=3, newest_first=True)) == pick(mixed, *reversed(names[-3:]))
    assert ids(store.find(run="r1", newest_first=True, limit=1)) == pick(mixed, "tasks_lookalike")
    assert store.find(limit=0) == []


def test_events_survive_closing_and_opening_again(make_store):
    """What one store object inserted, another one opened later finds."""
    events = successful_run(Clock())
    with make_store() as first:
        first.insert(events)
    with make_store() as second:
        assert ids(second.find()) == ids(events)
        assert second.run("run-ok")["status"] == "succeeded"


def test_open_event_store_picks_the_backend_by_target(tmp_path):
    """A mongodb:// URL opens MongoDB; anything else is a SQLite file."""
    from triggerd.eventlog.mongodb import MongoEventStore
    from triggerd.eventlog.sqlite import SqliteEventStore

    assert isinstance(open_event_store(tmp_path / "e.sqlite"), SqliteEventStore)
    chosen = open_event_store(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100", database="x", retention_days=2
    )
    assert isinstance(chosen, MongoEventStore)
    assert (chosen.database, chosen.retention_days) == ("x", 2)


def test_time_text_sorts_as_time():
    """Stored times are fixed width, so text order is time order (whole seconds too)."""
    whole, later = BASE.replace(microsecond=0), BASE.replace(microsecond=1)
    assert format_time(whole) == "2026-11-25T18:00:00.000000Z"
    assert format_time(whole) < format_time(later)
