"""BashTask against real subprocesses: output streaming, parameters, stop and abort."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from triggerd.flow.action import Action
from triggerd.flow.bash_task import BashTask
from triggerd.flow.exceptions import AbortWorkflow, StopTask
from triggerd.flow.task import TaskStatus
from triggerd.flow.task_data import MultiTaskData


class FakeSignal:
    """The two members of TaskSignal that BashTask and BaseTask use."""

    def __init__(self) -> None:
        self._stopped = False
        self.workflow_stops = 0

    @property
    def is_stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True

    def stop_workflow(self) -> bool:
        self.workflow_stops += 1
        return True


def _running(pid: int) -> bool:
    """Alive and not a zombie (orphans may wait a while for a reaper in containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _run(
    task: BashTask, signal: FakeSignal | None = None, data: MultiTaskData | None = None
) -> Action:
    return task._run(data, None, signal or FakeSignal(), None)


def _finally(statuses: list) -> object:
    return lambda status, *args: statuses.append(status)


def test_stdout_lines_arrive_in_order_with_newline() -> None:
    """Every stdout line reaches the callback, in order, decoded, with its newline."""
    lines: list[str] = []
    task = BashTask(
        "t",
        "printf 'one\\ntwo\\nthr\\303\\251e\\n'",
        callback_stdout=lambda line, *a: lines.append(line),
    )
    _run(task)
    assert lines == ["one\n", "two\n", "thrée\n"]


def test_stderr_callback_gets_stderr_only() -> None:
    """stderr lines go to callback_stderr and not to callback_stdout."""
    out: list[str] = []
    err: list[str] = []
    task = BashTask(
        "t",
        "echo good; echo bad >&2",
        callback_stdout=lambda line, *a: out.append(line),
        callback_stderr=lambda line, *a: err.append(line),
    )
    _run(task)
    assert out == ["good\n"]
    assert err == ["bad\n"]


def test_capture_files_and_returncode_reach_callback_end() -> None:
    """callback_end gets the return code and the captured output files rewound to the start."""
    seen: list = []

    def end(returncode, stdout_file, stderr_file, data, store, signal, context):
        seen.append((returncode, stdout_file.read(), stderr_file))

    task = BashTask("t", "echo hello; echo world; exit 3", capture_stdout=True, callback_end=end)
    _run(task)
    assert seen == [(3, b"hello\nworld\n", None)]


def test_callable_parameters_are_evaluated_with_data() -> None:
    """command and env given as callables are evaluated with the task's data at run time."""
    data = MultiTaskData()
    data.add_dataset("t")
    data["word"] = "it's $HOME; `x`"
    lines: list[str] = []
    task = BashTask(
        "t",
        lambda data, store: 'printf "%s|%s\\n" "$WORD" "$0"',
        env=lambda data, store: {"WORD": data["word"], "PATH": os.environ["PATH"]},
        callback_stdout=lambda line, *a: lines.append(line),
    )
    _run(task, data=data)
    assert lines[0].startswith("it's $HOME; `x`|")


def test_argv_list_passes_hostile_file_name_verbatim(tmp_path: Path) -> None:
    """A file name in an argv list reaches the program unchanged and no shell interprets it."""
    hostile = "a b; rm -rf x $(touch pwned) 'q\"`"
    (tmp_path / "x").write_text("keep")
    seen: list = []
    task = BashTask(
        "t",
        ["printf", "%s", hostile],
        cwd=str(tmp_path),
        capture_stdout=True,
        callback_end=lambda rc, out, err, *a: seen.append(out.read()),
    )
    _run(task)
    assert seen == [hostile.encode()]
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "x").read_text() == "keep"


def test_stdin_string_reaches_the_command() -> None:
    """A stdin string is written to the child, which then sees end of input."""
    lines: list[str] = []
    task = BashTask(
        "t", "cat", stdin="in put\nzwei\n", callback_stdout=lambda line, *a: lines.append(line)
    )
    _run(task)
    assert lines == ["in put\n", "zwei\n"]


def test_stop_task_from_callback_kills_command_and_skips_successors() -> None:
    """StopTask raised by a line callback ends a long command quickly and skips successors."""
    statuses: list = []

    def on_line(line, *args):
        raise StopTask("enough")

    task = BashTask(
        "t", "echo start; sleep 30", callback_stdout=on_line, callback_finally=_finally(statuses)
    )
    started = time.monotonic()
    action = _run(task)
    assert time.monotonic() - started < 2
    assert action.limit == []
    assert statuses == [TaskStatus.Stopped]


def test_stop_task_without_skip_lets_successors_run() -> None:
    """StopTask(skip_successors=False) from a callback gives an Action without a limit."""

    def on_line(line, *args):
        raise StopTask(skip_successors=False)

    action = _run(BashTask("t", "echo start; sleep 30", callback_stdout=on_line))
    assert action.limit is None


def test_abort_workflow_from_callback_process_is_graceful() -> None:
    """AbortWorkflow from callback_process kills the command and ends the task as Aborted."""
    statuses: list = []
    pids: list[int] = []

    def on_start(pid, *args):
        pids.append(pid)
        raise AbortWorkflow("no")

    task = BashTask("t", "sleep 30", callback_process=on_start, callback_finally=_finally(statuses))
    started = time.monotonic()
    action = _run(task)
    assert time.monotonic() - started < 2
    assert isinstance(action, Action)
    assert statuses == [TaskStatus.Aborted]
    assert not _running(pids[0])


def test_signal_stop_terminates_the_process_group() -> None:
    """When the DAG is stopped the shell and its background child are both terminated."""
    signal = FakeSignal()
    children: list[int] = []
    pids: list[int] = []
    task = BashTask(
        "t",
        "sleep 30 & echo $!; wait",
        callback_process=lambda pid, *a: pids.append(pid),
        callback_stdout=lambda line, *a: children.append(int(line)),
    )
    timer = threading.Timer(0.3, signal.stop)
    timer.start()
    started = time.monotonic()
    try:
        _run(task, signal)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2
    assert len(children) == 1
    assert not _running(pids[0])
    assert not _running(children[0])


def test_nonzero_exit_is_not_an_error() -> None:
    """A failing command still ends the task successfully, with every successor eligible."""
    statuses: list = []
    action = _run(BashTask("t", "exit 7", callback_finally=_finally(statuses)))
    assert action.limit is None
    assert statuses == [TaskStatus.Success]


def test_callback_finally_gets_success() -> None:
    """A command that runs to completion reports TaskStatus.Success to callback_finally."""
    statuses: list = []
    _run(BashTask("t", ["true"], callback_finally=_finally(statuses)))
    assert statuses == [TaskStatus.Success]


def test_cwd_is_honoured(tmp_path: Path) -> None:
    """The command runs in the given working directory."""
    lines: list[str] = []
    _run(
        BashTask(
            "t", "pwd -P", cwd=str(tmp_path), callback_stdout=lambda line, *a: lines.append(line)
        )
    )
    assert lines == [f"{tmp_path.resolve()}\n"]


@pytest.mark.parametrize(
    ("command", "cwd"),
    [(["no-such-program-xyz"], None), ("true", "/no/such/directory")],
)
def test_os_errors_propagate_as_task_errors(command: object, cwd: str | None) -> None:
    """A missing program or working directory raises OSError and reports TaskStatus.Error."""
    statuses: list = []
    with pytest.raises(OSError):
        _run(BashTask("t", command, cwd=cwd, callback_finally=_finally(statuses)))
    assert statuses == [TaskStatus.Error]
