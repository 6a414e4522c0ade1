"""TaskData and MultiTaskData: Lightflow's dataset model (LIGHTFLOW.md §1.6)."""

from __future__ import annotations

import copy
import threading

import pytest

from triggerd.flow.exceptions import DataInvalidAlias, DataInvalidIndex
from triggerd.flow.task_data import MultiTaskData, TaskData

# --------------------------------------------------------------------------- TaskData


def test_taskdata_get_set_and_item_access() -> None:
    """get/set and the item protocol read and write the underlying dict."""
    data = TaskData({"a": 1})
    data.set("b", 2)
    data["c"] = 3
    assert data.get("a") == 1
    assert data.get("b") == 2
    assert data["c"] == 3
    assert data.get("missing") is None
    assert data.get("missing", "dflt") == "dflt"
    assert "a" in data and "missing" not in data
    del data["a"]
    assert "a" not in data
    assert data.data == {"b": 2, "c": 3}
    with pytest.raises(KeyError):
        data["missing"]


def test_taskdata_defaults_are_empty_and_not_shared() -> None:
    """A new TaskData has empty data and history, never shared with another instance."""
    first, second = TaskData(), TaskData()
    first["x"] = 1
    first.add_task_history("t")
    assert second.data == {} and second.task_history == []
    assert first.task_history == ["t"]


def test_taskdata_repr_and_str() -> None:
    """repr is TaskData({...}) and str is the str of the dict, as in Lightflow."""
    data = TaskData({"k": 1})
    assert repr(data) == "TaskData({'k': 1})"
    assert str(data) == "{'k': 1}"


def test_taskdata_merge_is_recursive_and_argument_wins() -> None:
    """merge merges nested dicts key by key and the argument's values win on conflicts."""
    target = TaskData({"a": 1, "keep": "t", "n": {"x": 1, "y": 1, "deep": {"p": 1}}})
    source = TaskData({"a": 2, "new": "s", "n": {"y": 2, "z": 2, "deep": {"q": 2}}})
    target.merge(source)
    assert target.data == {
        "a": 2,
        "keep": "t",
        "new": "s",
        "n": {"x": 1, "y": 2, "z": 2, "deep": {"p": 1, "q": 2}},
    }
    # the source is not changed by the merge
    assert source.data == {"a": 2, "new": "s", "n": {"y": 2, "z": 2, "deep": {"q": 2}}}


def test_taskdata_merge_dict_replaces_scalar_and_scalar_replaces_dict() -> None:
    """When one side has a dict and the other a scalar for a key, the argument's value wins."""
    target = TaskData({"a": 1, "b": {"x": 1}})
    target.merge(TaskData({"a": {"y": 2}, "b": 5}))
    assert target.data == {"a": {"y": 2}, "b": 5}


def test_taskdata_merge_appends_unseen_history_without_duplicates() -> None:
    """merge appends the argument's history entries that are not already present, in order."""
    target = TaskData(task_history=["a", "b"])
    target.merge(TaskData(task_history=["b", "c", "a", "d"]))
    assert target.task_history == ["a", "b", "c", "d"]


def test_taskdata_deepcopy_copies_data_deeply_and_history_separately() -> None:
    """deepcopy gives independent nested data and an independent history list."""
    original = TaskData({"n": {"list": [1, 2]}}, task_history=["t1"])
    clone = copy.deepcopy(original)
    clone["n"]["list"].append(3)
    clone.add_task_history("t2")
    assert original.data == {"n": {"list": [1, 2]}}
    assert original.task_history == ["t1"]
    assert clone.data == {"n": {"list": [1, 2, 3]}}
    assert clone.task_history == ["t1", "t2"]


# --------------------------------------------------------------------------- MultiTaskData


def _three() -> MultiTaskData:
    """Three datasets a, b, c at indexes 0, 1, 2 (b also aliased 'slot_b')."""
    multi = MultiTaskData()
    multi.add_dataset("a", TaskData({"v": "a"}))
    multi.add_dataset("b", TaskData({"v": "b"}), aliases=["slot_b"])
    multi.add_dataset("c", TaskData({"v": "c"}))
    return multi


