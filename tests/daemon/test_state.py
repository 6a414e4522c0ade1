"""The state file: the outbox of runs and the file ledger, in one SQLite file (WAL)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

import triggerd.daemon.state as state_module
from triggerd.daemon.state import LedgerEntry, StateDB

CAFE = os.fsdecode(b"/data/mx1/caf\xe9.h5")  # not UTF-8: a lone surrogate after fsdecode


class Clock:
    """A stand-in for the ``time`` module inside state.py: ``time()`` returns ``now``."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(state_module, "time", clock)
    return clock


@pytest.fixture
def db(tmp_path: Path):
    state = StateDB(tmp_path / "state.sqlite").open()
    yield state
    state.close()


def ident(
    path: str, inode: int = 7, size: int = 100, mtime_ns: int = 1_000
) -> tuple[str, int, int, int]:
    """A file identity as FileEvent.identity gives it: (path, inode, size, mtime_ns)."""
    return (path, inode, size, mtime_ns)


def enqueue(
    db: StateDB, run_id: str, *, key: str | None = None, rule: str | None = "r", files=(), **kw
) -> bool:
    """Enqueue a run with defaults for everything the test does not care about."""
    return db.enqueue(
        run_id=run_id,
        key=key or f"key-{run_id}",
        rule=rule,
        workflow=kw.pop("workflow", "wf"),
        params=kw.pop("params", {"x": 1}),
        trigger=kw.pop("trigger", [{"type": "test"}]),
        files=files,
        **kw,
    )


def row_counts(path: Path) -> tuple[int, int]:
    """(runs, ledger rows) as another connection sees them: only what was committed."""
    with sqlite3.connect(path) as conn:
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        ledger = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    conn.close()
    return runs, ledger


def test_enqueue_writes_run_and_ledger_rows_together(db):
    """A run request and the ledger rows of its files are committed by one enqueue."""
    files = [ident("/data/a.h5"), ident("/data/b.h5", inode=8)]
    assert enqueue(db, "run1", files=files, params={"dataset": "/data"}) is True
    assert row_counts(db.path) == (1, 2)
    row = db.run("run1")
    assert (row.rule, row.workflow, row.params, row.state, row.attempts) == (
        "r",
        "wf",
        {"dataset": "/data"},
        "queued",
        0,
    )
    assert db.dispatched("r", files[0]) and db.dispatched("r", files[1])
    assert not db.dispatched("other-rule", files[0])
    assert not db.dispatched("r", ident("/data/a.h5", size=101))


def test_duplicate_key_returns_false_and_writes_nothing(db):
    """A second enqueue with a known key is refused and leaves neither a run nor ledger rows."""
    assert enqueue(db, "run1", key="k", files=[ident("/data/a.h5")])
    assert enqueue(db, "run2", key="k", files=[ident("/data/b.h5"), ident("/data/c.h5")]) is False
    assert row_counts(db.path) == (1, 1)
    assert db.run("run2") is None
    assert not db.dispatched("r", ident("/data/b.h5"))
    assert db.ledger_for("/data/b.h5") == []


def test_enqueue_that_fails_half_way_leaves_no_run(db):
    """When writing the ledger rows fails after the run row, the run row is rolled back too."""
    with pytest.raises(ValueError):
        enqueue(db, "run1", files=[("/data/a.h5", 1)])  # a malformed identity
    assert row_counts(db.path) == (0, 0)
    assert enqueue(db, "run1", files=[ident("/data/a.h5")])  # the connection is usable again


def test_manual_run_writes_no_ledger_rows(db):
    """A run without a rule (manual) never marks files as dispatched."""
    assert enqueue(db, "m1", rule=None, files=[ident("/data/a.h5")])
    assert row_counts(db.path) == (1, 0)


