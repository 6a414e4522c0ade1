"""The local executor with real worker processes: failures, crashes, stops and bad input.

Each test writes small workflow files into a temporary directory and runs them on an
executor of its own, so a crash or a hang in one cannot spill into another.
"""

from __future__ import annotations

import textwrap
import time

import pytest
from support import EventCollector, make_executor, wait_for

from triggerd.flow.exceptions import (
    DirectedAcyclicGraphInvalid,
    WorkflowArgumentError,
    WorkflowImportError,
)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "wf").mkdir()
    return tmp_path


@pytest.fixture
def executor(workdir):
    collector = EventCollector()
    ex, store = make_executor(workdir, [workdir / "wf"], collector, workers=1)
    ex.start()
    ex.collector, ex.store = collector, store
    yield ex
    ex.close()
    store.close()


def write(workdir, name, body):
    path = workdir / "wf" / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


HEADER = "from triggerd.flow import *\nimport os, time, threading\n"


def test_task_that_raises_fails_run_with_traceback_and_cancels_downstream(workdir, executor):
    """A raising task ends the run failed, records its traceback, and its successor never runs."""
    write(
        workdir,
        "boom",
        HEADER
        + """
def explode(data, store, signal, context):
    raise ValueError("bad pixel map")
def after(data, store, signal, context):
    store.set("after_ran", True)
a = PythonTask("explode", explode)
b = PythonTask("after", after)
d = Dag("d")
d.define({a: b})
""",
    )
    result = executor.submit("boom").wait(30)
    assert result.status == "failed"
    assert result.tasks["d:1"] == {"explode": "failed", "after": "cancelled"}
    (failure,) = result.failures
    assert "ValueError: bad pixel map" in failure["error"]
    assert 'boom.py", line 5, in explode' in failure["traceback"]
    assert "triggerd/engine" not in failure["traceback"]
    assert executor.store.snapshot(result.run_id)["data"].get("after_ran") is None
    # the runner survived: the next run works
    write(workdir, "fine", HEADER + "d = Dag('d')\nd.define({PythonTask('t'): None})\n")
    assert executor.submit("fine").wait(30).status == "succeeded"


def test_worker_process_killed_mid_task_fails_only_that_run(workdir, executor):
    """A task whose process dies (os._exit) fails its run; a fresh worker serves the next run."""
    write(
        workdir,
        "crash",
        HEADER
        + """
d = Dag("d")
d.define({PythonTask("die", lambda *a: os._exit(3)): None})
""",
    )
    write(workdir, "fine", HEADER + "d = Dag('d')\nd.define({PythonTask('t'): None})\n")
    result = executor.submit("crash").wait(30)
    assert result.status == "failed"
    assert "worker process running the task died (exit code 3)" in result.error
    assert executor.submit("fine").wait(30).status == "succeeded"


def test_unpicklable_task_data_names_task_key_and_type(workdir, executor):
    """Returning a lock in task data fails the task with the task name, the key and the type."""
    write(
        workdir,
        "lock",
        HEADER
        + """
def keep_lock(data, store, signal, context):
    data["guard"] = threading.Lock()
d = Dag("d")
d.define({PythonTask("keep_lock", keep_lock): None})
""",
    )
    result = executor.submit("lock").wait(30)
    assert result.status == "failed"
    assert "task 'keep_lock'" in result.error
    assert "data['guard']" in result.error and "lock" in result.error


def test_sub_dags_joined_from_a_task_do_not_deadlock_a_one_worker_pool(workdir, executor):
    """With one worker, a task blocked in join_dags frees its slot so the sub-DAGs still run."""
    write(
        workdir,
        "subs",
        HEADER
        + """
def spawn(data, store, signal, context):
    names = [
        signal.start_dag("sub", data=MultiTaskData(dataset=TaskData({"i": i}))) for i in range(3)
    ]
    assert signal.join_dags(names)
    store.set("names", names)
def work(data, store, signal, context):
    store.push("seen", data["i"])
main = Dag("main")
main.define({PythonTask("spawn", spawn): None})
sub = Dag("sub", autostart=False)
sub.define({PythonTask("work", work): None})
""",
    )
    result = executor.submit("subs").wait(30)
    assert result.status == "succeeded", result.error
    doc = executor.store.snapshot(result.run_id)["data"]
    assert doc["names"] == ["sub:1", "sub:2", "sub:3"]
    assert sorted(doc["seen"]) == [0, 1, 2]


