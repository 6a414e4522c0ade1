"""A DAG of tasks, defined from a schema as in Lightflow.

``Dag.define({parent: [children]})``: children may be a list, a dict ``{child: slot}``
(labelled edges, the slot becomes an alias of the parent's dataset), a single task, or
``None``/``[]`` for a task without successors.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .exceptions import (
    DirectedAcyclicGraphInvalid,
    DirectedAcyclicGraphUndefined,
    WorkflowDefinitionError,
)
from .task import BaseTask

if TYPE_CHECKING:
    import networkx as nx

# False while a worker imports a workflow file whose content hash matches the one the
# submitter validated: the checks ran there, and the worker need not load networkx.
_VALIDATE = contextvars.ContextVar("triggerd_validate_dags", default=True)


@contextlib.contextmanager
def trusted_definitions() -> Iterator[None]:
    """Within this block ``Dag.define`` does not validate (see :data:`_VALIDATE`)."""
    token = _VALIDATE.set(False)
    try:
        yield
    finally:
        _VALIDATE.reset(token)


__all__ = ["Dag", "DagShape", "TaskShape"]


@dataclass(frozen=True)
class TaskShape:
    """What the runner needs to know of a task: no code, only scheduling properties."""

    name: str
    queue: str = "task"
    force_run: bool = False
    propagate_skip: bool = True


@dataclass(frozen=True)
class DagShape:
    """A DAG as plain data: task shapes and edges ``(parent, child, slot or None)``."""

    name: str
    tasks: dict[str, TaskShape]
    edges: tuple[tuple[str, str, str | None], ...]
    autostart: bool = True
    queue: str = "dag"


class Dag:
    """A directed acyclic graph of tasks (Lightflow's ``Dag``)."""

    def __init__(
        self, name: str, *, autostart: bool = True, queue: str = "dag", schema: dict | None = None
    ):
        self._name = name
        self._autostart = autostart
        self._queue = queue
        self._schema: dict | None = None
        self._by_name: dict[str, BaseTask] | None = None  # Dag.task's index, built on first use
        self.workflow_name: str | None = None
        if schema is not None:
            self.define(schema)

    @property
    def name(self) -> str:
        return self._name

    @property
    def autostart(self) -> bool:
        return self._autostart

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def schema(self) -> dict | None:
        return self._schema

    def define(self, schema: dict, *, validate: bool = True) -> None:
        """Set the schema; with ``validate`` raise if it has a cycle or bad entries."""
        self._schema = schema
        self._by_name = None
        if validate and _VALIDATE.get():
            self.validate(self.make_graph(schema))

    def validate(self, graph: nx.DiGraph) -> None:
        import networkx as nx  # the runner's and the checker's, not every worker's

        if not nx.is_directed_acyclic_graph(graph):
            cycle = [parent.name for parent, _child in nx.find_cycle(graph)]
            raise DirectedAcyclicGraphInvalid(self._name, cycle)

    def make_graph(self, schema: dict | None) -> nx.DiGraph:
        """The graph of task objects with a ``slot`` attribute on labelled edges."""
        import networkx as nx

        graph = nx.DiGraph()
        for parent, pairs in self._entries(schema):
            graph.add_node(parent)
            for child, slot in pairs:
                graph.add_edge(parent, child, slot=slot or None)
        return graph

    def _entries(
        self, schema: dict | None
    ) -> Iterator[tuple[BaseTask, list[tuple[BaseTask, Any]]]]:
        """Each parent task with its (child, slot) pairs, checked: the schema's forms read."""
        if schema is None:
            raise DirectedAcyclicGraphUndefined(self._name)
        for parent, children in schema.items():
            self._check_task(parent)
            if children is None:
                yield parent, []
                continue
            if isinstance(children, BaseTask):
                children = [children]
            if isinstance(children, dict):
                pairs = list(children.items())
            elif isinstance(children, (list, tuple)):
                pairs = [(child, None) for child in children]
            else:
                raise WorkflowDefinitionError(
                    f"DAG '{self._name}': successors of task '{parent.name}' must be a list, "
                    f"a dict {{task: slot}} or a task, not {type(children).__name__}"
                )
            for child, _slot in pairs:
                self._check_task(child)
            yield parent, pairs

    def shape(self) -> DagShape:
        """The DAG as plain data for the runner; task names must be unique in a DAG."""
        import networkx as nx

        graph = self.make_graph(self._schema)
        self.validate(graph)
        tasks: dict[str, TaskShape] = {}
        for task in nx.topological_sort(graph):
            if task.name in tasks:
                raise WorkflowDefinitionError(
                    f"DAG '{self._name}': two different tasks are named '{task.name}'; "
                    "task names must be unique within a DAG"
                )
            tasks[task.name] = TaskShape(
                task.name, task.queue, task.has_to_run, task.propagate_skip
            )
        # Per child, in the order its predecessors were added: that order decides which
        # predecessor's dataset is the default one, as in Lightflow.
        edges = tuple(
            (parent.name, child.name, graph.edges[parent, child].get("slot"))
            for child in graph.nodes
            for parent in graph.predecessors(child)
        )
        return DagShape(self._name, tasks, edges, self._autostart, self._queue)

    def task(self, name: str) -> BaseTask:
        """The task object called ``name`` in this DAG (a worker asks once per task run)."""
        if self._by_name is None:
            by_name: dict[str, BaseTask] = {}
            for parent, pairs in self._entries(self._schema):
                for task in (parent, *(child for child, _slot in pairs)):
                    by_name.setdefault(task.name, task)
            self._by_name = by_name
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"DAG '{self._name}' has no task '{name}'") from None

    def _check_task(self, obj: Any) -> None:
        if not isinstance(obj, BaseTask):
            raise WorkflowDefinitionError(
                f"DAG '{self._name}': schema entries must be tasks, got {obj!r}"
            )

    def __repr__(self) -> str:
        return f"Dag({self._name!r}, autostart={self._autostart})"
