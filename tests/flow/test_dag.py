"""Dag schemas, validation and the plain-data shape given to the runner (LIGHTFLOW.md §1.2)."""

from __future__ import annotations

import pytest

from triggerd.flow.dag import Dag, DagShape, TaskShape
from triggerd.flow.exceptions import (
    DirectedAcyclicGraphInvalid,
    DirectedAcyclicGraphUndefined,
    WorkflowDefinitionError,
)
from triggerd.flow.python_task import PythonTask


def _tasks(*names: str) -> list[PythonTask]:
    return [PythonTask(name) for name in names]


def test_dag_properties_and_defaults() -> None:
    """Dag keeps name/autostart/queue with Lightflow's defaults and no schema."""
    dag = Dag("main")
    assert (dag.name, dag.autostart, dag.queue, dag.schema) == ("main", True, "dag", None)
    other = Dag("side", autostart=False, queue="special")
    assert (other.autostart, other.queue) == (False, "special")


def test_define_with_list_children() -> None:
    """A list of children makes one unlabelled edge per child."""
    a, b, c = _tasks("a", "b", "c")
    dag = Dag("d")
    dag.define({a: [b, c]})
    shape = dag.shape()
    assert set(shape.tasks) == {"a", "b", "c"}
    assert set(shape.edges) == {("a", "b", None), ("a", "c", None)}


def test_define_with_slot_dict() -> None:
    """A {task: 'slot'} dict labels edges; '' and None mean no slot."""
    a, b, c, d = _tasks("a", "b", "c", "d")
    dag = Dag("d")
    dag.define({a: {b: "left", c: "", d: None}})
    assert set(dag.shape().edges) == {("a", "b", "left"), ("a", "c", None), ("a", "d", None)}


def test_define_with_single_task_child() -> None:
    """A single task as the value makes one edge."""
    a, b = _tasks("a", "b")
    dag = Dag("d", schema={a: b})
    assert dag.shape().edges == (("a", "b", None),)


@pytest.mark.parametrize("children", [None, []])
def test_define_with_no_children_adds_isolated_node(children: object) -> None:
    """None or [] as the value adds the task as a node without edges."""
    (a,) = _tasks("a")
    dag = Dag("d", schema={a: children})
    shape = dag.shape()
    assert list(shape.tasks) == ["a"]
    assert shape.edges == ()


def test_constructor_schema_equals_define() -> None:
    """Dag(schema=...) defines the schema just like define()."""
    a, b = _tasks("a", "b")
    schema = {a: [b]}
    assert Dag("d", schema=schema).schema is schema
    assert Dag("d", schema=schema).shape() == Dag("d", schema=dict(schema)).shape()


def test_shape_task_properties() -> None:
    """shape() gives every task's queue, force_run and propagate_skip, and the
    DAG's own settings."""
    a = PythonTask("a", queue="fast")
    b = PythonTask("b", force_run=True)
    c = PythonTask("c", propagate_skip=False)
    dag = Dag("main", autostart=False, queue="dq", schema={a: [b], b: [c]})
    shape = dag.shape()
    assert isinstance(shape, DagShape)
    assert shape.name == "main"
    assert shape.autostart is False
    assert shape.queue == "dq"
    assert shape.tasks == {
        "a": TaskShape("a", queue="fast", force_run=False, propagate_skip=True),
        "b": TaskShape("b", queue="task", force_run=True, propagate_skip=True),
        "c": TaskShape("c", queue="task", force_run=False, propagate_skip=False),
    }


def test_shape_edges_list_predecessors_in_insertion_order() -> None:
    """For each child the edges list its predecessors in the order the schema added them."""
    a, b, c, d = _tasks("a", "b", "c", "d")
    # d's predecessors are added c first, then b
    dag = Dag("d", schema={c: {d: "from_c"}, a: [b], b: {d: "from_b"}})
    edges = dag.shape().edges
    assert [(p, s) for p, child, s in edges if child == "d"] == [("c", "from_c"), ("b", "from_b")]
    assert ("a", "b", None) in edges
    assert len(edges) == 3

    # the other order gives the other predecessor order
    dag2 = Dag("d2", schema={a: [b], b: {d: "from_b"}, c: {d: "from_c"}})
    edges2 = dag2.shape().edges
    assert [p for p, child, _ in edges2 if child == "d"] == ["b", "c"]


