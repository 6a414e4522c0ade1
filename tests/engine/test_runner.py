"""The runner as a pure state machine: hand-made events in, commands out.

No processes, no pipes, no Redis: each test feeds completions and signals and asserts on
exactly which tasks start, skip, cancel and how the run ends.
"""

from __future__ import annotations

import pytest

from triggerd.engine.runner import (
    CancelTask,
    DagFinished,
    DagStarted,
    Ignored,
    Reply,
    Run,
    RunFinished,
    SignalReceived,
    SkipTask,
    StartTask,
    StopRequested,
    StopTasks,
    TaskFailed,
    TaskFinished,
    TaskState,
)
from triggerd.errors import InternalError
from triggerd.flow.dag import DagShape, TaskShape


def shape(name, edges, *, tasks=(), autostart=True, **props):
    """A DagShape from ``edges`` [(parent, child[, slot])]; ``props`` per task name."""
    names = list(dict.fromkeys([*tasks, *(n for e in edges for n in e[:2])]))
    shapes = {n: TaskShape(n, **props.get(n, {})) for n in names}
    full = tuple((e[0], e[1], e[2] if len(e) > 2 else None) for e in edges)
    return DagShape(name, shapes, full, autostart)


def started(commands):
    return [(c.dag, c.task) for c in commands if isinstance(c, StartTask)]


def of(commands, kind):
    return [c for c in commands if isinstance(c, kind)]


def finish(run, dag, task, **kw):
    return run.handle(TaskFinished(dag, task, data=kw.pop("data", f"out-{task}"), **kw))


def test_linear_chain_runs_in_order_and_passes_data():
    """A chain starts one task at a time, each fed the output of its predecessor."""
    run = Run({"main": shape("main", [("a", "b"), ("b", "c")])})
    cmds = run.start()
    assert of(cmds, DagStarted) == [DagStarted("main:1", "main", "dag")]
    assert started(cmds) == [("main:1", "a")]
    assert of(cmds, StartTask)[0].inputs is None
    cmds = finish(run, "main:1", "a")
    (start_b,) = of(cmds, StartTask)
    assert start_b.task == "b" and [i.data for i in start_b.inputs] == ["out-a"]
    assert started(finish(run, "main:1", "b")) == [("main:1", "c")]
    cmds = finish(run, "main:1", "c")
    assert of(cmds, DagFinished) == [DagFinished("main:1", "succeeded")]
    assert of(cmds, RunFinished) == [RunFinished("succeeded", None)]
    assert run.finished and run.status == "succeeded"


def test_diamond_waits_for_both_branches_and_keeps_predecessor_order_and_slots():
    """The join task starts once, after both branches, with one input per branch
    and slot aliases."""
    run = Run(
        {
            "d": shape(
                "d",
                [
                    ("top", "left", "first"),
                    ("top", "right"),
                    ("left", "join"),
                    ("right", "join", "r"),
                ],
            )
        }
    )
    run.start()
    assert sorted(started(finish(run, "d:1", "top"))) == [("d:1", "left"), ("d:1", "right")]
    assert started(finish(run, "d:1", "right")) == []
    (join,) = of(finish(run, "d:1", "left"), StartTask)
    assert [(i.name, i.aliases) for i in join.inputs] == [("left", ()), ("right", ("r",))]


def test_fan_out_starts_all_lanes_at_once():
    """A 1 -> 50 -> 1 graph starts all fifty lanes on the first completion."""
    edges = [("src", f"l{i}") for i in range(50)] + [(f"l{i}", "sink") for i in range(50)]
    run = Run({"f": shape("f", edges)})
    run.start()
    assert len(started(finish(run, "f:1", "src"))) == 50
    for i in range(49):
        assert started(finish(run, "f:1", f"l{i}")) == []
    assert started(finish(run, "f:1", "l49")) == [("f:1", "sink")]


def test_limit_skips_other_successors_and_propagates_skip():
    """Action(limit=[b]) runs b, skips c and c's successor d, and the join still runs."""
    run = Run({"m": shape("m", [("a", "b"), ("a", "c"), ("c", "d"), ("b", "j"), ("d", "j")])})
    run.start()
    cmds = finish(run, "m:1", "a", limit=("b",))
    assert started(cmds) == [("m:1", "b")]
    assert [(c.task) for c in of(cmds, SkipTask)] == ["c", "d"]
    (join,) = of(finish(run, "m:1", "b"), StartTask)
    assert [i.name for i in join.inputs] == ["b"]  # no dataset from the skipped branch


def test_empty_limit_skips_everything_downstream_and_run_succeeds():
    """limit=[] (StopTask's default) skips all successors; the run still succeeds."""
    run = Run({"m": shape("m", [("a", "b"), ("b", "c")])})
    run.start()
    cmds = finish(run, "m:1", "a", outcome="stopped", limit=())
    assert [c.task for c in of(cmds, SkipTask)] == ["b", "c"]
    assert of(cmds, RunFinished) == [RunFinished("succeeded", None)]
    assert run.dags["m:1"] == {
        "a": TaskState.STOPPED,
        "b": TaskState.SKIPPED,
        "c": TaskState.SKIPPED,
    }


