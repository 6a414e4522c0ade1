"""The example workflows of workflows/ produce what they say, on both executors.

Every test that runs a workflow runs twice: on the local executor and on a real Celery
worker through a real Redis (tests/redis_fixture.py). Same workflows, same assertions:
"works locally" means "works on the cluster".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from triggerd.flow import WorkflowArgumentError
from triggerd.flow.workflow import discover_workflows, load_workflow

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"

EXAMPLES = [
    "abort",
    "bash",
    "branching",
    "chunking_dag",
    "data_store",
    "decision",
    "multi_data",
    "parallel",
    "parameters",
    "queues",
    "sequence",
    "simple",
    "stop",
    "sub_dag",
    "timing",
]

MAIN = "main_dag:1"


def task_log(out, dag: str = MAIN) -> dict:
    """The meta log entries of the tasks of ``dag``."""
    return out.store["meta"]["log"][dag]["tasks"]


def events_of(out, kind: str) -> list:
    """The events of the run of ``out`` of one kind."""
    return [e for e in out.events if e.kind == kind]


@pytest.fixture(params=["local", "celery"])
def run_workflow(request, runner_for):
    """``run_workflow(name, args=None)`` on the local executor, then on Celery."""
    return runner_for(
        request.getfixturevalue("engine" if request.param == "local" else "celery_engine")
    )


@pytest.fixture
def run_ok(run_workflow):
    """``run_ok(name, args=None)``: run_workflow, checking that the run succeeded."""

    def run(name: str, args: dict | None = None):
        out = run_workflow(name, args)
        assert out.status == "succeeded", (out.status, out.result.error, out.result.failures)
        return out

    return run


def test_all_examples_load_and_have_a_summary():
    """discover_workflows loads each of the 15 examples without error, each with a docstring."""
    found = dict(discover_workflows([WORKFLOWS]))
    for name in EXAMPLES:
        workflow = found[name]
        assert not isinstance(workflow, Exception), f"{name}: {workflow}"
        assert workflow.docstring and workflow.summary, name
        assert workflow.dags, name


def test_sequence_counts_up_through_three_tasks(run_ok):
    """Each task of the chain sees the number of its predecessor plus one."""
    out = run_ok("sequence")
    assert out.states(MAIN) == dict.fromkeys(
        ["first_task", "second_task", "third_task"], "succeeded"
    )
    assert out.store["data"]["steps"] == [
        {"task": "first_task", "number": 1},
        {"task": "second_task", "number": 2},
        {"task": "third_task", "number": 3},
    ]


def test_parallel_lanes_overlap_and_join_gets_all_three(run_ok):
    """The three lanes run (two of them at once on two workers) and join sums their values."""
    out = run_ok("parallel")
    assert set(out.states(MAIN).values()) == {"succeeded"}
    assert out.store["data"]["inputs"] == {"lane_1": 11, "lane_2": 12, "lane_3": 13}
    assert out.store["data"]["total"] == 36
    lanes = out.store["data"]["lanes"]
    assert sorted(lane["task"] for lane in lanes) == ["lane_1", "lane_2", "lane_3"]
    overlaps = [
        (a["task"], b["task"])
        for i, a in enumerate(lanes)
        for b in lanes[i + 1 :]
        if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    assert overlaps, f"no two lanes ran at the same time: {lanes}"
    join_started = out.store["meta"]["log"][MAIN]["tasks"]["join"]["start_time"]
    assert join_started >= max(lane["end"] for lane in lanes)


def test_branching_runs_the_limited_lanes_and_skips_the_third(run_ok):
    """limit=[task object, task name] runs lanes 1 and 2; lane 3 is skipped; join still runs."""
    out = run_ok("branching")
    assert out.states(MAIN) == {
        "branch": "succeeded",
        "lane_1": "succeeded",
        "lane_2": "succeeded",
        "lane_3": "skipped",
        "join": "succeeded",
    }
    data = out.store["data"]
    assert sorted(data["ran"]) == ["branch", "join", "lane_1", "lane_2"]
    assert data["join_inputs"] == ["lane_1", "lane_2"]
    assert [e.task for e in events_of(out, "task.skipped")] == ["lane_3"]


@pytest.mark.parametrize(
    ("number", "runs", "skipped"),
    [
        ("3", "small_number", "large_number"),
        ("49", "small_number", "large_number"),
        ("50", "large_number", "small_number"),
        ("97", "large_number", "small_number"),
    ],
)
def test_decision_follows_the_given_number(run_workflow, number, runs, skipped):
    """A number below 50 runs small_number only, 50 and above large_number only."""
    out = run_workflow("decision", {"number": number})
    assert out.status == "succeeded"
    assert out.states(MAIN) == {"decide": "succeeded", runs: "succeeded", skipped: "skipped"}
    assert out.store["data"]["number"] == int(number)
    assert out.store["data"]["branch"] == runs


def test_decision_with_a_random_number_runs_exactly_the_matching_branch(run_ok):
    """Left at random, exactly one branch runs and it matches the drawn number."""
    out = run_ok("decision")
    states = out.states(MAIN)
    ran = [t for t in ("small_number", "large_number") if states[t] == "succeeded"]
    assert len(ran) == 1
    other = "large_number" if ran[0] == "small_number" else "small_number"
    assert states[other] == "skipped"
    number = out.store["data"]["number"]
    assert 0 <= number < 100
    assert ran[0] == ("small_number" if number < 50 else "large_number")
    assert out.store["data"]["branch"] == ran[0]


def test_sub_dag_runs_five_copies_with_their_numpy_data(run_ok):
    """start_copies starts sub_dag:1..5, each scales its own image, and join waits for all."""
    out = run_ok("sub_dag")
    copies = [f"sub_dag:{n}" for n in range(1, 6)]
    assert set(out.result.tasks) == {MAIN, *copies}
    for dag in copies:
        assert out.states(dag) == {"scale": "succeeded", "summarise": "succeeded"}
    data = out.store["data"]
    assert data["started"] == copies
    results = sorted(data["results"], key=lambda r: r["index"])
    assert results == [
        {"dag": f"sub_dag:{i + 1}", "index": i, "shape": [4, 4], "sum": 2 * i * 16}
        for i in range(5)
    ]
    assert data["joined"] == 5  # every copy had finished when join_dags returned
    signals = [e for e in out.events if e.kind.startswith("signal.")]
    assert [(e.kind, e.data.get("name")) for e in signals if e.kind == "signal.start_dag"] == [
        ("signal.start_dag", "sub_dag")
    ] * 5
    assert {e.task for e in signals} == {"start_copies"} and any(
        e.kind == "signal.join_dags" for e in signals
    )


def test_data_store_set_push_extend_and_get(run_ok):
    """Ints, dotted keys, numpy arrays, pushes, nested lists, extend and get defaults round-trip."""
    out = run_ok("data_store")
    assert set(out.states(MAIN).values()) == {"succeeded"}
    data = out.store["data"]
    assert data["number"] == 50
    assert data["buffer"] == {"observable": 20}
    assert data["observable"] == 20
    assert data["sample"] == {"spectra": [7]}
    assert isinstance(data["image"], np.ndarray)
    assert data["image"].shape == (100, 100)
    assert (data["image_shape"], data["image_sum"]) == ([100, 100], 10000.0)
    assert data["missing"] == "fallback"
    assert "missing_none" in data and data["missing_none"] is None
    names = data["filenames"]
    assert names[0] == "file_a.spec"
    # third_a and third_b run in parallel: their pushes may interleave, b's own order holds
    assert sorted(names[1:], key=repr) == sorted(
        ["file_b.spec", ["nested_a", "nested_b"], "file_c.spec", "file_d.spec"], key=repr
    )
    b_part = [n for n in names if n != "file_b.spec"][1:]
    assert b_part == [["nested_a", "nested_b"], "file_c.spec", "file_d.spec"]


def test_multi_data_reads_inputs_by_index_alias_and_slot(run_ok):
    """multiply gets 5 and 25 (125); subtract gets first=5, second=125 by slot (-120)."""
    out = run_ok("multi_data")
    assert set(out.states(MAIN).values()) == {"succeeded"}
    data = out.store["data"]
    assert data["values"] == {
        "put": 5,
        "square": 25,
        "multiply": 125,
        "subtract": -120,
        "show_1": 5,
        "show_2": 25,
        "show_3": 125,
        "show_4": -120,
    }
    assert data["multiply_inputs"] == 2
    assert data["subtract_operands"] == [5, 125]
    assert data["by_name"] == [5, 125]


def test_parameters_are_converted_and_defaulted(run_ok):
    """String arguments become int and bool, defaults fill in, tasks read them typed."""
    out = run_ok("parameters", {"filepath": "/data/x.h5", "iterations": "3", "recursive": "yes"})
    data = out.store["data"]
    assert (data["filepath"], data["iterations"], data["recursive"], data["threshold"]) == (
        "/data/x.h5",
        3,
        True,
        0.4,
    )
    assert data["report"] == {
        "filepath": "str",
        "iterations": "int",
        "recursive": "bool",
        "threshold": "float",
    }
    assert data["passes"] == [0, 1, 2]


def test_parameters_missing_required_option_is_refused(run_workflow):
    """A missing required option raises WorkflowArgumentError naming the option and its type."""
    with pytest.raises(WorkflowArgumentError) as err:
        run_workflow("parameters", {"filepath": "/data/x.h5"})
    message = str(err.value)
    assert "iterations" in message and "int" in message
    assert "filepath" not in message


def test_parameters_unconvertible_value_is_refused(run_workflow):
    """'abc' for an int option raises WorkflowArgumentError naming the option and int."""
    with pytest.raises(WorkflowArgumentError) as err:
        run_workflow("parameters", {"filepath": "/x", "iterations": "abc"})
    message = str(err.value)
    assert "iterations" in message and "int" in message and "abc" in message


# Local only: on Celery heavy_task needs a worker consuming 'high_memory'; that case is
# tests/engine/test_celery.py::test_a_task_waits_for_a_worker_on_its_queue.
@pytest.mark.parametrize("run_workflow", ["local"], indirect=True)
def test_queues_are_recorded_per_task(run_ok):
    """heavy_task runs with queue 'high_memory', the others with 'task'; the DAG's is 'graph'."""
    out = run_ok("queues")
    assert set(out.states(MAIN).values()) == {"succeeded"}
    log = task_log(out)
    assert log["heavy_task"]["queue"] == "high_memory"
    assert log["light_task"]["queue"] == "task"
    assert log["report"]["queue"] == "task"
    assert out.store["data"]["queues"] == {
        "light_task": "task",
        "heavy_task": "high_memory",
        "report": "task",
    }
    assert load_workflow("queues", [WORKFLOWS]).dags["main_dag"].queue == "graph"


