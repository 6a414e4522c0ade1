"""Action (branching limit) and Parameters/Option (LIGHTFLOW.md §1.9, §1.11)."""

from __future__ import annotations

import pytest

from triggerd.flow.action import Action
from triggerd.flow.exceptions import WorkflowArgumentError
from triggerd.flow.parameters import Option, Parameters
from triggerd.flow.python_task import PythonTask
from triggerd.flow.task_data import MultiTaskData

# --------------------------------------------------------------------------- Action


def test_action_without_limit_runs_all_successors() -> None:
    """Action(data) has limit None and limit_names() None: every successor runs."""
    data = MultiTaskData()
    action = Action(data)
    assert action.data is data
    assert action.limit is None
    assert action.limit_names() is None


def test_action_empty_limit_skips_all_successors() -> None:
    """Action(data, limit=[]) keeps an empty limit, distinct from None."""
    action = Action(None, limit=[])
    assert action.limit == []
    assert action.limit_names() == ()


def test_action_limit_with_task_objects_and_names() -> None:
    """A limit may mix task objects and names; limit_names() gives names in order."""
    first = PythonTask("first")
    action = Action(None, limit=[first, "second"])
    assert action.limit == [first, "second"]
    assert action.limit_names() == ("first", "second")


def test_action_limit_accepts_any_iterable_and_is_a_list() -> None:
    """A tuple or generator limit is stored as a list."""
    assert Action(None, limit=("a", "b")).limit == ["a", "b"]
    assert Action(None, limit=(n for n in ["c"])).limit == ["c"]


def test_action_copy_is_shallow() -> None:
    """copy() returns a new Action with the same data object and an equal limit."""
    data = MultiTaskData()
    original = Action(data, limit=["x"])
    clone = original.copy()
    assert clone is not original
    assert clone.data is data
    assert clone.limit == ["x"]


# --------------------------------------------------------------------------- Option


def test_option_properties_and_required() -> None:
    """Option keeps name/default/help/type; default None means required."""
    opt = Option("n", default=3, help="how many", type=int)
    assert (opt.name, opt.default, opt.help, opt.type) == ("n", 3, "how many", int)
    assert not opt.required
    plain = Option("s")
    assert plain.type is str and plain.default is None and plain.help is None
    assert plain.required


def test_option_convert_str() -> None:
    """type=str converts any value with str()."""
    assert Option("s").convert(5) == "5"
    assert Option("s").convert("text") == "text"


def test_option_convert_int_and_float() -> None:
    """type=int and type=float cast strings and numbers."""
    assert Option("i", type=int).convert("42") == 42
    assert Option("i", type=int).convert(7) == 7
    assert Option("f", type=float).convert("2.5") == 2.5
    assert Option("f", type=float).convert(3) == 3.0
    assert isinstance(Option("f", type=float).convert("1"), float)


@pytest.mark.parametrize(
    ("kind", "value"), [(int, "abc"), (int, "3.5"), (float, "x1"), (int, None)]
)
def test_option_convert_number_error_names_option_and_type(kind: type, value: object) -> None:
    """A value that cannot be cast raises WorkflowArgumentError naming the option and the type."""
    with pytest.raises(WorkflowArgumentError) as info:
        Option("count", type=kind).convert(value)
    message = str(info.value)
    assert "count" in message
    assert kind.__name__ in message


@pytest.mark.parametrize("text", ["true", "TRUE", "True", "yes", "YES", "Yes", "y", "Y", "1"])
def test_option_convert_bool_true_words(text: str) -> None:
    """true/yes/y/1 in any case convert to True."""
    assert Option("b", type=bool).convert(text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "False", "no", "NO", "No", "n", "N", "0"])
def test_option_convert_bool_false_words(text: str) -> None:
    """false/no/n/0 in any case convert to False."""
    assert Option("b", type=bool).convert(text) is False


def test_option_convert_bool_passes_bools_through() -> None:
    """A bool value is returned unchanged for type=bool."""
    assert Option("b", type=bool).convert(True) is True
    assert Option("b", type=bool).convert(False) is False


@pytest.mark.parametrize("text", ["maybe", "", "2", "tru"])
def test_option_convert_bool_error_names_option_and_type(text: str) -> None:
    """An unrecognised boolean word raises WorkflowArgumentError naming the option and bool."""
    with pytest.raises(WorkflowArgumentError) as info:
        Option("flag", type=bool).convert(text)
    message = str(info.value)
    assert "flag" in message
    assert "bool" in message


def test_option_convert_other_types_pass_value_unchanged() -> None:
    """For a type other than str/int/float/bool the value is returned as is."""
    value = ["a", "b"]
    assert Option("l", type=list).convert(value) is value
    assert Option("d", type=dict).convert("raw") == "raw"


# --------------------------------------------------------------------------- Parameters


def _params() -> Parameters:
    return Parameters(
        [
            Option("name"),
            Option("count", type=int),
            Option("ratio", default="0.5", type=float),
            Option("verbose", default="no", type=bool),
        ]
    )


def test_parameters_is_a_list_of_options() -> None:
    """Parameters is a list: it can be extended and iterated."""
    params = _params()
    params.extend(Parameters([Option("extra", default=1)]))
    assert isinstance(params, list)
    assert [o.name for o in params] == ["name", "count", "ratio", "verbose", "extra"]


def test_check_missing_lists_required_options_absent_from_args() -> None:
    """check_missing returns, in declaration order, the required options not in args."""
    params = _params()
    assert params.check_missing({}) == ["name", "count"]
    assert params.check_missing({"count": "1"}) == ["name"]
    assert params.check_missing({"name": "x", "count": "1"}) == []


def test_consolidate_converts_args_and_defaults_and_passes_extras() -> None:
    """consolidate converts given args, adds converted defaults, and passes
    unknown args unconverted."""
    params = _params()
    args = {"name": 12, "count": "3", "unknown": "7"}
    result = params.consolidate(args)
    assert result == {
        "name": "12",
        "count": 3,
        "ratio": 0.5,
        "verbose": False,
        "unknown": "7",
    }
    assert isinstance(result["ratio"], float)
    # the input mapping is not changed
    assert args == {"name": 12, "count": "3", "unknown": "7"}


def test_consolidate_given_value_beats_default() -> None:
    """An argument given for an option with a default is converted and used instead."""
    result = _params().consolidate({"ratio": "2", "verbose": "Yes"})
    assert result["ratio"] == 2.0
    assert result["verbose"] is True


def test_consolidate_leaves_required_absent_options_out() -> None:
    """consolidate does not invent values for required options that are absent."""
    result = _params().consolidate({})
    assert "name" not in result and "count" not in result


def test_consolidate_conversion_error_propagates() -> None:
    """A given argument that cannot be converted raises WorkflowArgumentError."""
    with pytest.raises(WorkflowArgumentError, match="count"):
        _params().consolidate({"name": "x", "count": "many"})


def test_validate_names_every_missing_option_with_its_type() -> None:
    """validate raises WorkflowArgumentError listing every missing required name and its type."""
    with pytest.raises(WorkflowArgumentError) as info:
        _params().validate({})
    message = str(info.value)
    assert "The following parameters are required by the workflow, but are missing" in message
    assert "name (str)" in message
    assert "count (int)" in message
    assert "ratio" not in message and "verbose" not in message


def test_validate_returns_consolidated_args_when_complete() -> None:
    """validate returns the consolidated arguments when nothing required is missing."""
    assert _params().validate({"name": "n", "count": "4"}) == {
        "name": "n",
        "count": 4,
        "ratio": 0.5,
        "verbose": False,
    }