def test_non_utf8_path_round_trips(db):
    """A file name that is not UTF-8 is stored as bytes and comes back as the same str."""
    identity = ident(CAFE)
    trigger = [{"type": "file", "path": CAFE}]
    assert enqueue(db, "run1", files=[identity], params={"file": CAFE}, trigger=trigger)
    assert db.dispatched("r", identity)
    (entry,) = db.ledger_for(CAFE)
    assert isinstance(entry, LedgerEntry)
    assert (entry.rule, entry.path, entry.inode, entry.size, entry.mtime_ns, entry.run_id) == (
        "r",
        CAFE,
        7,
        100,
        1_000,
        "run1",
    )
    assert os.fsencode(entry.path) == b"/data/mx1/caf\xe9.h5"
    row = db.run("run1")
    assert row.params == {"file": CAFE} and row.trigger == trigger
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("SELECT path FROM ledger").fetchone()[0] == b"/data/mx1/caf\xe9.h5"
    conn.close()


def test_ledger_for_lists_every_rule_and_version_of_a_path(db, clock):
    """ledger_for a path gives one entry per (rule, version), oldest first."""
    enqueue(db, "run1", rule="a", files=[ident("/data/x.h5", size=1)])
    clock.now += 1
    enqueue(db, "run2", rule="b", files=[ident("/data/x.h5", size=1)])
    clock.now += 1
    enqueue(db, "run3", rule="a", files=[ident("/data/x.h5", size=2)])
    entries = db.ledger_for("/data/x.h5")
    assert [(e.rule, e.size, e.run_id, e.at) for e in entries] == [
        ("a", 1, "run1", 1000.0),
        ("b", 1, "run2", 1001.0),
        ("a", 2, "run3", 1002.0),
    ]
    assert db.ledger_for("/data/other.h5") == []


def test_set_state_sets_started_and_ended_at(db, clock):
    """started_at is set by the first 'running', ended_at by a final state;
    attempts count submissions."""
    enqueue(db, "run1")
    assert db.run("run1").queued_at == 1000.0
    clock.now = 1001.0
    db.set_state("run1", "submitted", attempt=True)
    row = db.run("run1")
    assert (row.state, row.attempts, row.started_at, row.ended_at) == ("submitted", 1, None, None)
    clock.now = 1002.0
    db.set_state("run1", "running")
    clock.now = 1003.0
    db.set_state("run1", "running")  # a repeated report keeps the first start
    row = db.run("run1")
    assert (row.state, row.started_at, row.ended_at) == ("running", 1002.0, None)
    clock.now = 1010.0
    db.set_state("run1", "failed", error="boom")
    row = db.run("run1")
    assert (row.state, row.started_at, row.ended_at, row.error, row.attempts) == (
        "failed",
        1002.0,
        1010.0,
        "boom",
        1,
    )


@pytest.mark.parametrize("final", ["succeeded", "failed", "aborted", "stopped", "rejected"])
def test_every_final_state_sets_ended_at(db, clock, final):
    """Each final state stamps ended_at, even for a run that never started."""
    enqueue(db, "run1")
    clock.now = 1005.0
    db.set_state("run1", final)
    row = db.run("run1")
    assert (row.state, row.started_at, row.ended_at) == (final, None, 1005.0)


def test_set_state_keeps_an_earlier_error(db):
    """A state change without an error does not erase the one recorded before."""
    enqueue(db, "run1")
    db.set_state("run1", "rejected", error="no such workflow")
    db.set_state("run1", "rejected")
    assert db.run("run1").error == "no such workflow"


def test_requeue_unfinished_moves_submitted_and_running_back(db):
    """At start-up, submitted and running runs return to the queue; the count is returned."""
    for run_id, state in [
        ("q", "queued"),
        ("s", "submitted"),
        ("r", "running"),
        ("ok", "succeeded"),
        ("f", "failed"),
    ]:
        enqueue(db, run_id)
        if state != "queued":
            db.set_state(run_id, state)
    assert len(db.requeue_unfinished()) == 2
    assert {run_id: db.run(run_id).state for run_id in ["q", "s", "r", "ok", "f"]} == {
        "q": "queued",
        "s": "queued",
        "r": "queued",
        "ok": "succeeded",
        "f": "failed",
    }
    assert [row.run_id for row in db.queued()] == ["q", "s", "r"]  # enqueue order
    assert len(db.requeue_unfinished()) == 0


def test_queued_lists_only_queued_runs_in_enqueue_order(db):
    """queued() is the outbox: queued runs, oldest first."""
    for run_id in ["c", "a", "b", "d"]:
        enqueue(db, run_id)
    db.set_state("a", "submitted")
    assert [row.run_id for row in db.queued()] == ["c", "b", "d"]


