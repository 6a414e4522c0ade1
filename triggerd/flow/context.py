"""What a task knows about where it runs, and where its output goes.

The output hook is for whoever runs tasks (the engine), not for workflow authors: it
binds, for the task running in this context, an opener of output streams. BashTask opens
one per stream of its command (:func:`current_output`) and writes every byte the command
prints to it, so the runner can turn each line into an event of that task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["OutputOpener", "OutputWriter", "TaskContext", "bind_task_output", "current_output"]


@dataclass(frozen=True)
class TaskContext:
    """``dag_name`` is the running copy's name (``main:1``); ``workflow_id`` is the run id."""

    task_name: str
    dag_name: str
    workflow_name: str
    workflow_id: str
    worker_hostname: str

    @property
    def run_id(self) -> str:
        return self.workflow_id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutputWriter(Protocol):
    """Takes a stream's bytes in chunks of any size; never raises."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None:
        """The stream has ended: a last line without a newline counts too."""


# (stream name: "stdout" | "stderr", pid of the process writing it) -> a writer
OutputOpener = Callable[[str, int | None], OutputWriter]

_output: ContextVar[OutputOpener | None] = ContextVar("triggerd_task_output", default=None)


def current_output() -> OutputOpener | None:
    """The output opener of the task running in this context; None if nobody collects
    output (the task runs outside triggerd's engine, e.g. in a unit test).

    Ask on the task's own thread (context variables do not reach plain threads) and hand
    the opener to the threads that read the output.
    """
    return _output.get()


@contextlib.contextmanager
def bind_task_output(opener: OutputOpener) -> Iterator[None]:
    """Make ``opener`` the output of tasks run in this context, until the block ends."""
    token = _output.set(opener)
    try:
        yield
    finally:
        _output.reset(token)