def test_add_dataset_registers_task_name_and_aliases() -> None:
    """add_dataset appends a dataset reachable by its task name and each alias."""
    multi = _three()
    assert len(multi) == 3
    assert multi.get_by_alias("a")["v"] == "a"
    assert multi.get_by_alias("b")["v"] == "b"
    assert multi.get_by_alias("slot_b") is multi.get_by_alias("b")
    assert multi.get_by_index(2)["v"] == "c"
    assert multi.aliases == {"a": 0, "b": 1, "slot_b": 1, "c": 2}
    assert [d["v"] for d in multi] == ["a", "b", "c"]


def test_add_dataset_without_dataset_creates_empty_one() -> None:
    """add_dataset with no dataset appends an empty TaskData."""
    multi = MultiTaskData()
    multi.add_dataset("t")
    assert isinstance(multi.get_by_alias("t"), TaskData)
    assert multi.get_by_alias("t").data == {}


def test_constructor_dataset_and_aliases_point_to_index_zero() -> None:
    """MultiTaskData(dataset=..., aliases=[...]) holds that dataset at index 0 for each alias."""
    dataset = TaskData({"k": 1})
    multi = MultiTaskData(dataset=dataset, aliases=["x", "y"])
    assert multi.get_by_alias("x") is dataset
    assert multi.get_by_alias("y") is dataset
    assert multi.default_dataset is dataset


def test_add_alias_in_range_and_out_of_range() -> None:
    """add_alias points a new alias at an index, and an out-of-range index
    raises DataInvalidIndex."""
    multi = _three()
    multi.add_alias("extra", 2)
    assert multi("extra")["v"] == "c"
    with pytest.raises(DataInvalidIndex):
        multi.add_alias("bad", 3)
    assert "bad" not in multi.aliases


def test_get_by_alias_unknown_and_get_by_index_out_of_range() -> None:
    """An unknown alias raises DataInvalidAlias and an out-of-range index raises
    DataInvalidIndex."""
    multi = _three()
    with pytest.raises(DataInvalidAlias):
        multi.get_by_alias("nope")
    with pytest.raises(DataInvalidAlias):
        multi("nope")
    with pytest.raises(DataInvalidIndex):
        multi.get_by_index(3)


def test_call_is_get_by_alias() -> None:
    """Calling the MultiTaskData with an alias returns that alias's dataset."""
    multi = _three()
    assert multi("c") is multi.get_by_alias("c")
    assert multi("slot_b") is multi.get_by_index(1)


def test_default_dataset_is_first_and_settable_by_alias_and_index() -> None:
    """The default dataset starts at index 0 and moves with set_default_by_alias/index."""
    multi = _three()
    assert multi.default_index == 0
    assert multi.default_dataset["v"] == "a"
    multi.set_default_by_alias("slot_b")
    assert multi.default_index == 1
    assert multi.default_dataset["v"] == "b"
    multi.set_default_by_index(2)
    assert multi.default_index == 2
    assert multi.default_dataset["v"] == "c"


def test_set_default_errors() -> None:
    """An unknown alias or out-of-range index for the default raises and leaves
    the default as is."""
    multi = _three()
    multi.set_default_by_index(1)
    with pytest.raises(DataInvalidAlias):
        multi.set_default_by_alias("nope")
    with pytest.raises(DataInvalidIndex):
        multi.set_default_by_index(5)
    assert multi.default_index == 1


def test_item_access_uses_default_dataset() -> None:
    """[] get/set/del and `in` operate on the default dataset only."""
    multi = _three()
    multi.set_default_by_alias("b")
    assert multi["v"] == "b"
    multi["new"] = 1
    assert multi.get_by_alias("b")["new"] == 1
    assert "new" not in multi.get_by_alias("a")
    assert "new" in multi
    del multi["new"]
    assert "new" not in multi
    assert "new" not in multi.get_by_alias("b")


def test_add_task_history_appends_to_every_dataset() -> None:
    """add_task_history appends the name to the history of each dataset."""
    multi = _three()
    multi.add_task_history("me")
    assert [d.task_history for d in multi] == [["me"], ["me"], ["me"]]