def test_stop_task_skips_or_keeps_successors(run_ok):
    """StopTask from a stdout callback kills the command and skips show_1; skip_successors=False
    lets show_2 run; a plain StopTask skips show_3. The run itself succeeds."""
    out = run_ok("stop")
    assert out.states(MAIN) == {
        "start": "succeeded",
        "bash_task": "stopped",
        "stop_noskip": "stopped",
        "stop_skip": "stopped",
        "show_1": "skipped",
        "show_2": "succeeded",
        "show_3": "skipped",
    }
    assert out.store["data"]["lines"] == [1, 2, 3, 4]
    assert out.store["data"]["shown"] == ["show_2"]
    # the command would run 3 s; it was terminated right after line 5
    assert task_log(out)["bash_task"]["duration"] < 2.5
    messages = {e.task: e.message for e in events_of(out, "task.stopped")}
    assert "Reached line number 5" in messages["bash_task"]
    assert "but not its successors" in messages["stop_noskip"]
    assert set(messages) == {"bash_task", "stop_noskip", "stop_skip"}


def test_abort_ends_the_run_aborted_with_its_message(run_workflow):
    """AbortWorkflow in check ends the run 'aborted' with its message; process never runs."""
    out = run_workflow("abort")
    assert out.status == "aborted"
    assert out.states(MAIN) == {"collect": "succeeded", "check": "aborted", "process": "cancelled"}
    assert "At least 5 images are required" in out.result.error
    assert out.result.failures == []
    assert out.store["data"]["checked"] == 3
    assert "processed" not in out.store["data"]
    (aborted,) = events_of(out, "task.aborted")
    assert aborted.task == "check" and "At least 5 images are required" in aborted.message
    assert "At least 5 images are required" in events_of(out, "run.aborted")[0].message


