"""The Lightflow-style workflow model: Dag, tasks, data, store API, signals, parameters.

A Lightflow workflow file runs after its imports change from ``lightflow.models`` /
``lightflow.tasks`` to ``triggerd.flow``. Pure Python: nothing here talks to a server.
"""

from .action import Action
from .bash_task import BashTask
from .context import TaskContext
from .dag import Dag, DagShape, TaskShape
from .exceptions import (
    AbortWorkflow,
    DagNameUnknown,
    DataInvalidAlias,
    DataInvalidIndex,
    DataNotPicklable,
    DataStoreDecodeUnknownType,
    DataStoreNotConnected,
    DirectedAcyclicGraphInvalid,
    DirectedAcyclicGraphUndefined,
    LightflowException,
    RequestFailed,
    StopTask,
    TaskReturnActionInvalid,
    WorkflowArgumentError,
    WorkflowDefinitionError,
    WorkflowImportError,
)
from .parameters import Option, Parameters
from .python_task import PythonTask
from .signal import DagSignal, TaskSignal
from .store import DataStoreDocument, DataStoreDocumentSection
from .task import BaseTask, TaskParameters, TaskState, TaskStatus
from .task_data import MultiTaskData, TaskData
from .workflow import Workflow, discover_workflows, load_workflow

__all__ = [
    "AbortWorkflow",
    "Action",
    "BaseTask",
    "BashTask",
    "Dag",
    "DagNameUnknown",
    "DagShape",
    "DagSignal",
    "DataInvalidAlias",
    "DataInvalidIndex",
    "DataNotPicklable",
    "DataStoreDecodeUnknownType",
    "DataStoreDocument",
    "DataStoreDocumentSection",
    "DataStoreNotConnected",
    "DirectedAcyclicGraphInvalid",
    "DirectedAcyclicGraphUndefined",
    "LightflowException",
    "MultiTaskData",
    "Option",
    "Parameters",
    "PythonTask",
    "RequestFailed",
    "StopTask",
    "TaskContext",
    "TaskData",
    "TaskParameters",
    "TaskReturnActionInvalid",
    "TaskShape",
    "TaskSignal",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowArgumentError",
    "WorkflowDefinitionError",
    "WorkflowImportError",
    "discover_workflows",
    "load_workflow",
]
