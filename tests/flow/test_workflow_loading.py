"""Loading workflow files from directories (LIGHTFLOW.md §1.1): names, errors, discovery."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from triggerd.flow.dag import Dag
from triggerd.flow.exceptions import WorkflowDefinitionError, WorkflowImportError
from triggerd.flow.workflow import Workflow, discover_workflows, load_workflow


@pytest.fixture(autouse=True)
def _restore_import_state():
    """Undo what loading does to sys.path and remove the workflow modules it registered."""
    saved_path = list(sys.path)
    before = set(sys.modules)
    yield
    sys.path[:] = saved_path
    for name in set(sys.modules) - before:
        if name.startswith("_triggerd_workflow_") or name.startswith("tflhelper_"):
            del sys.modules[name]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


SIMPLE = '''
"""A simple workflow.

It has two DAGs and two parameter lists.
"""
from triggerd.flow import Dag, Option, Parameters, PythonTask

first_params = Parameters([Option("a", type=int)])
second_params = Parameters([Option("b", default="x"), Option("c", default=1, type=int)])

t1 = PythonTask("t1")
t2 = PythonTask("t2")
main = Dag("main")
main.define({t1: [t2]})

side = Dag("side", autostart=False)
side.define({PythonTask("solo"): None})
'''


def test_load_by_name_collects_dags_and_merges_parameters(tmp_path: Path) -> None:
    """load_workflow finds name.py, collects every Dag by name and merges every Parameters list."""
    path = _write(tmp_path / "tflsimple.py", SIMPLE)
    wf = load_workflow("tflsimple", [tmp_path])
    assert isinstance(wf, Workflow)
    assert wf.name == "tflsimple"
    assert wf.path == path.resolve()
    assert set(wf.dags) == {"main", "side"}
    assert all(isinstance(d, Dag) for d in wf.dags.values())
    assert all(d.workflow_name == "tflsimple" for d in wf.dags.values())
    assert [o.name for o in wf.parameters] == ["a", "b", "c"]
    assert wf.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    shapes = wf.shapes()
    assert set(shapes["main"].tasks) == {"t1", "t2"}
    assert shapes["side"].autostart is False
    assert wf.task("main:3", "t2") is wf.dags["main"].task("t2")


def test_docstring_and_summary(tmp_path: Path) -> None:
    """docstring is the module's cleaned docstring and summary its first line."""
    _write(tmp_path / "tfldoc.py", SIMPLE)
    wf = load_workflow("tfldoc", [tmp_path])
    assert wf.docstring == "A simple workflow.\n\nIt has two DAGs and two parameter lists."
    assert wf.summary == "A simple workflow."


def test_no_docstring_gives_none_and_empty_summary(tmp_path: Path) -> None:
    """A workflow without docstring has docstring None and an empty summary."""
    _write(tmp_path / "tflnodoc.py", "from triggerd.flow import Dag\n")
    wf = load_workflow("tflnodoc", [tmp_path])
    assert wf.docstring is None
    assert wf.summary == ""
    assert wf.dags == {}


def test_load_dotted_name_from_subdirectory(tmp_path: Path) -> None:
    """A dotted name sub.name loads sub/name.py."""
    path = _write(tmp_path / "tflsub" / "inner.py", SIMPLE)
    wf = load_workflow("tflsub.inner", [tmp_path])
    assert wf.name == "tflsub.inner"
    assert wf.path == path.resolve()
    assert set(wf.dags) == {"main", "side"}


def test_first_directory_with_the_file_wins(tmp_path: Path) -> None:
    """With several directories the first that has the file is used."""
    _write(tmp_path / "one" / "tflboth.py", '"""one"""\n')
    _write(tmp_path / "two" / "tflboth.py", '"""two"""\n')
    _write(tmp_path / "two" / "tflonly2.py", '"""only two"""\n')
    dirs = [tmp_path / "missing", tmp_path / "one", tmp_path / "two"]
    assert load_workflow("tflboth", dirs).docstring == "one"
    assert load_workflow("tflonly2", dirs).docstring == "only two"


def test_stdlib_named_workflow_does_not_shadow_stdlib(tmp_path: Path) -> None:
    """A workflow file called json.py loads as the workflow and the stdlib json stays importable."""
    _write(
        tmp_path / "json.py",
        '''
        """Named like the stdlib."""
        from triggerd.flow import Dag, PythonTask
        d = Dag("jd")
        d.define({PythonTask("t"): None})
        def dumps(*args, **kwargs):
            raise AssertionError("the workflow shadowed json")
        ''',
    )
    wf = load_workflow("json", [tmp_path])
    assert set(wf.dags) == {"jd"}
    assert wf.module is not sys.modules["json"]

    import json as json_again

    assert json_again is json
    assert json_again.dumps({"a": 1}) == '{"a": 1}'
    # a fresh search of sys.path still finds the stdlib json first
    spec = importlib.machinery.PathFinder.find_spec("json")
    assert spec is not None and spec.origin is not None
    assert not Path(spec.origin).is_relative_to(tmp_path)