def test_abort_is_conditional_on_enough_images(run_ok):
    """With 6 images the check passes and the run succeeds."""
    out = run_ok("abort", {"images": "6"})
    assert out.states(MAIN) == dict.fromkeys(["collect", "check", "process"], "succeeded")
    assert out.store["data"]["processed"] == 6


def test_chunking_dag_starts_one_sub_dag_per_scan(run_ok):
    """Twelve files of three scans plus one stray name give three chunk_dag copies of 4 files."""
    out = run_ok("chunking_dag")
    copies = ["chunk_dag:1", "chunk_dag:2", "chunk_dag:3"]
    assert set(out.result.tasks) == {MAIN, *copies}
    for dag in copies:
        assert out.states(dag) == {"store_chunk": "succeeded"}
    chunks = sorted(out.store["data"]["chunks"], key=lambda c: c["key"])
    assert [c["key"] for c in chunks] == ["scan_001", "scan_002", "scan_003"]
    for number, chunk in enumerate(chunks, 1):
        assert chunk["files"] == [f"scan_{number:03d}_{frame:04d}.h5" for frame in range(1, 5)]
        assert chunk["dag"] == f"chunk_dag:{number}"  # started in chunk order
    data = out.store["data"]
    assert (data["unmatched"], data["chunk_dags"], data["held_back"]) == (1, copies, [])