def test_runs_filters_by_state_rule_since_and_limit(db, clock):
    """runs() filters by states, rule and queued_at, newest first, at most ``limit``."""
    for number in range(6):
        clock.now = 1000.0 + number
        enqueue(db, f"run{number}", rule="a" if number % 2 == 0 else "b")
    enqueue(db, "manual", rule=None)  # queued at 1005 too
    db.set_state("run0", "succeeded")
    db.set_state("run1", "failed")
    db.set_state("run2", "running")

    def ids(**kw) -> list[str]:
        return [row.run_id for row in db.runs(**kw)]

    assert ids() == ["manual", "run5", "run4", "run3", "run2", "run1", "run0"]
    assert ids(limit=2) == ["manual", "run5"]
    assert ids(states=["queued"]) == ["manual", "run5", "run4", "run3"]
    assert ids(states=("succeeded", "failed")) == ["run1", "run0"]
    assert ids(rule="a") == ["run4", "run2", "run0"]
    assert ids(rule="b", states=["queued"]) == ["run5", "run3"]
    assert ids(since=1004.0) == ["manual", "run5", "run4"]
    assert ids(since=1003.0, rule="a", limit=1) == ["run4"]
    assert ids(rule="nope") == []


def test_counts_and_rule_stats(db, clock):
    """counts() is runs per state; rule_stats() is runs and the last queue time per rule."""
    assert db.counts() == {} and db.rule_stats() == {}
    clock.now = 1000.0
    enqueue(db, "a1", rule="a")
    clock.now = 1001.0
    enqueue(db, "b1", rule="b")
    clock.now = 1002.0
    enqueue(db, "a2", rule="a")
    clock.now = 1003.0
    enqueue(db, "m1", rule=None)
    db.set_state("a1", "succeeded")
    db.set_state("b1", "running")
    assert db.counts() == {"queued": 2, "succeeded": 1, "running": 1}
    assert db.rule_stats() == {
        "a": {"fired": 2, "last_fired": 1002.0},
        "b": {"fired": 1, "last_fired": 1001.0},
    }


def test_watermark_is_set_once(db):
    """The first call stores ``now`` and says so; later calls return the stored time."""
    assert db.watermark("r", 100.0) == (100.0, True)
    assert db.watermark("r", 200.0) == (100.0, False)
    assert db.watermark("other", 300.0) == (300.0, True)


def test_state_survives_close_and_open(tmp_path):
    """Runs, the ledger and watermarks are still there after the file is closed and reopened."""
    path = tmp_path / "state.sqlite"
    first = StateDB(path).open()
    enqueue(first, "run1", files=[ident(CAFE)])
    enqueue(first, "run2")
    first.set_state("run2", "running")
    first.watermark("r", 100.0)
    first.close()

    second = StateDB(path).open()
    try:
        assert [row.run_id for row in second.queued()] == ["run1"]
        assert second.run("run2").state == "running"
        assert second.dispatched("r", ident(CAFE))
        assert second.watermark("r", 500.0) == (100.0, False)
        assert enqueue(second, "run3", key="key-run1") is False  # keys are remembered too
        assert len(second.requeue_unfinished()) == 1
        assert [row.run_id for row in second.queued()] == ["run1", "run2"]
    finally:
        second.close()


def test_closed_database_refuses_writes(tmp_path):
    """Writing to a state file that is not open raises instead of silently dropping the run."""
    db = StateDB(tmp_path / "state.sqlite")
    with pytest.raises(RuntimeError, match="not open"):
        enqueue(db, "run1")


def test_concurrent_enqueue_from_threads(db):
    """4 threads enqueueing 50 distinct keys each give 200 runs and 200 ledger rows, no errors."""
    errors: list[BaseException] = []
    results: list[bool] = []
    start = threading.Barrier(4)

    def work(thread: int) -> None:
        try:
            start.wait()
            for number in range(50):
                run_id = f"t{thread}-{number}"
                results.append(enqueue(db, run_id, files=[ident(f"/data/{run_id}.h5")]))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert results == [True] * 200
    assert row_counts(db.path) == (200, 200)
    assert len(db.queued()) == 200
    assert db.counts() == {"queued": 200}
