"""The signal API a task uses to talk to its run: start and join DAGs, stop, ask if stopped.

The model only defines the API; the engine provides a :class:`SignalChannel` that carries
requests to the run's runner (a pipe locally, Redis on Celery).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from .exceptions import DagNameUnknown, RequestFailed, SignalTimeout
from .task_data import MultiTaskData

__all__ = ["DagSignal", "SignalChannel", "TaskSignal"]


class SignalChannel(Protocol):
    """Transport from a task (or DAG) to its runner, provided by the engine.

    Implementations are thread-safe: a task may signal from several threads.
    """

    def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a request and block for the reply payload (``{'error': ...}`` if refused)."""

    def is_stopped(self, dag_name: str) -> bool:
        """Whether ``dag_name`` (a running copy name) has been asked to stop."""


_ERRORS = {"DagNameUnknown": DagNameUnknown, "SignalTimeout": SignalTimeout}


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    error = reply.get("error")
    if error:
        raise _ERRORS.get(reply.get("error_type", ""), RequestFailed)(error)
    return reply


class DagSignal:
    """The signals available to a DAG: stop the workflow, ask whether the DAG is stopped."""

    def __init__(self, channel: SignalChannel, dag_name: str):
        self._channel = channel
        self._dag_name = dag_name

    @property
    def dag_name(self) -> str:
        return self._dag_name

    def stop_workflow(self) -> bool:
        """Stop the workflow: no new DAGs or tasks start, running tasks are asked to stop."""
        return bool(_checked(self._channel.request("stop_workflow", {})).get("ok", True))

    @property
    def is_stopped(self) -> bool:
        return self._channel.is_stopped(self._dag_name)


class TaskSignal(DagSignal):
    """The signals available to a task (Lightflow's ``TaskSignal``)."""

    def start_dag(self, dag: Any, *, data: MultiTaskData | None = None) -> str | None:
        """Start a copy of ``dag`` (a Dag or its name) with ``data`` as the input of its
        start tasks. Returns the running name (``'sub:1'``), or None if the workflow stopped.
        """
        name = dag if isinstance(dag, str) else dag.name
        payload = {"name": name, "data": data if isinstance(data, MultiTaskData) else None}
        return _checked(self._channel.request("start_dag", payload)).get("dag_name")

    def join_dags(self, names: Iterable[str] | None = None) -> bool:
        """Block until the named DAGs (running names) have ended; ``None``: every other DAG."""
        payload = {"names": list(names) if names is not None else None}
        return bool(_checked(self._channel.request("join_dags", payload)).get("ok", False))

    def stop_dag(self, name: str | None = None) -> bool:
        """Ask a DAG (default: this task's own) to stop."""
        payload = {"name": name or self._dag_name}
        return bool(_checked(self._channel.request("stop_dag", payload)).get("ok", False))
