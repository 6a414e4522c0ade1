"""Lightflow's exception names, so workflow files that catch or raise them keep working.

All derive from :class:`LightflowException` (a ``RuntimeError``, as in Lightflow) and from
triggerd's root :class:`~triggerd.errors.TriggerdError`.
"""

from __future__ import annotations

from triggerd.errors import ConfigError, TriggerdError

__all__ = [
    "AbortWorkflow",
    "DagNameUnknown",
    "DataInvalidAlias",
    "DataInvalidIndex",
    "DataNotPicklable",
    "DataStoreDecodeUnknownType",
    "DataStoreNotConnected",
    "DirectedAcyclicGraphInvalid",
    "DirectedAcyclicGraphUndefined",
    "LightflowException",
    "RequestFailed",
    "SignalTimeout",
    "StopTask",
    "TaskReturnActionInvalid",
    "WorkflowArgumentError",
    "WorkflowDefinitionError",
    "WorkflowImportError",
]


class LightflowException(TriggerdError, RuntimeError):
    """Base of the Lightflow-compatible exceptions; ``message`` as in Lightflow."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StopTask(LightflowException):
    """Stop this task gracefully; by default its successors are skipped."""

    def __init__(self, message: str = "", *, skip_successors: bool = True):
        super().__init__(message)
        self.skip_successors = skip_successors


class AbortWorkflow(LightflowException):
    """Stop the whole workflow gracefully (it ends *aborted*, not failed)."""


class _UserConfigError(ConfigError, LightflowException):
    """A Lightflow-named error that is the workflow author's or caller's to fix."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        ConfigError.__init__(self, message, source=source, key=key)
        self.message = str(self)

    def __str__(self) -> str:
        return self.message


class WorkflowArgumentError(_UserConfigError):
    """A workflow parameter is missing or cannot be converted to its type."""


class WorkflowImportError(_UserConfigError):
    """A workflow file cannot be found or imported (syntax error, failing import...)."""


class WorkflowDefinitionError(_UserConfigError):
    """A workflow's DAGs are not valid (duplicate names, cycles, bad schema)."""


class DirectedAcyclicGraphInvalid(WorkflowDefinitionError):
    """A DAG schema has a cycle; the message names the DAG and the cycle."""

    def __init__(self, graph_name: str, cycle: list[str] | None = None):
        self.graph_name = graph_name
        self.cycle = cycle or []
        path = " -> ".join([*self.cycle, self.cycle[0]]) if self.cycle else "?"
        super().__init__(f"DAG '{graph_name}' is not acyclic: cycle {path}")


class DirectedAcyclicGraphUndefined(WorkflowDefinitionError):
    """A DAG was used before ``define()`` gave it a schema."""

    def __init__(self, graph_name: str = ""):
        super().__init__(f"DAG '{graph_name}' has no schema: call define() first")


class DataInvalidIndex(LightflowException):
    """A MultiTaskData index is out of range."""


class DataInvalidAlias(LightflowException):
    """A MultiTaskData alias is not known."""


class DataNotPicklable(_UserConfigError):
    """Task data holds a value that cannot be pickled; names the task, key and type."""


class TaskReturnActionInvalid(LightflowException):
    """A task returned something other than ``None`` or an :class:`Action`."""


class DagNameUnknown(LightflowException):
    """``start_dag`` named a DAG the workflow does not define."""


class RequestFailed(LightflowException):
    """A signal request (start_dag, join_dags, ...) was refused by the runner."""


class SignalTimeout(RequestFailed):
    """A signal request got no answer in time (the runner is gone or overloaded)."""


class DataStoreNotConnected(LightflowException):
    """The data store cannot be reached."""


class DataStoreDecodeUnknownType(LightflowException):
    """A stored value has a type the data store cannot decode."""