def test_shape_diamond_edges_with_slots() -> None:
    """A diamond keeps every edge once, with its slot."""
    a, b, c, d = _tasks("a", "b", "c", "d")
    dag = Dag("diamond", schema={a: {b: "left", c: "right"}, b: [d], c: {d: "x"}})
    assert dag.shape().edges == (
        ("a", "b", "left"),
        ("a", "c", "right"),
        ("b", "d", None),
        ("c", "d", "x"),
    )


def test_cycle_raises_naming_dag_and_cycle_tasks() -> None:
    """A cycle raises DirectedAcyclicGraphInvalid naming the DAG and only the tasks on the cycle."""
    x, a, b, c = _tasks("x", "a", "b", "c")
    dag = Dag("loopy")
    with pytest.raises(DirectedAcyclicGraphInvalid) as info:
        dag.define({x: [a], a: [b], b: [c], c: [a]})
    err = info.value
    assert isinstance(err, WorkflowDefinitionError)
    assert err.graph_name == "loopy"
    assert set(err.cycle) == {"a", "b", "c"}
    message = str(err)
    assert "loopy" in message
    for name in ("a", "b", "c"):
        assert name in err.cycle and f"{name}" in message
    assert "x" not in err.cycle


def test_self_loop_is_a_cycle() -> None:
    """A task that is its own successor is a cycle."""
    (a,) = _tasks("a")
    with pytest.raises(DirectedAcyclicGraphInvalid) as info:
        Dag("selfish", schema={a: [a]})
    assert info.value.cycle == ["a"]


def test_cycle_detected_by_shape_when_define_did_not_validate() -> None:
    """define(validate=False) accepts a cycle, and shape() still refuses it."""
    a, b = _tasks("a", "b")
    dag = Dag("late")
    dag.define({a: [b], b: [a]}, validate=False)
    with pytest.raises(DirectedAcyclicGraphInvalid):
        dag.shape()


@pytest.mark.parametrize(
    "make_schema",
    [
        lambda t: {"not a task": [t]},
        lambda t: {t: ["not a task"]},
        lambda t: {t: {"child": "slot"}},
        lambda t: {t: 42},
        lambda t: {t: "b"},
    ],
    ids=["key", "list-child", "dict-child", "int-value", "str-value"],
)
def test_non_task_in_schema_raises(make_schema) -> None:
    """A schema entry that is not a task raises WorkflowDefinitionError naming the DAG."""
    (t,) = _tasks("t")
    with pytest.raises(WorkflowDefinitionError, match="bad"):
        Dag("bad").define(make_schema(t))


def test_two_tasks_with_same_name_are_refused() -> None:
    """Two different task objects with one name in a DAG raise WorkflowDefinitionError."""
    first, second = PythonTask("same"), PythonTask("same")
    (root,) = _tasks("root")
    dag = Dag("dup", schema={root: [first, second]})
    with pytest.raises(WorkflowDefinitionError, match="same"):
        dag.shape()


def test_same_task_object_twice_is_one_node() -> None:
    """Referencing one task object several times in a schema is one node, not a duplicate."""
    a, b, c = _tasks("a", "b", "c")
    dag = Dag("ok", schema={a: [b, c], b: [c]})
    shape = dag.shape()
    assert set(shape.tasks) == {"a", "b", "c"}
    assert len(shape.edges) == 3


def test_task_lookup_by_name() -> None:
    """Dag.task(name) returns the task object, and an unknown name raises KeyError."""
    a, b = _tasks("a", "b")
    dag = Dag("d", schema={a: {b: "slot"}})
    assert dag.task("a") is a
    assert dag.task("b") is b
    with pytest.raises(KeyError):
        dag.task("zzz")


def test_undefined_schema_raises_on_shape() -> None:
    """shape() of a Dag without schema raises DirectedAcyclicGraphUndefined naming the DAG."""
    with pytest.raises(DirectedAcyclicGraphUndefined, match="empty"):
        Dag("empty").shape()
