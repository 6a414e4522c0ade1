"""BaseTask._run wrapper, PythonTask, TaskParameters and TaskContext
(LIGHTFLOW.md §1.3-1.5, §1.10)."""

from __future__ import annotations

from typing import Any

import pytest

from triggerd.flow.action import Action
from triggerd.flow.context import TaskContext
from triggerd.flow.exceptions import AbortWorkflow, StopTask, TaskReturnActionInvalid
from triggerd.flow.python_task import PythonTask
from triggerd.flow.task import BaseTask, TaskParameters, TaskStatus
from triggerd.flow.task_data import MultiTaskData, TaskData


class FakeSignal:
    """Only what a task might call on its signal."""

    def __init__(self) -> None:
        self.workflow_stops = 0
        self.is_stopped = False

    def stop_workflow(self) -> bool:
        self.workflow_stops += 1
        return True


class FakeStore:
    """A dict-backed stand-in for the data store document."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> bool:
        self.values[key] = value
        return True


class Recorder:
    """Callbacks that record what was called, in order, and with which arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def init(self, data, store, signal, context) -> None:
        self.calls.append(("init", data, store, signal, context))

    def final(self, status, data, store, signal, context) -> None:
        self.calls.append(("finally", status, data, store, signal, context))

    def success(self) -> None:
        self.calls.append(("success",))

    def stop(self, *, exc) -> None:
        self.calls.append(("stop", exc))

    def abort(self, *, exc) -> None:
        self.calls.append(("abort", exc))

    def names(self) -> list:
        return [c[0] if c[0] != "finally" else ("finally", c[1]) for c in self.calls]


CONTEXT = TaskContext("t", "main:1", "wf", "run-1", "host")


def _task(body, rec: Recorder, name: str = "t") -> PythonTask:
    def callback(data, store, signal, context):
        rec.calls.append(("run", data, store, signal, context))
        return body(data, store, signal, context)

    return PythonTask(name, callback, callback_init=rec.init, callback_finally=rec.final)


def _run(task: BaseTask, rec: Recorder, data: MultiTaskData | None = None, **kw: Any) -> Action:
    return task._run(
        data,
        kw.get("store", FakeStore()),
        kw.get("signal", FakeSignal()),
        CONTEXT,
        success_callback=rec.success,
        stop_callback=rec.stop,
        abort_callback=rec.abort,
    )


def test_task_properties_and_defaults() -> None:
    """BaseTask keeps name/queue/force_run/propagate_skip with Lightflow's defaults."""
    task = BaseTask("t")
    assert (task.name, task.queue, task.has_to_run, task.propagate_skip) == (
        "t",
        "task",
        False,
        True,
    )
    other = BaseTask("u", queue="q", force_run=True, propagate_skip=False)
    assert (other.queue, other.has_to_run, other.propagate_skip) == ("q", True, False)


def test_task_status_values() -> None:
    """TaskStatus has Lightflow's values Success=1, Stopped=2, Aborted=3, Error=4."""
    assert [
        int(s)
        for s in (TaskStatus.Success, TaskStatus.Stopped, TaskStatus.Aborted, TaskStatus.Error)
    ] == [1, 2, 3, 4]


def test_none_data_becomes_multitaskdata_named_after_task() -> None:
    """With data None the task gets a MultiTaskData with one empty dataset aliased by its name."""
    seen: list[MultiTaskData] = []
    rec = Recorder()

    def body(data, store, signal, context):
        seen.append(data)
        assert len(data) == 1
        assert data.get_by_alias("mytask").data == {}
        data["written"] = 1

    action = _run(_task(body, rec, "mytask"), rec)
    assert isinstance(seen[0], MultiTaskData)
    assert action.data is seen[0]
    assert action.data["written"] == 1


def test_success_calls_init_run_finally_success_in_order() -> None:
    """On success the order is callback_init, run, callback_finally(Success), success callback."""
    rec = Recorder()
    store, signal = FakeStore(), FakeSignal()
    data = MultiTaskData()
    data.add_dataset("up")
    action = _task(lambda *a: None, rec)._run(
        data,
        store,
        signal,
        CONTEXT,
        success_callback=rec.success,
        stop_callback=rec.stop,
        abort_callback=rec.abort,
    )
    assert rec.names() == ["init", "run", ("finally", TaskStatus.Success), "success"]
    # every callback gets the same data, store, signal and context
    for call in rec.calls[:3]:
        assert call[-4:] == (data, store, signal, CONTEXT)
    assert action.limit is None
    assert action.data is data


