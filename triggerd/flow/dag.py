"""A DAG of tasks, defined from a schema as in Lightflow.

``Dag.define({parent: [children]})``: children may be a list, a dict ``{child: slot}``
(labelled edges, the slot becomes an alias of the parent's dataset), a single task, or
``None``/``[]`` for a task without successors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from .exceptions import (
    DirectedAcyclicGraphInvalid,
    DirectedAcyclicGraphUndefined,
    WorkflowDefinitionError,
)
from .task import BaseTask

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

    def __init__(self, name: str, *, autostart: bool = True, queue: str = "dag", schema: dict | None = None):
        self._name = name
        self._autostart = autostart
        self._queue = queue
        self._schema: dict | None = None
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
        if validate:
            self.validate(self.make_graph(schema))

    def validate(self, graph: nx.DiGraph) -> None:
        if not nx.is_directed_acyclic_graph(graph):
            cycle = [parent.name for parent, _child in nx.find_cycle(graph)]
            raise DirectedAcyclicGraphInvalid(self._name, cycle)

    def make_graph(self, schema: dict | None) -> nx.DiGraph:
        """The graph of task objects with a ``slot`` attribute on labelled edges."""
        if schema is None:
            raise DirectedAcyclicGraphUndefined(self._name)
        graph = nx.DiGraph()
        for parent, children in schema.items():
            self._check_task(parent)
            graph.add_node(parent)
            if children is None:
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
            for child, slot in pairs:
                self._check_task(child)
                graph.add_edge(parent, child, slot=slot or None)
        return graph

    def shape(self) -> DagShape:
        """The DAG as plain data for the runner; task names must be unique in a DAG."""
        graph = self.make_graph(self._schema)
        self.validate(graph)
        tasks: dict[str, TaskShape] = {}
        for task in nx.topological_sort(graph):
            if task.name in tasks:
                raise WorkflowDefinitionError(
                    f"DAG '{self._name}': two different tasks are named '{task.name}'; "
                    "task names must be unique within a DAG"
                )
            tasks[task.name] = TaskShape(task.name, task.queue, task.has_to_run, task.propagate_skip)
        # Per child, in the order its predecessors were added: that order decides which
        # predecessor's dataset is the default one, as in Lightflow.
        edges = tuple(
            (parent.name, child.name, graph.edges[parent, child].get("slot"))
            for child in graph.nodes
            for parent in graph.predecessors(child)
        )
        return DagShape(self._name, tasks, edges, self._autostart, self._queue)

    def task(self, name: str) -> BaseTask:
        """The task object called ``name`` in this DAG."""
        for task in self.make_graph(self._schema).nodes:
            if task.name == name:
                return task
        raise KeyError(f"DAG '{self._name}' has no task '{name}'")

    def _check_task(self, obj: Any) -> None:
        if not isinstance(obj, BaseTask):
            raise WorkflowDefinitionError(
                f"DAG '{self._name}': schema entries must be tasks, got {obj!r}"
            )

    def __repr__(self) -> str:
        return f"Dag({self._name!r}, autostart={self._autostart})"
