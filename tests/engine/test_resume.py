"""A run rebuilt from its journal: the journal file round-trips every entry, and
``replay`` (pure: records in, a plan out) finds what was running, what ended and what
must be done again, without processes or Redis."""

from __future__ import annotations

import sqlite3

from test_runner import shape

from triggerd.engine import runner as r
from triggerd.engine.journal import Begun, Ended, Journal, Record, Sent
from triggerd.engine.resume import replay


def records(*entries, attempt=1, bodies=None):
    return [Record(e, attempt, (bodies or {}).get(i, {})) for i, e in enumerate(entries)]


def chain():
    return {"main": shape("main", [("a", "b"), ("b", "c")])}


def test_the_journal_keeps_every_kind_of_entry_in_order_and_forgets_a_run(tmp_path):
    """Entries come back as written (data blobs included), per run, in order; forget
    removes one run's entries; the executor's identity survives reopening the file."""
    journal = Journal(tmp_path / "journal.sqlite").open()
    ident = journal.identity()
    entries = [
        Begun("wf", "hash1"),
        Sent("main:1", "a", "delivery-1", 1),
        r.TaskFinished("main:1", "a", "succeeded", ("b",), b"\x00signed", "done"),
        r.TaskFailed("main:1", "b", "boom", "Traceback"),
        r.SignalReceived("req-1", "main:1", "start_dag", {"name": "other", "data": b"blob"}),
        r.SignalReceived("req-2", "main:1", "join_dags", {"names": ["other:1"]}),
        r.StopRequested("operator"),
        Ended("failed", "task 'b' failed: boom"),
    ]
    for entry in entries:
        assert journal.append(
            "run-1", 1, entry, {"event": {"id": "x"}} if isinstance(entry, r.TaskFinished) else None
        )
    journal.append("run-2", 3, Begun("wf", "h"))
    read = journal.records("run-1")
    assert [rec.entry for rec in read] == entries
    assert read[2].body["event"] == {"id": "x"}
    assert sorted(journal.runs()) == ["run-1", "run-2"]
    journal.forget("run-1")
    assert journal.records("run-1") == [] and journal.runs() == ["run-2"]
    journal.close()
    again = Journal(tmp_path / "journal.sqlite").open()
    assert again.identity() == ident
    assert again.records("run-2")[0].attempt == 3


def test_a_write_that_fails_is_reported_not_raised(tmp_path):
    """A journal that cannot be written (here: read-only) says so and the run goes on."""
    path = tmp_path / "journal.sqlite"
    Journal(path).open().close()
    journal = Journal(path).open()
    journal._conn.close()
    journal._conn = sqlite3.connect(
        f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )
    assert journal.append("run-1", 1, Begun("wf", "h")) is False
    assert (
        journal.health.ok is False
        and journal.failures == 1
        and "readonly" in journal.health.reading.error
    )


def test_replay_keeps_finished_tasks_and_finds_the_running_one_with_its_input():
    """a finished, b was sent: b is outstanding with a's output as input and its Sent
    record; a is not started again; the event of a's end is there to record again."""
    run = r.Run(chain())
    plan = replay(
        run,
        records(
            Begun("wf", "h"),
            Sent("main:1", "a", "d-a", 1),
            r.TaskFinished("main:1", "a", data="out-a"),
            Sent("main:1", "b", "d-b", 1),
            bodies={2: {"event": {"id": "evt-a"}}},
        ),
    )
    ((command, sent),) = plan.outstanding
    assert (command.dag, command.task) == ("main:1", "b") and [i.data for i in command.inputs] == [
        "out-a"
    ]
    assert sent == Sent("main:1", "b", "d-b", 1)
    assert plan.finished_tasks == 1 and plan.events == [{"id": "evt-a"}]
    assert run.dags["main:1"] == {
        "a": r.TaskState.SUCCEEDED,
        "b": r.TaskState.RUNNING,
        "c": r.TaskState.PENDING,
    }
    assert not plan.commands  # nothing to redo: no signal answers, no stop flags, no end


def test_replay_of_a_run_that_had_ended_ends_it_with_its_journaled_event():
    """Every task ended and the end was journaled: nothing is outstanding, the plan
    carries the run's end and the event that reported it."""
    run = r.Run(chain())
    plan = replay(
        run,
        records(
            Begun("wf", "h"),
            r.TaskFinished("main:1", "a"),
            r.TaskFinished("main:1", "b"),
            r.TaskFinished("main:1", "c"),
            Ended("succeeded"),
            bodies={4: {"event": {"id": "end"}}},
        ),
    )
    assert plan.outstanding == [] and plan.commands == [r.RunFinished("succeeded", None)]
    assert plan.end_event == {"id": "end"}


def test_replay_redoes_stop_flags_and_keeps_a_pending_join():
    """A stopped DAG's flags are set again (the new attempt's keys); a join_dags request
    still unanswered stays pending, with what the executor stored to answer it."""
    shapes = {
        "main": shape("main", [], tasks=["waiter"]),
        "other": shape("other", [], tasks=["work"], autostart=False),
    }
    run = r.Run(shapes)
    plan = replay(
        run,
        records(
            Begun("wf", "h"),
            r.SignalReceived("s1", "main:1", "start_dag", {"name": "other"}),
            r.SignalReceived("j1", "main:1", "join_dags", {"names": ["other:1"]}),
            r.SignalReceived("s2", "main:1", "stop_dag", {"name": "other:1"}),
            bodies={2: {"reply_to": "triggerd:reply:j1"}},
        ),
    )
    assert r.StopTasks(("other:1",)) in plan.commands
    assert {c.request_id for c in plan.commands if isinstance(c, r.Reply)} == {"s1", "s2"}
    assert plan.signals["j1"]["reply_to"] == "triggerd:reply:j1"
    assert run.joining()
    assert sorted((c.dag, c.task) for c, _ in plan.outstanding) == [
        ("main:1", "waiter"),
        ("other:1", "work"),
    ]