def test_propagate_skip_false_lets_successor_run_with_no_input():
    """A skipped task with propagate_skip=False does not skip its successor,
    which gets no datasets."""
    run = Run({"m": shape("m", [("a", "b"), ("b", "c")], b={"propagate_skip": False})})
    run.start()
    cmds = finish(run, "m:1", "a", limit=())
    assert [c.task for c in of(cmds, SkipTask)] == ["b"]
    (start_c,) = of(cmds, StartTask)
    assert start_c.task == "c" and start_c.inputs == ()


def test_force_run_runs_despite_limit():
    """force_run=True runs a task the limit would have skipped."""
    run = Run({"m": shape("m", [("a", "b"), ("a", "c")], c={"force_run": True})})
    run.start()
    assert sorted(started(finish(run, "m:1", "a", limit=("b",)))) == [("m:1", "b"), ("m:1", "c")]


def test_failure_fails_the_run_cancels_downstream_and_lets_running_tasks_finish():
    """A failing task stops the run: successors are cancelled, a parallel task may
    finish, the run ends failed."""
    run = Run({"m": shape("m", [("a", "b"), ("a", "c"), ("b", "d")])})
    run.start()
    finish(run, "m:1", "a")
    cmds = run.handle(TaskFailed("m:1", "b", "ValueError: boom", "Traceback..."))
    assert of(cmds, StopTasks) == [StopTasks(("m:1",))]
    assert not of(cmds, RunFinished)  # c still runs
    cmds = finish(run, "m:1", "c")
    assert [c.task for c in of(cmds, CancelTask)] == ["d"]
    (end,) = of(cmds, RunFinished)
    assert end.status == "failed" and "ValueError: boom" in end.error
    assert run.dags["m:1"]["d"] is TaskState.CANCELLED


def test_abort_ends_run_aborted_and_never_starts_successors():
    """AbortWorkflow from a task ends the run aborted; its successors never start."""
    run = Run({"m": shape("m", [("a", "b")])})
    run.start()
    cmds = finish(run, "m:1", "a", outcome="aborted", message="need 5 images")
    assert started(cmds) == []
    assert of(cmds, RunFinished) == [RunFinished("aborted", "need 5 images")]


def test_external_stop_cancels_waiting_tasks_after_running_ones_end():
    """StopRequested flags running DAGs; nothing new starts; the run ends stopped."""
    run = Run({"m": shape("m", [("a", "b")])})
    run.start()
    cmds = run.handle(StopRequested())
    assert of(cmds, StopTasks) == [StopTasks(("m:1",))]
    assert run.is_stopped("m:1")
    cmds = finish(run, "m:1", "a")
    assert started(cmds) == [] and [c.task for c in of(cmds, CancelTask)] == ["b"]
    assert of(cmds, RunFinished) == [RunFinished("stopped", "stop requested")]


def test_late_and_duplicate_completions_are_ignored():
    """A second completion of the same task, or one for an unknown task, changes nothing."""
    run = Run({"m": shape("m", [("a", "b")])})
    run.start()
    finish(run, "m:1", "a")
    assert [type(c) for c in finish(run, "m:1", "a")] == [Ignored]
    assert [type(c) for c in finish(run, "nope:1", "a")] == [Ignored]
    assert [type(c) for c in run.handle(TaskFailed("m:1", "a", "late"))] == [Ignored]
    finish(run, "m:1", "b")
    assert [type(c) for c in finish(run, "m:1", "b")] == [Ignored]


def test_invalid_transition_is_an_internal_error():
    """Moving a task along a transition the table lacks is reported as our own bug."""
    run = Run({"m": shape("m", [], tasks=["a"])})
    run.start()
    dag = run._dags["m:1"]
    with pytest.raises(InternalError, match="invalid transition"):
        dag.move("a", "skip")


def test_start_dag_signal_names_copies_and_passes_data_to_start_tasks():
    """start_dag replies with 'sub:1', 'sub:2'; the copies' start tasks get the given data."""
    run = Run(
        {
            "main": shape("main", [], tasks=["spawn"]),
            "sub": shape("sub", [("x", "y")], autostart=False),
        }
    )
    cmds = run.start()
    assert started(cmds) == [("main:1", "spawn")]
    cmds = run.handle(SignalReceived("r1", "main:1", "start_dag", {"name": "sub", "data": "D1"}))
    assert cmds[0] == Reply("r1", {"dag_name": "sub:1"})
    (start_x,) = of(cmds, StartTask)
    assert (start_x.dag, start_x.task, start_x.inputs, start_x.dag_data) == (
        "sub:1",
        "x",
        None,
        "D1",
    )
    cmds = run.handle(SignalReceived("r2", "main:1", "start_dag", {"name": "sub", "data": None}))
    assert cmds[0] == Reply("r2", {"dag_name": "sub:2"})