def test_stop_task_skipping_successors() -> None:
    """StopTask() ends with finally(Stopped), the stop callback, and an Action with limit []."""
    rec = Recorder()
    err = StopTask("enough")

    def body(*_):
        raise err

    action = _run(_task(body, rec), rec)
    assert rec.names() == ["init", "run", ("finally", TaskStatus.Stopped), "stop"]
    assert rec.calls[-1][1] is err
    assert isinstance(action, Action)
    assert action.limit == []
    assert isinstance(action.data, MultiTaskData)


def test_stop_task_without_skipping_successors() -> None:
    """StopTask(skip_successors=False) ends with finally(Stopped) and an Action with limit None."""
    rec = Recorder()

    def body(*_):
        raise StopTask(skip_successors=False)

    action = _run(_task(body, rec), rec)
    assert ("finally", TaskStatus.Stopped) in rec.names()
    assert action.limit is None


def test_stop_task_from_callback_init_is_graceful() -> None:
    """StopTask raised by callback_init skips run and still ends as Stopped."""
    rec = Recorder()

    def init(*_):
        raise StopTask()

    ran = []
    task = PythonTask("t", lambda *a: ran.append(1), callback_init=init, callback_finally=rec.final)
    action = _run(task, rec)
    assert ran == []
    assert rec.names() == [("finally", TaskStatus.Stopped), "stop"]
    assert action.limit == []


def test_abort_workflow_is_graceful_and_returns_action() -> None:
    """AbortWorkflow ends with finally(Aborted), the abort callback, and an
    Action (no exception)."""
    rec = Recorder()
    err = AbortWorkflow("stop all")

    def body(*_):
        raise err

    action = _run(_task(body, rec), rec)
    assert rec.names() == ["init", "run", ("finally", TaskStatus.Aborted), "abort"]
    assert rec.calls[-1][1] is err
    assert isinstance(action, Action)
    assert isinstance(action.data, MultiTaskData)


def test_other_exception_calls_finally_error_and_reraises() -> None:
    """Any other exception calls finally(Error), no success/stop/abort callback, and propagates."""
    rec = Recorder()

    def body(*_):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        _run(_task(body, rec), rec)
    assert rec.names() == ["init", "run", ("finally", TaskStatus.Error)]


def test_exception_in_callback_init_calls_finally_error() -> None:
    """An exception in callback_init skips run, calls finally(Error) and propagates."""
    rec = Recorder()

    def init(*_):
        raise KeyError("init")

    ran = []
    task = PythonTask("t", lambda *a: ran.append(1), callback_init=init, callback_finally=rec.final)
    with pytest.raises(KeyError):
        _run(task, rec)
    assert ran == []
    assert rec.names() == [("finally", TaskStatus.Error)]


@pytest.mark.parametrize("bad", [42, "text", {"a": 1}, MultiTaskData()])
def test_non_action_return_raises(bad: object) -> None:
    """A run returning something other than None or an Action raises TaskReturnActionInvalid."""
    rec = Recorder()
    with pytest.raises(TaskReturnActionInvalid, match="t"):
        _run(_task(lambda *a: bad, rec), rec)


def test_output_data_is_flattened_with_task_name_in_history() -> None:
    """The returned data is flattened (default dataset wins) and has the task name
    appended to its history."""
    rec = Recorder()
    data = MultiTaskData()
    data.add_dataset("p1", TaskData({"k": "p1", "only1": 1}, task_history=["p1"]))
    data.add_dataset("p2", TaskData({"k": "p2", "only2": 2}, task_history=["p2"]), aliases=["slot"])

    def body(d, *_):
        d.set_default_by_alias("slot")
        d["mine"] = True

    action = _run(_task(body, rec, "me"), rec, data)
    out = action.data
    assert len(out) == 1
    assert out.default_dataset.data == {"k": "p2", "only1": 1, "only2": 2, "mine": True}
    assert out.default_dataset.task_history == ["p1", "p2", "me"]
    assert set(out.aliases) == {"p1", "p2", "slot"}


def test_returned_action_data_is_flattened_and_limit_kept() -> None:
    """A returned Action with new data gets that data flattened, the history
    appended, and keeps its limit."""
    rec = Recorder()
    new = MultiTaskData()
    new.add_dataset("a", TaskData({"x": 1}))
    new.add_dataset("b", TaskData({"y": 2}))

    action = _run(_task(lambda *a: Action(new, limit=["next"]), rec, "me"), rec)
    assert action.data is new
    assert len(new) == 1
    assert new.default_dataset.data == {"x": 1, "y": 2}
    assert new.default_dataset.task_history == ["me"]
    assert action.limit == ["next"]