@pytest.mark.parametrize("name", ["../x", "1abc", "a-b", "", "a..b", ".a", "a.", "a/b", "a b"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    """A name that is not a dotted Python module name raises WorkflowImportError."""
    _write(tmp_path / "x.py", "")
    with pytest.raises(WorkflowImportError, match="not a valid workflow name"):
        load_workflow(name, [tmp_path / "sub"])


def test_missing_workflow_lists_searched_dirs(tmp_path: Path) -> None:
    """A workflow found in no directory raises WorkflowImportError listing every
    searched directory."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    with pytest.raises(WorkflowImportError) as info:
        load_workflow("tflnothere", [first, second])
    message = str(info.value)
    assert "tflnothere" in message
    assert str(first) in message
    assert str(second) in message


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A syntax error raises WorkflowImportError with 'file, line N'."""
    path = _write(tmp_path / "tflsyntax.py", "x = 1\ny = 2\ndef broken(:\n    pass\n")
    with pytest.raises(WorkflowImportError) as info:
        load_workflow("tflsyntax", [tmp_path])
    assert f"{path.resolve()}, line 3" in str(info.value)
    assert "SyntaxError" in str(info.value)


def test_exception_at_import_names_file_and_line(tmp_path: Path) -> None:
    """A module raising at import gives WorkflowImportError naming the file, line and error."""
    path = _write(tmp_path / "tflraise.py", "import os\n\nraise RuntimeError('boom here')\n")
    with pytest.raises(WorkflowImportError) as info:
        load_workflow("tflraise", [tmp_path])
    message = str(info.value)
    assert f"{path.resolve()}, line 3" in message
    assert "RuntimeError" in message and "boom here" in message
    assert "_triggerd_workflow_tflraise" not in sys.modules


def test_exception_inside_function_names_innermost_line_of_file(tmp_path: Path) -> None:
    """An exception raised in a function of the workflow names the line that raised."""
    path = _write(
        tmp_path / "tflinner.py",
        "def helper():\n    return 1 / 0\n\nhelper()\n",
    )
    with pytest.raises(WorkflowImportError) as info:
        load_workflow("tflinner", [tmp_path])
    assert f"{path.resolve()}, line 2" in str(info.value)
    assert "ZeroDivisionError" in str(info.value)


def test_sys_exit_at_import_is_an_import_error_not_system_exit(tmp_path: Path) -> None:
    """sys.exit() in a workflow file raises WorkflowImportError naming file and
    line, never SystemExit."""
    path = _write(tmp_path / "tflexit.py", "import sys\nsys.exit(3)\n")
    try:
        with pytest.raises(WorkflowImportError) as info:
            load_workflow("tflexit", [tmp_path])
    except SystemExit:  # pragma: no cover - the bug this test guards against
        pytest.fail("SystemExit escaped load_workflow")
    message = str(info.value)
    assert f"{path.resolve()}, line 2" in message
    assert "SystemExit" in message


def test_cycle_in_workflow_is_a_definition_error_naming_file(tmp_path: Path) -> None:
    """A DAG with a cycle defined at import raises WorkflowDefinitionError naming the file."""
    path = _write(
        tmp_path / "tflcycle.py",
        """
        from triggerd.flow import Dag, PythonTask
        a = PythonTask("a")
        b = PythonTask("b")
        d = Dag("loop")
        d.define({a: [b], b: [a]})
        """,
    )
    with pytest.raises(WorkflowDefinitionError) as info:
        load_workflow("tflcycle", [tmp_path])
    assert str(path.resolve()) in str(info.value)
    assert "loop" in str(info.value)


def test_a_worker_loads_without_checking_what_the_submitter_checked(tmp_path: Path) -> None:
    """validate=False (workers, which run only files whose hash the submitter validated)
    skips the DAG checks and never imports networkx; the tasks are found all the same,
    and the checks apply again to the next load with validation."""
    _write(
        tmp_path / "tfltrusted.py",
        """
        from triggerd.flow import Dag, PythonTask
        a = PythonTask("a")
        b = PythonTask("b")
        d = Dag("loop")
        d.define({a: {b: "slot"}, b: [a]})
        """,
    )
    code = (
        "import sys; from pathlib import Path; from triggerd.flow.workflow import load_workflow; "
        f"w = load_workflow('tfltrusted', [Path({str(tmp_path)!r})], validate=False); "
        "print(w.task('loop', 'b').name, w.task('loop', 'a').name, 'networkx' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["b", "a", "False"]
    with pytest.raises(WorkflowDefinitionError, match="loop"):
        load_workflow("tfltrusted", [tmp_path])


def test_duplicate_task_names_refused_at_load(tmp_path: Path) -> None:
    """Two different tasks with one name in a DAG make load_workflow raise
    WorkflowDefinitionError."""
    _write(
        tmp_path / "tfldup.py",
        """
        from triggerd.flow import Dag, PythonTask
        d = Dag("dup")
        d.define({PythonTask("root"): [PythonTask("same"), PythonTask("same")]})
        """,
    )
    with pytest.raises(WorkflowDefinitionError, match="same"):
        load_workflow("tfldup", [tmp_path])


def test_helper_module_next_to_workflow_is_importable(tmp_path: Path) -> None:
    """A workflow can import a helper module that sits in its directory, as with Lightflow."""
    helper = f"tflhelper_{uuid.uuid4().hex}"
    _write(tmp_path / f"{helper}.py", "VALUE = 42\n")
    _write(
        tmp_path / "tfluses.py",
        f"""
        from {helper} import VALUE
        from triggerd.flow import Dag, PythonTask
        d = Dag("d")
        d.define({{PythonTask("t" + str(VALUE)): None}})
        """,
    )
    wf = load_workflow("tfluses", [tmp_path])
    assert set(wf.dags["d"].shape().tasks) == {"t42"}
    assert wf.module.VALUE == 42


def test_helper_module_next_to_dotted_workflow_is_importable(tmp_path: Path) -> None:
    """A workflow sub.name can import a helper module from the workflows root directory."""
    helper = f"tflhelper_{uuid.uuid4().hex}"
    _write(tmp_path / f"{helper}.py", "VALUE = 7\n")
    _write(tmp_path / "tflpkg" / "wf.py", f"from {helper} import VALUE\n")
    wf = load_workflow("tflpkg.wf", [tmp_path])
    assert wf.module.VALUE == 7


def test_reload_picks_up_changed_file(tmp_path: Path) -> None:
    """Loading a workflow again re-reads the file (Lightflow re-imported on every load)."""
    path = _write(tmp_path / "tflchange.py", '"""v1"""\n')
    first = load_workflow("tflchange", [tmp_path])
    path.write_text('"""v2"""\n')
    second = load_workflow("tflchange", [tmp_path])
    assert (first.docstring, second.docstring) == ("v1", "v2")
    assert first.content_hash != second.content_hash


def test_discover_reports_broken_file_and_loads_the_good_ones(tmp_path: Path) -> None:
    """discover_workflows yields (name, error) for a broken file and (name,
    Workflow) for good ones."""
    _write(tmp_path / "tflgood.py", SIMPLE)
    _write(tmp_path / "tflbroken.py", "raise RuntimeError('nope')\n")
    _write(tmp_path / "tflsyntaxbad.py", "def (:\n")
    _write(tmp_path / "tflexits.py", "import sys\nsys.exit(1)\n")
    _write(tmp_path / "tfldir" / "nested.py", '"""nested"""\n')
    found = dict(discover_workflows([tmp_path]))
    assert set(found) == {"tflgood", "tflbroken", "tflsyntaxbad", "tflexits", "tfldir.nested"}
    assert isinstance(found["tflgood"], Workflow)
    assert set(found["tflgood"].dags) == {"main", "side"}
    assert isinstance(found["tfldir.nested"], Workflow)
    for name in ("tflbroken", "tflsyntaxbad", "tflexits"):
        assert isinstance(found[name], WorkflowImportError), name
    assert "nope" in str(found["tflbroken"])


def test_discover_skips_underscore_files_and_dirs(tmp_path: Path) -> None:
    """discover_workflows skips files and directories whose name starts with '_'."""
    _write(tmp_path / "tflvisible.py", "")
    _write(tmp_path / "_private.py", "raise RuntimeError('must not be imported')\n")
    _write(tmp_path / "__init__.py", "")
    _write(tmp_path / "_lib" / "helper.py", "raise RuntimeError('must not be imported')\n")
    _write(tmp_path / "tflpk" / "__init__.py", "")
    _write(tmp_path / "tflpk" / "_hidden.py", "")
    found = dict(discover_workflows([tmp_path]))
    assert set(found) == {"tflvisible"}


def test_discover_first_directory_wins_and_missing_dirs_are_ignored(tmp_path: Path) -> None:
    """A name in two directories is reported once, from the first; missing
    directories are skipped."""
    _write(tmp_path / "a" / "tflsame.py", '"""from a"""\n')
    _write(tmp_path / "b" / "tflsame.py", '"""from b"""\n')
    results = list(discover_workflows([tmp_path / "nope", tmp_path / "a", tmp_path / "b"]))
    assert [name for name, _ in results] == ["tflsame"]
    assert results[0][1].docstring == "from a"