def test_chunking_dag_without_flush_holds_back_the_last_scan(run_ok):
    """flush=no dispatches scans 1 and 2 only and reports scan 3's files as held back."""
    out = run_ok("chunking_dag", {"flush": "no"})
    assert set(out.result.tasks) == {MAIN, "chunk_dag:1", "chunk_dag:2"}
    assert sorted(c["key"] for c in out.store["data"]["chunks"]) == ["scan_001", "scan_002"]
    assert out.store["data"]["held_back"] == [f"scan_003_{frame:04d}.h5" for frame in range(1, 5)]


def test_bash_counts_lines_captures_stdout_and_passes_env(run_ok):
    """Names with spaces and ';' reach printf intact as argv; lines are counted and captured."""
    out = run_ok("bash")
    assert set(out.states(MAIN).values()) == {"succeeded"}
    data = out.store["data"]
    assert data["stdout_lines"] == 3
    assert data["captured"] == ["scan 1.h5", "scan_2.h5", "odd;name.h5"]
    assert data["returncode"] == 0
    assert data["env_echo"] == "counted 3 lines"


def test_timing_stores_each_earlier_task_duration(run_ok):
    """report stores a positive duration for each sleep task, at least its
    sleep, and not its own."""
    out = run_ok("timing")
    durations = out.store["data"]["durations"]
    assert set(durations) == {"sleep_1", "sleep_2", "sleep_3"}
    for task, expected in {"sleep_1": 0.1, "sleep_2": 0.2, "sleep_3": 0.3}.items():
        assert durations[task] > 0
        assert durations[task] >= expected * 0.95
        assert durations[task] == pytest.approx(task_log(out)[task]["duration"])