def _conflicting() -> MultiTaskData:
    """Three datasets whose keys conflict, default at index 1."""
    multi = MultiTaskData()
    multi.add_dataset(
        "a",
        TaskData({"x": "a", "w": "a", "n": {"p": "a", "q": "a"}}, task_history=["ta"]),
        aliases=["left"],
    )
    multi.add_dataset(
        "b", TaskData({"x": "b", "y": "b", "n": {"q": "b", "r": "b"}}, task_history=["tb"])
    )
    multi.add_dataset("c", TaskData({"y": "c", "w": "c", "z": "c"}, task_history=["ta", "tc"]))
    multi.set_default_by_index(1)
    return multi


def test_flatten_default_wins_and_others_merge_in_index_order() -> None:
    """flatten merges non-default datasets in index order, then the default one, which wins."""
    multi = _conflicting()
    multi.flatten()
    assert len(multi) == 1
    assert multi.default_index == 0
    assert multi.default_dataset.data == {
        "x": "b",  # default (b) beats a
        "y": "b",  # default (b) beats c
        "w": "c",  # among non-defaults, the later index (c) beats a
        "z": "c",
        "n": {"p": "a", "q": "b", "r": "b"},  # merged recursively
    }
    # histories: non-default in index order, then default, without duplicates
    assert multi.default_dataset.task_history == ["ta", "tc", "tb"]


def test_flatten_points_every_alias_to_index_zero() -> None:
    """After flatten every alias (task names and slots) resolves to the single dataset."""
    multi = _conflicting()
    multi.flatten()
    assert multi.aliases == {"a": 0, "left": 0, "b": 0, "c": 0}
    for alias in ("a", "left", "b", "c"):
        assert multi(alias) is multi.default_dataset


def test_flatten_not_in_place_returns_new_object_and_keeps_original() -> None:
    """flatten(in_place=False) returns a new flattened MultiTaskData and leaves
    the original intact."""
    multi = _conflicting()
    flat = multi.flatten(in_place=False)
    assert flat is not multi
    assert isinstance(flat, MultiTaskData)
    assert len(flat) == 1
    assert flat["x"] == "b"
    assert set(flat.aliases) == {"a", "left", "b", "c"}
    assert set(flat.aliases.values()) == {0}
    # original untouched
    assert len(multi) == 3
    assert multi.default_index == 1
    assert multi.aliases == {"a": 0, "left": 0, "b": 1, "c": 2}
    assert multi.get_by_index(0).data == {"x": "a", "w": "a", "n": {"p": "a", "q": "a"}}
    assert multi.get_by_index(1).data == {"x": "b", "y": "b", "n": {"q": "b", "r": "b"}}
    assert multi.get_by_index(0).task_history == ["ta"]
    # writing to the flat copy does not reach the original
    flat["x"] = "changed"
    flat["n"]["p"] = "changed"
    assert multi.get_by_index(1)["x"] == "b"
    assert multi.get_by_index(0)["n"]["p"] == "a"


def test_flatten_in_place_returns_same_object() -> None:
    """flatten() with in_place=True modifies and returns the same object."""
    multi = _three()
    assert multi.flatten(in_place=True) is multi
    assert len(multi) == 1


def test_flatten_keeps_a_value_that_cannot_be_deep_copied() -> None:
    """A threading.Lock in the data survives flatten as the very same object."""
    lock = threading.Lock()
    with pytest.raises(TypeError):
        copy.deepcopy(lock)
    multi = MultiTaskData()
    multi.add_dataset("a", TaskData({"lock": lock, "n": {"inner": lock}}))
    multi.add_dataset("b", TaskData({"other": 1}))
    flat = multi.flatten(in_place=False)
    assert flat["lock"] is lock
    assert flat["n"]["inner"] is lock
    multi.flatten()
    assert multi["lock"] is lock
    assert multi["other"] == 1


def test_flatten_of_single_dataset_keeps_data_and_history() -> None:
    """Flattening one dataset keeps its data and history unchanged."""
    multi = MultiTaskData()
    multi.add_dataset("t", TaskData({"k": {"v": 1}}, task_history=["s", "t"]))
    multi.flatten()
    assert multi["k"] == {"v": 1}
    assert multi.default_dataset.task_history == ["s", "t"]
