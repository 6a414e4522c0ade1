"""Loading workflow files: a workflow is a Python module holding Dags and Parameters.

A workflow is found by name in a list of directories (``sub.name`` is ``sub/name.py``),
imported under a private module name (so a workflow called ``json`` cannot shadow the
standard library), and checked: every Dag defined, no cycles, unique task names.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import cloudpickle

from .dag import Dag, DagShape, trusted_definitions
from .exceptions import WorkflowDefinitionError, WorkflowImportError
from .parameters import Parameters
from .task import BaseTask

__all__ = ["Workflow", "discover_workflows", "find_workflow_file", "load_workflow"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass
class Workflow:
    """A loaded workflow file: its DAG blueprints, parameters and identity."""

    name: str
    path: Path
    module: ModuleType = field(repr=False)
    dags: dict[str, Dag]
    parameters: Parameters
    content_hash: str

    @property
    def docstring(self) -> str | None:
        return inspect.getdoc(self.module)

    @property
    def summary(self) -> str:
        """The first line of the docstring, or an empty string."""
        return (self.docstring or "").strip().splitlines()[0] if self.docstring else ""

    def shapes(self) -> dict[str, DagShape]:
        return {name: dag.shape() for name, dag in self.dags.items()}

    def task(self, dag_name: str, task_name: str) -> BaseTask:
        """The task object of blueprint ``dag_name`` (a running name ``main:2`` works too)."""
        blueprint = dag_name.rsplit(":", 1)[0] if dag_name not in self.dags else dag_name
        try:
            return self.dags[blueprint].task(task_name)
        except KeyError:
            raise WorkflowDefinitionError(
                f"workflow '{self.name}' has no task '{task_name}' in DAG '{blueprint}'",
                source=str(self.path),
            ) from None


def find_workflow_file(name: str, dirs: Iterable[Path]) -> Path:
    """The file of workflow ``name`` in the first directory that has it."""
    if not _NAME.match(name):
        raise WorkflowImportError(
            f"'{name}' is not a valid workflow name (a Python module name such as "
            "'simple' or 'mx.compress')"
        )
    relative = Path(*name.split(".")).with_suffix(".py")
    searched = []
    for directory in dirs:
        candidate = Path(directory) / relative
        searched.append(str(directory))
        if candidate.is_file():
            return candidate
    raise WorkflowImportError(
        f"workflow '{name}' not found: no {relative} in {', '.join(searched) or '(no directories)'}"
    )


def _where(path: Path, exc: BaseException) -> str:
    """``file, line N`` of the innermost frame of ``exc`` in ``path``."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path}, line {exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return f"{path}, line {line}" if line else str(path)


def load_workflow(name: str, dirs: Iterable[Path], *, validate: bool = True) -> Workflow:
    """Import and check the workflow ``name``; errors name the file and line.

    ``validate=False`` is for workers: they run a file only if its content hash equals
    the one the submitter loaded, validated, so they skip the DAG checks (and networkx).
    """
    path = find_workflow_file(name, dirs).resolve()
    source = path.read_bytes()
    module_name = "_triggerd_workflow_" + name.replace(".", "__")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    root = str(path.parents[len(name.split(".")) - 1])
    if root not in sys.path:
        # Lightflow put the workflow directories on sys.path; helper modules next to a
        # workflow file keep importing as they did there.
        sys.path.append(root)
    sys.modules[module_name] = module
    try:
        with contextlib.nullcontext() if validate else trusted_definitions():
            spec.loader.exec_module(module)
    except WorkflowDefinitionError as exc:
        sys.modules.pop(module_name, None)
        raise WorkflowDefinitionError(f"{exc.reason}", source=_where(path, exc)) from exc
    except BaseException as exc:  # a workflow file may raise anything, SystemExit included
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise WorkflowImportError(
            f"cannot import workflow '{name}': {type(exc).__name__}: {detail}",
            source=_where(path, exc),
        ) from exc
    # Objects defined in a workflow travel by value, so a receiver never needs to import it.
    cloudpickle.register_pickle_by_value(module)

    dags: dict[str, Dag] = {}
    parameters = Parameters()
    for value in vars(module).values():
        if isinstance(value, Dag):
            if value.name in dags and dags[value.name] is not value:
                raise WorkflowDefinitionError(
                    f"two DAGs are named '{value.name}'", source=str(path)
                )
            dags[value.name] = value
        elif isinstance(value, Parameters):
            parameters.extend(value)
    workflow = Workflow(name, path, module, dags, parameters, hashlib.sha256(source).hexdigest())
    for dag in dags.values():
        dag.workflow_name = name
        if not validate:
            continue
        try:
            dag.shape()
        except WorkflowDefinitionError as exc:
            raise WorkflowDefinitionError(exc.reason, source=str(path)) from exc
    return workflow


def discover_workflows(dirs: Iterable[Path]) -> Iterator[tuple[str, Workflow | Exception]]:
    """Every workflow file in ``dirs`` (first directory wins), loaded or its error.

    A file that fails to load is reported, the others still load.
    """
    seen: set[str] = set()
    for directory in dirs:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.py")):
            parts = path.relative_to(directory).with_suffix("").parts
            if any(p.startswith(("_", ".")) for p in parts):
                continue
            name = ".".join(parts)
            if name in seen or not _NAME.match(name):
                continue
            seen.add(name)
            try:
                yield name, load_workflow(name, [directory])
            except Exception as exc:  # noqa: BLE001 - reported to the caller, never fatal
                yield name, exc
