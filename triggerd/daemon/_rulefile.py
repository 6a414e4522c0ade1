"""Reading ``triggers/*.toml``: validated rule specs, or every problem with file, line and key.

The specs are plain keyword dicts for :class:`~triggerd.daemon.rules.Rule` (``files`` and
``limits`` as dicts for ``FileRule`` and ``Limits``); building them is left to
``rules.py`` so this module knows TOML and the rule file format, nothing else.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triggerd.config import describe_toml_value, dotted_key
from triggerd.durations import parse_duration, parse_rate
from triggerd.errors import ConfigError
from triggerd.sources.pv_conditions import CONDITION_KEYS, Condition
from triggerd.sources.watch import COMPLETE_MODES

from ._render import param_templates

__all__ = ["FILES_KEYS", "LIMITS_KEYS", "RULE_KEYS", "RuleProblem", "RulesError", "read_rule_specs"]

RULE_KEYS = ("name", "workflow", "params", "limits", "enabled", "description", "files", "pv")
FILES_KEYS = (
    "roots",
    "pattern",
    "glob",
    "recursive",
    "ignore",
    "complete",
    "settle",
    "poll",
    "marker_suffix",
    "catch_up",
    "follow_symlinks",
)
LIMITS_KEYS = ("concurrent", "debounce", "batch", "batch_window", "rate")
CATCH_UP_MODES = ("missed", "none", "all")

_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_RULE_HEADER = re.compile(r"\s*\[\[\s*rule\s*\]\]")
_HEADER = re.compile(r"\s*\[")
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_REQUIRED: Any = object()
_BAD: Any = object()  # a value that was refused (and reported)


@dataclass(frozen=True)
class RuleProblem:
    """One problem of a rule file; ``str()`` is the line the user reads."""

    source: str
    message: str
    key: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = [
            self.source,
            f"line {self.line}" if self.line else "",
            f"key '{self.key}'" if self.key else "",
        ]
        return ": ".join([*(w for w in where if w), self.message])


class RulesError(ConfigError):
    """The trigger rules have problems; ``problems`` lists each, ``str()`` shows them all."""

    def __init__(self, problems: Iterable[RuleProblem]):
        self.problems = tuple(problems)
        only = self.problems[0] if len(self.problems) == 1 else None
        if only is not None:
            text = str(only)
        else:
            text = f"{len(self.problems)} problems in trigger rules:\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(text)
        sources = {p.source for p in self.problems}
        self.source = sources.pop() if len(sources) == 1 else None
        self.key = only.key if only is not None else None
        self.reason = only.message if only is not None else text


# -- value checks: return the value to keep, or raise ValueError("expected ...") ----------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _rule_name(value: Any) -> str:
    if not isinstance(value, str) or not _RULE_NAME.fullmatch(value):
        raise ValueError("expected a rule name of letters, digits, '_', '.' and '-'")
    return value


def _module(value: Any) -> str:
    if not isinstance(value, str) or not _MODULE.fullmatch(value):
        raise ValueError("expected a workflow module name like 'squashfs_compress'")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a whole number >= 1")
    return value


# [rule.pv] keys beside the condition's own (pv_conditions.CONDITION_KEYS)
PV_KEYS = ("name", "snapshot", "snapshot_defaults", "wait_for_file", "file_timeout", "file_settle")


def _pv(f: Any, table: Mapping[str, Any], loc: tuple[str | int, ...]) -> Any:
    """The ``[rule.pv]`` table as ``PvRule`` keywords: the PV name and condition checked
    (as the PV source will parse them), snapshot PVs and their defaults, the file to wait
    for; every problem reported with its key."""
    pv = f.get(table, loc, "pv", _table)
    if pv is None or pv is _BAD:
        return pv
    where = (*loc, "pv")
    before = len(f.problems)
    for key in sorted(set(pv) - CONDITION_KEYS - set(PV_KEYS)):
        f.problem(
            (*where, key),
            f"unknown key (a PV rule takes {', '.join(sorted(CONDITION_KEYS | set(PV_KEYS)))})",
        )
    spec = {
        "name": f.get(pv, where, "name", _pv_name, _REQUIRED),
        "snapshot": f.get(pv, where, "snapshot", _pv_names, ()),
        "snapshot_defaults": f.get(pv, where, "snapshot_defaults", _table, {}),
        "wait_for_file": f.get(pv, where, "wait_for_file", _string),
        "file_timeout": f.get(pv, where, "file_timeout", _positive_duration, 60.0),
        "file_settle": f.get(pv, where, "file_settle", parse_duration, 0.5),
    }
    if spec["snapshot"] is not _BAD and spec["snapshot_defaults"] is not _BAD:
        for name in sorted(set(spec["snapshot_defaults"]) - set(spec["snapshot"])):
            f.problem(
                (*where, "snapshot_defaults", name),
                "a default for a PV that is not in snapshot = [...]",
            )
    try:
        spec["condition"] = Condition.parse(
            {k: v for k, v in pv.items() if k in CONDITION_KEYS}, where=f.source
        )
    except ConfigError as exc:
        f.problem((*where, exc.key) if exc.key else where, exc.reason)
    return spec if len(f.problems) == before else _BAD


def _no_index_unless_counting(
    f: Any,
    pv: Mapping[str, Any],
    templates: Mapping[tuple[str, str], Any],
    loc: tuple[str | int, ...],
) -> None:
    """``{index}`` is the counter value of a ``when = "increment"`` rule's run; elsewhere it
    would always be empty."""
    if pv["condition"].kind == "increment":
        return
    for key, template in templates.items():
        if any(p.name == "index" for p in template.placeholders):
            f.problem(
                (*loc, *key),
                "'{index}' is the counter value of a when = \"increment\" rule; "
                "this rule does not count",
            )


def _pv_names(value: Any) -> tuple[str, ...]:
    names = tuple(_pv_name(v) for v in value) if isinstance(value, list) else None
    if not names:
        raise ValueError("expected a list of PV names, e.g. [\"BL1:DET:FullFileName_RBV\"]")
    if len(set(names)) != len(names):
        raise ValueError("expected each PV once")
    return names


def _pv_name(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError("expected a PV name without spaces, e.g. \"BL1:DET:Capture_RBV\"")
    return value


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a table")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of non-empty strings")
    return tuple(value)


def _roots(value: Any) -> tuple[str, ...]:
    roots = _strings(value)
    if not roots:
        raise ValueError("expected at least one directory")
    return roots  # made absolute against the rule file's base (_files)


def _regex(value: Any) -> re.Pattern[str]:
    try:
        return re.compile(_string(value))
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc.msg} at position {exc.pos}") from None


def _glob(value: Any) -> str:
    glob = _string(value)
    if not glob or glob.startswith("/") or "" in glob.split("/"):
        raise ValueError("expected a glob relative to the roots, like '**/*.h5'")
    return glob


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError("expected one of " + ", ".join(repr(o) for o in options))
        return value

    return check


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("expected a duration > 0, like '2s'")
    return seconds


# -- one file ----------------------------------------------------------------------------


class _RuleFile:
    """One rule file being read: its text (for line numbers) and its problems."""

    def __init__(self, source: str, text: str = "", base: str = ""):
        self.source = source
        self.base = base or os.getcwd()  # what relative roots are relative to
        self.lines = text.splitlines()
        self.headers = [n for n, line in enumerate(self.lines) if _RULE_HEADER.match(line)]
        self.problems: list[RuleProblem] = []

    def problem(self, loc: tuple[str | int, ...], message: str, line: int | None = None) -> None:
        key = dotted_key(loc) if loc else None
        self.problems.append(RuleProblem(self.source, message, key, line or self.line_of(loc)))

    def get(
        self,
        table: Mapping[str, Any],
        loc: tuple[str | int, ...],
        key: str,
        check: Callable[[Any], Any],
        default: Any = None,
    ) -> Any:
        if key not in table:
            if default is _REQUIRED:
                self.problem((*loc, key), "required key is missing", self.line_of(loc))
                return _BAD
            return default
        try:
            return check(table[key])
        except ValueError as exc:
            self.problem((*loc, key), f"{exc}, got {describe_toml_value(table[key])}")
            return _BAD

    def unknown(
        self, table: Mapping[str, Any], loc: tuple[str | int, ...], allowed: tuple[str, ...]
    ) -> None:
        for key in table:
            if key not in allowed:
                self.problem((*loc, key), f"unknown key (allowed: {', '.join(allowed)})")

    # Best effort: the line of `key =` (or of a [rule.x] header) within the rule's table.
    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        if len(loc) < 2 or loc[0] != "rule" or not isinstance(loc[1], int):
            return None
        if loc[1] >= len(self.headers):
            return None
        start = self.headers[loc[1]]
        end = self.headers[loc[1] + 1] if loc[1] + 1 < len(self.headers) else len(self.lines)
        rest = [p for p in loc[2:] if isinstance(p, str)]
        sub = (
            self._find(start + 1, end, rf"^\s*\[\s*rule\s*\.\s*{re.escape(rest[0])}\s*\]")
            if rest
            else None
        )
        if sub is not None:
            start, rest = sub, rest[1:]
        end = next((n for n in range(start + 1, end) if _HEADER.match(self.lines[n])), end)
        line = start
        for part in rest:
            found = self._find(line, end, rf'(?:^|[\s{{,.])"?{re.escape(part)}"?\s*=')
            if found is None:
                break
            line = found
        return line + 1

    def _find(self, start: int, end: int, pattern: str) -> int | None:
        for n in range(start, end):
            hit = re.search(pattern, self.lines[n])
            if hit and "#" not in self.lines[n][: hit.start()]:
                return n
        return None


def _read(path: Path, base: Path | None = None) -> tuple[_RuleFile, dict[str, Any] | None]:
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problem = _RuleFile(source)
        problem.problem((), f"cannot read: {exc.strerror}")
        return problem, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = _RuleFile(source)
        problem.problem((), f"not UTF-8 text: {exc.reason}", raw[: exc.start].count(b"\n") + 1)
        return problem, None
    rule_file = _RuleFile(source, text, str(base) if base is not None else "")
    try:
        return rule_file, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_WHERE.search(message)
        line = int(where[1]) if where else None
        if where:
            message = f"{message[: where.start()]} (column {where[2]})"
        rule_file.problem((), f"invalid TOML: {message}", line)
        return rule_file, None


def _rules_of(rule_file: _RuleFile, data: dict[str, Any]) -> list[dict[str, Any] | None]:
    """A spec per [[rule]] table (None for a rule with problems), in file order."""
    rule_file.unknown(data, (), ("rule",))
    tables = data.get("rule")
    if tables is None:
        rule_file.problem((), "no [[rule]] tables (each rule starts with a line [[rule]])")
        return []
    if not isinstance(tables, list):
        rule_file.problem(
            ("rule",),
            f"expected [[rule]] tables (double brackets), got {describe_toml_value(tables)}",
        )
        return []
    return [_rule(rule_file, table, index) for index, table in enumerate(tables)]


def _rule(f: _RuleFile, table: Any, index: int) -> dict[str, Any] | None:
    loc: tuple[str | int, ...] = ("rule", index)
    before = len(f.problems)
    if not isinstance(table, dict):
        f.problem(loc, f"expected a [[rule]] table, got {describe_toml_value(table)}")
        return None
    f.unknown(table, loc, RULE_KEYS)
    spec = {
        "name": f.get(table, loc, "name", _rule_name, _REQUIRED),
        "workflow": f.get(table, loc, "workflow", _module, _REQUIRED),
        "params": f.get(table, loc, "params", _table, {}),
        "limits": _limits(f, table, loc),
        "files": _files(f, table, loc),
        "pv": _pv(f, table, loc),
        "enabled": f.get(table, loc, "enabled", _bool, True),
        "description": f.get(table, loc, "description", _string, ""),
        "source": f.source,
        "index": index,
    }
    files, pv = spec["files"], spec["pv"]
    if files is not None and pv is not None:
        f.problem(loc, "a rule watches files ([rule.files]) or a PV ([rule.pv]), not both")
    if pv is not None and files is None and isinstance(spec["limits"], dict):
        for key in ("debounce", "batch", "batch_window"):
            if spec["limits"].get(key) not in (None, _BAD):
                f.problem(
                    (*loc, "limits", key),
                    "not for a PV rule (its [rule.pv] table takes debounce and settle)",
                )
    pvs = (pv["name"], *pv["snapshot"]) if isinstance(pv, dict) else None if pv is _BAD else ()
    if spec["params"] is not _BAD:
        kind = "files" if files is not None else ("pv" if pv is not None else "manual")
        pattern = files.get("pattern") if isinstance(files, dict) else None
        broken = files is _BAD or pattern is _BAD
        templates, errors = param_templates(
            spec["params"], kind, None if broken else pattern, check_groups=not broken, pvs=pvs
        )
        for key, message in errors:
            f.problem((*loc, *key.split(".", 1)), message)
        if isinstance(pv, dict):
            _no_index_unless_counting(f, pv, {("params", k): t for k, t in templates.items()}, loc)
    if isinstance(pv, dict) and pv["wait_for_file"] is not None:
        templates, errors = param_templates({"wait_for_file": pv["wait_for_file"]}, "pv", pvs=pvs)
        for _, message in errors:
            f.problem((*loc, "pv", "wait_for_file"), message)
        _no_index_unless_counting(f, pv, {("pv", k): t for k, t in templates.items()}, loc)
    return spec if len(f.problems) == before else None


def _limits(f: _RuleFile, table: Mapping[str, Any], loc: tuple[str | int, ...]) -> Any:
    limits = f.get(table, loc, "limits", _table, {})
    if limits is _BAD:
        return _BAD
    loc = (*loc, "limits")
    f.unknown(limits, loc, LIMITS_KEYS)
    return {
        "concurrent": f.get(limits, loc, "concurrent", _count),
        "debounce": f.get(limits, loc, "debounce", parse_duration),
        "batch": f.get(limits, loc, "batch", _count),
        "batch_window": f.get(limits, loc, "batch_window", _positive_duration),
        "rate": f.get(limits, loc, "rate", parse_rate),
    }


def _files(f: _RuleFile, table: Mapping[str, Any], loc: tuple[str | int, ...]) -> Any:
    files = f.get(table, loc, "files", _table)
    if files is None or files is _BAD:
        return files
    loc = (*loc, "files")
    f.unknown(files, loc, FILES_KEYS)
    if "pattern" in files and "glob" in files:
        f.problem(loc, "give pattern (a regex) or glob, not both")
    roots = f.get(files, loc, "roots", _roots, _REQUIRED)
    # like settings paths: against the config's directory; textual, no links resolved
    if isinstance(roots, tuple):
        roots = tuple(os.path.normpath(os.path.join(f.base, os.path.expanduser(r))) for r in roots)
    return {
        "roots": roots,
        "pattern": f.get(files, loc, "pattern", _regex),
        "glob": f.get(files, loc, "glob", _glob),
        "recursive": f.get(files, loc, "recursive", _bool, True),
        "ignore": f.get(files, loc, "ignore", _strings, ()),
        "complete": f.get(files, loc, "complete", _choice(*COMPLETE_MODES), "closed"),
        "settle": f.get(files, loc, "settle", _positive_duration, 2.0),
        "poll": f.get(files, loc, "poll", _positive_duration, 1.0),
        "marker_suffix": f.get(files, loc, "marker_suffix", _marker, ".done"),
        "catch_up": f.get(files, loc, "catch_up", _choice(*CATCH_UP_MODES), "missed"),
        "follow_symlinks": f.get(files, loc, "follow_symlinks", _bool, False),
    }


def _marker(value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError("expected a file name suffix like '.done'")
    return value


# -- all files ---------------------------------------------------------------------------


def read_rule_specs(
    dirs: Iterable[Path],
    known_workflows: Callable[[str], bool] | None = None,
    base: Path | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Specs of every rule in ``*.toml`` of ``dirs`` and the files read; RulesError
    otherwise. Relative roots are relative to ``base`` (default: the working directory)."""
    read: list[_RuleFile] = []
    specs: list[dict[str, Any]] = []
    named: dict[str, tuple[str, int]] = {}
    workflows: dict[str, bool] = {}
    for path in _rule_paths(dirs, read):
        rule_file, data = _read(path, base)
        read.append(rule_file)
        if data is None:
            continue
        for index, spec in enumerate(_rules_of(rule_file, data)):
            table = data["rule"][index]
            name, workflow = table.get("name"), table.get("workflow")
            loc = ("rule", index)
            if isinstance(name, str) and _RULE_NAME.fullmatch(name):
                if name in named:
                    other, other_index = named[name]
                    where = "earlier in this file" if other == rule_file.source else f"in {other}"
                    rule_file.problem(
                        (*loc, "name"),
                        f"rule name '{name}' is already used by rule[{other_index}] {where}",
                    )
                else:
                    named[name] = (rule_file.source, index)
            if (
                known_workflows is not None
                and isinstance(workflow, str)
                and _MODULE.fullmatch(workflow)
            ):
                if workflow not in workflows:
                    workflows[workflow] = bool(known_workflows(workflow))
                if not workflows[workflow]:
                    rule_file.problem(
                        (*loc, "workflow"),
                        f"rule '{name}': workflow '{workflow}' not found in workflows dirs",
                    )
                    spec = None
            if spec is not None:
                specs.append(spec)
    problems = [p for f in read for p in sorted(f.problems, key=lambda p: p.line or 0)]
    if problems:
        raise RulesError(problems)
    return specs, [f.source for f in read]


def _rule_paths(dirs: Iterable[Path], read: list[_RuleFile]) -> list[Path]:
    paths: list[Path] = []
    for directory in dirs:
        directory = Path(directory).expanduser().absolute()
        if not directory.exists():
            continue  # no rules there (yet)
        if not directory.is_dir():
            problem = _RuleFile(str(directory))
            problem.problem((), "not a directory (a triggers directory holds *.toml rule files)")
            read.append(problem)
            continue
        try:
            found = sorted(
                p for p in directory.glob("*.toml") if not p.name.startswith(".") and p.is_file()
            )
        except OSError as exc:
            problem = _RuleFile(str(directory))
            problem.problem((), f"cannot list: {exc.strerror}")
            read.append(problem)
            continue
        paths.extend(p for p in found if p not in paths)
    return paths