def test_stop_run_terminates_a_running_bash_task(workdir, executor):
    """stop_run ends a run whose BashTask sleeps: the process is terminated and the run ends
    stopped."""
    write(
        workdir,
        "sleepy",
        HEADER
        + """
d = Dag("d")
d.define({BashTask("nap", ["sleep", "60"]): PythonTask("after")})
""",
    )
    handle = executor.submit("sleepy")
    wait_for(
        lambda: any(e.kind == "task.started" for e in executor.collector.of(handle.run_id)),
        10,
        "the task to start",
    )
    t0 = time.monotonic()
    executor.stop_run(handle.run_id)
    result = handle.wait(15)
    assert time.monotonic() - t0 < 5
    assert result.status == "stopped"
    assert result.tasks["d:1"]["after"] == "cancelled"


def test_workflow_with_syntax_error_names_file_and_line_and_others_still_load(workdir, executor):
    """A syntax error is reported with the file and line; a good workflow beside it still runs."""
    write(workdir, "broken", "from triggerd.flow import Dag\n\ndef oops(:\n    pass\n")
    write(workdir, "fine", HEADER + "d = Dag('d')\nd.define({PythonTask('t'): None})\n")
    with pytest.raises(WorkflowImportError) as err:
        executor.submit("broken")
    assert "broken.py, line 3" in str(err.value)
    assert executor.submit("fine").wait(30).status == "succeeded"


def test_failing_import_in_workflow_names_the_line(workdir, executor):
    """A workflow importing a missing module says which module and on which line."""
    write(workdir, "noimp", "x = 1\nimport no_such_module_here\n")
    with pytest.raises(WorkflowImportError, match=r"noimp.py, line 2.*no_such_module_here"):
        executor.submit("noimp")


def test_cyclic_dag_error_names_the_cycle(workdir, executor):
    """A DAG with a cycle is refused at load, and the message lists the tasks of the cycle."""
    write(
        workdir,
        "cyclic",
        HEADER
        + """
a, b, c = PythonTask("a"), PythonTask("b"), PythonTask("c")
d = Dag("loop")
d.define({a: b, b: c, c: a})
""",
    )
    with pytest.raises(DirectedAcyclicGraphInvalid.__mro__[1]) as err:
        executor.submit("cyclic")
    message = str(err.value)
    assert "loop" in message and "cyclic.py" in message
    assert all(name in message for name in ("a -> b", "b -> c", "c -> a")) or "cycle" in message


def test_unknown_workflow_and_bad_arguments_are_refused_before_running(workdir, executor):
    """An unknown name, a missing required option and an unconvertible value raise at submit."""
    write(
        workdir,
        "params",
        HEADER
        + """
parameters = Parameters([Option("count", type=int), Option("label", default="x")])
d = Dag("d")
d.define({PythonTask("t"): None})
""",
    )
    with pytest.raises(WorkflowImportError, match="workflow 'ghost' not found"):
        executor.submit("ghost")
    with pytest.raises(WorkflowArgumentError, match=r"missing: count \(int\)"):
        executor.submit("params")
    with pytest.raises(WorkflowArgumentError, match="'count'.*'many'.*int"):
        executor.submit("params", {"count": "many"})
    assert executor.submit("params", {"count": "3"}).wait(30).status == "succeeded"


def test_changed_workflow_file_is_refused_by_the_worker(workdir, executor):
    """A worker whose copy of the workflow differs from the submitted one refuses the task."""
    path = write(
        workdir,
        "drift",
        HEADER
        + """
def slow(data, store, signal, context):
    time.sleep(0.5)
d = Dag("d")
d.define({PythonTask("first", slow): PythonTask("second")})
""",
    )
    handle = executor.submit("drift")
    time.sleep(0.2)
    path.write_text(path.read_text() + "\n# edited while running\n")
    result = handle.wait(30)
    assert result.status == "failed"
    assert "differs from the one the run was started with" in result.error


def test_events_tell_the_story_of_a_run(workdir, executor):
    """A run emits run/dag/task events in order, all bound to the run id and workflow."""
    write(workdir, "story", HEADER + "d = Dag('d')\nd.define({PythonTask('a'): PythonTask('b')})\n")
    result = executor.submit("story").wait(30)
    events = executor.collector.of(result.run_id)
    assert [e.kind for e in events] == [
        "run.started",
        "dag.started",
        "task.started",
        "task.succeeded",
        "task.started",
        "task.succeeded",
        "dag.succeeded",
        "run.succeeded",
    ]
    assert {e.workflow for e in events} == {"story"}
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