def test_stopped_task_data_is_flattened_with_history() -> None:
    """After StopTask the returned data is flattened and carries the task name too."""
    rec = Recorder()
    data = MultiTaskData()
    data.add_dataset("a", TaskData({"x": 1}))
    data.add_dataset("b", TaskData({"y": 2}))

    def body(*_):
        raise StopTask()

    action = _run(_task(body, rec, "me"), rec, data)
    assert len(action.data) == 1
    assert action.data.default_dataset.task_history == ["me"]


def test_python_task_without_callback_passes_data_through() -> None:
    """PythonTask(callback=None) returns the input data unchanged apart from the history."""
    data = MultiTaskData()
    data.add_dataset("up", TaskData({"k": "v"}, task_history=["up"]))
    action = PythonTask("noop")._run(data, FakeStore(), FakeSignal(), CONTEXT)
    assert action.data is data
    assert action.limit is None
    assert data["k"] == "v"
    assert data.default_dataset.task_history == ["up", "noop"]


def test_python_task_passes_arguments_to_callback() -> None:
    """PythonTask calls callback(data, store, signal, context) with the task's objects."""
    got: list[tuple] = []
    store, signal = FakeStore(), FakeSignal()
    task = PythonTask("p", lambda *args: got.append(args))
    data = MultiTaskData()
    data.add_dataset("x")
    task._run(data, store, signal, CONTEXT)
    assert got == [(data, store, signal, CONTEXT)]


def test_base_task_run_returns_none() -> None:
    """BaseTask.run does nothing and returns None, so _run passes data through."""
    task = BaseTask("base")
    assert task.run(None, None, None, None) is None
    action = task._run(None, FakeStore(), FakeSignal(), CONTEXT)
    assert action.data.default_dataset.task_history == ["base"]


def test_task_needs_a_name() -> None:
    """A task without a non-empty string name is refused."""
    with pytest.raises(ValueError):
        BaseTask("")


# --------------------------------------------------------------------------- TaskParameters


def test_task_parameters_attribute_access() -> None:
    """TaskParameters is a dict whose keys read as attributes; a missing one
    raises AttributeError."""
    params = TaskParameters({"command": "ls", "cwd": None})
    assert isinstance(params, dict)
    assert params.command == "ls"
    assert params.cwd is None
    with pytest.raises(AttributeError):
        _ = params.missing


def test_task_parameters_attribute_assignment_and_deletion() -> None:
    """Attribute-style assignment and deletion write to and delete from the
    dict, as in Lightflow."""
    params = TaskParameters({"command": "ls"})
    params.cwd = "/tmp"
    assert params["cwd"] == "/tmp"
    assert params.cwd == "/tmp"
    params.command = "pwd"
    assert params["command"] == "pwd"
    del params.cwd
    assert "cwd" not in params
    with pytest.raises(AttributeError):
        del params.cwd


def test_task_parameters_eval_calls_callables_and_drops_excluded() -> None:
    """eval returns a new TaskParameters with callables called as f(data, store) and
    excluded keys left out."""
    data, store = object(), object()
    seen = []

    def env(d, s):
        seen.append((d, s))
        return {"A": "1"}

    def command(d, s):
        raise AssertionError("excluded keys are not evaluated")

    params = TaskParameters({"env": env, "command": command, "cwd": "/tmp"})
    result = params.eval(data, store, exclude=["command"])
    assert isinstance(result, TaskParameters)
    assert result is not params
    assert result.env == {"A": "1"}
    assert "command" not in result  # Lightflow: excluded keys are not in the result
    assert result.cwd == "/tmp"
    assert seen == [(data, store)]
    assert params["env"] is env  # the original is unchanged


def test_task_parameters_eval_single() -> None:
    """eval_single evaluates one key (callable or value) and raises
    AttributeError for a missing key."""
    params = TaskParameters({"command": lambda d, s: f"echo {d}", "cwd": "/x"})
    assert params.eval_single("command", "hi", None) == "echo hi"
    assert params.eval_single("cwd", None, None) == "/x"
    with pytest.raises(AttributeError):
        params.eval_single("missing", None, None)


# --------------------------------------------------------------------------- TaskContext


def test_task_context_to_dict_keys() -> None:
    """TaskContext.to_dict has exactly Lightflow's five keys with their values."""
    ctx = TaskContext("t", "main:2", "wf", "id-9", "worker-1")
    assert ctx.to_dict() == {
        "task_name": "t",
        "dag_name": "main:2",
        "workflow_name": "wf",
        "workflow_id": "id-9",
        "worker_hostname": "worker-1",
    }
    assert ctx.dag_name == "main:2"
    assert ctx.worker_hostname == "worker-1"