def test_start_dag_unknown_name_is_refused_with_dag_name_unknown():
    """start_dag of a name the workflow lacks gets an error reply naming the known DAGs."""
    run = Run({"main": shape("main", [], tasks=["a"])})
    run.start()
    (reply,) = run.handle(SignalReceived("r", "main:1", "start_dag", {"name": "ghost"}))
    assert reply.payload["error_type"] == "DagNameUnknown" and "main" in reply.payload["error"]


def test_join_dags_replies_only_when_named_dags_end():
    """join_dags blocks (no reply) until every named DAG has finished."""
    run = Run(
        {
            "main": shape("main", [], tasks=["spawn"]),
            "sub": shape("sub", [], tasks=["w"], autostart=False),
        }
    )
    run.start()
    run.handle(SignalReceived("s1", "main:1", "start_dag", {"name": "sub"}))
    run.handle(SignalReceived("s2", "main:1", "start_dag", {"name": "sub"}))
    assert (
        run.handle(SignalReceived("j", "main:1", "join_dags", {"names": ["sub:1", "sub:2"]})) == []
    )
    assert of(finish(run, "sub:1", "w"), Reply) == []
    cmds = finish(run, "sub:2", "w")
    assert of(cmds, Reply) == [Reply("j", {"ok": True})]
    assert not run.finished  # main:1's spawn task still runs
    assert of(finish(run, "main:1", "spawn"), RunFinished) == [RunFinished("succeeded", None)]


def test_join_dags_without_names_waits_for_every_other_dag():
    """join_dags(None) waits for all DAGs but the caller's own (a Lightflow quirk fixed)."""
    run = Run({"main": shape("main", [], tasks=["t"]), "side": shape("side", [], tasks=["s"])})
    run.start()
    assert run.handle(SignalReceived("j", "main:1", "join_dags", {"names": None})) == []
    assert of(finish(run, "side:1", "s"), Reply) == [Reply("j", {"ok": True})]


def test_join_own_dag_is_refused_instead_of_hanging():
    """A DAG joining itself gets an error reply rather than waiting forever."""
    run = Run({"main": shape("main", [], tasks=["t"])})
    run.start()
    (reply,) = run.handle(SignalReceived("j", "main:1", "join_dags", {"names": ["main:1"]}))
    assert "cannot join itself" in reply.payload["error"]


def test_stop_workflow_signal_and_start_dag_after_stop_returns_none():
    """After stop_workflow, is_stopped is true and start_dag returns None as in Lightflow."""
    run = Run(
        {
            "main": shape("main", [], tasks=["t"]),
            "sub": shape("sub", [], tasks=["x"], autostart=False),
        }
    )
    run.start()
    cmds = run.handle(SignalReceived("s", "main:1", "stop_workflow", {}))
    # the stop reaches running tasks before the caller's reply, so is_stopped is true at once
    assert cmds == [StopTasks(("main:1",)), Reply("s", {"ok": True})]
    assert run.handle(SignalReceived("q", "main:1", "is_stopped", {})) == [
        Reply("q", {"stopped": True})
    ]
    assert run.handle(SignalReceived("d", "main:1", "start_dag", {"name": "sub"})) == [
        Reply("d", {"dag_name": None})
    ]


def test_stop_dag_stops_only_that_dag():
    """stop_dag flags one DAG: it ends stopped while the others carry on and the
    run still succeeds."""
    run = Run({"a": shape("a", [("a1", "a2")]), "b": shape("b", [("b1", "b2")])})
    run.start()
    cmds = run.handle(SignalReceived("s", "a:1", "stop_dag", {"name": "a:1"}))
    assert of(cmds, StopTasks) == [StopTasks(("a:1",))]
    assert not run.is_stopped("b:1")
    cmds = finish(run, "a:1", "a1")
    assert of(cmds, DagFinished) == [DagFinished("a:1", "stopped")]
    finish(run, "b:1", "b1")
    cmds = finish(run, "b:1", "b2")
    assert of(cmds, RunFinished) == [RunFinished("succeeded", None)]


def test_workflow_without_autostart_dag_finishes_at_once():
    """A workflow whose DAGs all wait for start_dag ends immediately, succeeded."""
    run = Run({"sub": shape("sub", [], tasks=["x"], autostart=False)})
    assert of(run.start(), RunFinished) == [RunFinished("succeeded", None)]


def test_events_after_the_end_are_ignored():
    """Once finished, any event is ignored rather than reopening the run."""
    run = Run({"m": shape("m", [], tasks=["a"])})
    run.start()
    finish(run, "m:1", "a")
    assert [type(c) for c in run.handle(StopRequested())] == [Ignored]
