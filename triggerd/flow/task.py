"""The base of every task: callbacks, skip behaviour, and the run wrapper.

A task object is a *definition*: the runner keeps the state of each task in a run, the
object itself is never mutated by running it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any

from .action import Action
from .exceptions import AbortWorkflow, StopTask, TaskReturnActionInvalid
from .task_data import MultiTaskData

__all__ = ["BaseTask", "TaskParameters", "TaskState", "TaskStatus"]


class TaskStatus(IntEnum):
    """Passed to ``callback_finally``: how the task ended."""

    Success = 1
    Stopped = 2
    Aborted = 3
    Error = 4


class TaskState(IntEnum):
    """Lightflow's task states (kept for compatibility; the runner has its own)."""

    Init = 1
    Waiting = 2
    Running = 3
    Completed = 4
    Stopped = 5
    Aborted = 6


class TaskParameters(dict):
    """Task arguments that may be values or callables ``(data, store) -> value``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def eval(
        self, data: Any, data_store: Any, *, exclude: Iterable[str] | None = None
    ) -> TaskParameters:
        """A copy with every callable replaced by its value; ``exclude`` keys are left out."""
        skip = set(exclude or ())
        return TaskParameters(
            {
                key: value(data, data_store) if callable(value) else value
                for key, value in self.items()
                if key not in skip
            }
        )

    def eval_single(self, key: str, data: Any, data_store: Any) -> Any:
        if key not in self:
            raise AttributeError(key)
        value = self[key]
        return value(data, data_store) if callable(value) else value


class BaseTask:
    """A node of a DAG. Subclasses override :meth:`run`."""

    def __init__(
        self,
        name: str,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
        idempotent: bool = True,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a task needs a non-empty string name, got {name!r}")
        self._name = name
        self._queue = queue
        self._callback_init = callback_init
        self._callback_finally = callback_finally
        self._force_run = force_run
        self._propagate_skip = propagate_skip
        self._idempotent = idempotent
        self.workflow_name: str | None = None
        self.dag_name: str | None = None
        self.state = TaskState.Init
        self.is_skipped = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def has_to_run(self) -> bool:
        return self._force_run

    @property
    def propagate_skip(self) -> bool:
        return self._propagate_skip

    @property
    def idempotent(self) -> bool:
        """Whether running the task twice does no harm (triggerd, not Lightflow).

        On Celery a task whose worker was lost mid-run is delivered again; a task with
        ``idempotent=False`` is failed instead of being run a second time.
        """
        return self._idempotent

    def run(self, data: MultiTaskData, store: Any, signal: Any, context: Any, **kwargs: Any) -> Any:
        """Do the work; return None (pass the data on) or an :class:`Action`."""
        return None

    def _run(
        self,
        data: MultiTaskData | None,
        store: Any,
        signal: Any,
        context: Any,
        *,
        success_callback: Callable[[], None] | None = None,
        stop_callback: Callable[..., None] | None = None,
        abort_callback: Callable[..., None] | None = None,
    ) -> Action:
        """Run with Lightflow's wrapper semantics; returns the Action with flattened data.

        StopTask and AbortWorkflow end the task gracefully (reported through the
        callbacks); any other exception propagates after ``callback_finally(Error)``.
        Unlike Lightflow, this does not send ``stop_workflow`` itself: the runner stops
        the workflow when it learns the task aborted or failed, one round trip fewer.
        """
        if data is None:
            data = MultiTaskData()
            data.add_dataset(self._name)
        result: Any = None
        try:
            if self._callback_init is not None:
                self._callback_init(data, store, signal, context)
            result = self.run(data, store, signal, context)
            if self._callback_finally is not None:
                self._callback_finally(TaskStatus.Success, data, store, signal, context)
            if success_callback is not None:
                success_callback()
        except StopTask as err:
            if self._callback_finally is not None:
                self._callback_finally(TaskStatus.Stopped, data, store, signal, context)
            if stop_callback is not None:
                stop_callback(exc=err)
            result = Action(data, limit=[]) if err.skip_successors else None
        except AbortWorkflow as err:
            if self._callback_finally is not None:
                self._callback_finally(TaskStatus.Aborted, data, store, signal, context)
            if abort_callback is not None:
                abort_callback(exc=err)
            result = None
        except BaseException:
            if self._callback_finally is not None:
                self._callback_finally(TaskStatus.Error, data, store, signal, context)
            raise

        if result is None:
            result = Action(data)
        elif not isinstance(result, Action):
            raise TaskReturnActionInvalid(
                f"task '{self._name}' returned {type(result).__name__}: return None or an Action"
            )
        out = result.data if result.data is not None else data
        if isinstance(out, MultiTaskData):
            out.flatten(in_place=True)
            out.add_task_history(self._name)
        return Action(out, limit=result.limit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"
