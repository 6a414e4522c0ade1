"""Trigger rules: which file events start which workflow, with which parameters.

Rules live in ``triggers/*.toml`` as ``[[rule]]`` tables and are loaded, all at once,
by :func:`load_rules`; every problem of every file is reported in one
:class:`RulesError` that names the file, the line and the key. Matching is a pure
function of a rule and a hand-buildable :class:`~triggerd.sources.events.FileEvent`:
no filesystem, no clock. Paths are compared as text, so the daemon passes the same
absolute spelling of a root to its watchers as the rule has after loading.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from triggerd.config import Settings
from triggerd.errors import ConfigError, TriggerdError
from triggerd.flow.workflow import find_workflow_file
from triggerd.sources import relative as path_under
from triggerd.sources.events import FileEvent
from triggerd.sources.pv import PvEvent
from triggerd.sources.pv_conditions import Condition

from ._render import (
    FILE_PLACEHOLDERS,
    Template,
    batch_values,
    file_values,
    param_templates,
    pv_values,
)
from ._rulefile import CATCH_UP_MODES, COMPLETE_MODES, RuleProblem, RulesError, read_rule_specs

__all__ = [
    "load_rules_for",
    "CATCH_UP_MODES",
    "COMPLETE_MODES",
    "PLACEHOLDERS",
    "FileRule",
    "Limits",
    "Match",
    "PvMatch",
    "PvRule",
    "Rule",
    "RuleProblem",
    "RuleSet",
    "RulesError",
    "TriggerFailed",
    "glob_match",
    "load_rules",
]

PLACEHOLDERS: tuple[str, ...] = tuple(FILE_PLACEHOLDERS)


class TriggerFailed(ValueError):
    """A PV rule fired but no run can start: a snapshot PV without a value and without a
    default, or a parameter that cannot be formatted. The message says which; the daemon
    records it as ``trigger.failed``."""


def glob_match(glob: str, parts: Sequence[str]) -> bool:
    """Whether the '/'-separated ``parts`` of a relative path match ``glob`` as a whole.

    Each glob segment is matched against one path segment with :func:`fnmatch.fnmatchcase`
    (``*`` never crosses '/'); a ``**`` segment matches any number of directories,
    none included, so ``**/*.h5`` matches both ``a.h5`` and ``x/y/a.h5``.
    """
    pats = glob.split("/")

    def closure(states: set[int]) -> set[int]:
        out = set(states)
        for i in sorted(states):
            while i < len(pats) and pats[i] == "**":
                i += 1
                out.add(i)
        return out

    states = {0}
    for part in parts:
        states = {
            i if pats[i] == "**" else i + 1
            for i in closure(states)
            if i < len(pats) and (pats[i] == "**" or fnmatchcase(part, pats[i]))
        }
        if not states:
            return False
    return len(pats) in closure(states)


@dataclass(frozen=True)
class FileRule:
    """The ``[rule.files]`` table: where to look and which files count.

    ``roots`` are absolute after loading. ``pattern`` is searched in the path relative
    to the root ('/' separators); ``glob`` must match all of it; neither means every file.
    A string given as ``pattern`` is compiled, so hand-built rules stay short.
    """

    roots: tuple[str, ...]
    pattern: re.Pattern[str] | None = None
    glob: str | None = None
    recursive: bool = True
    ignore: tuple[str, ...] = ()
    complete: str = "closed"
    settle: float = 2.0
    poll: float = 1.0
    marker_suffix: str = ".done"
    catch_up: str = "missed"
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        roots = tuple(r.rstrip("/") or "/" for r in self.roots)
        object.__setattr__(self, "roots", roots)
        object.__setattr__(self, "ignore", tuple(self.ignore))
        if isinstance(self.pattern, str):
            object.__setattr__(self, "pattern", re.compile(self.pattern))

    def locate(self, event: FileEvent) -> tuple[str, str] | None:
        """``(root, relative path)`` of the event under one of the roots, or None.

        The event's own root wins when it is one of ours; otherwise the longest root that
        holds the path, so nested roots give the shortest relative path.
        """
        event_root = event.root.rstrip("/") or "/"
        for root in sorted(self.roots, key=lambda r: (r != event_root, -len(r))):
            relative = path_under(event.path, root)
            if relative is not None:
                return root, relative
        return None

    def check(self, event: FileEvent) -> tuple[str, tuple[str, str, dict[str, str]] | None]:
        """Why the event does or does not count: ``("matches", (root, relative, groups))``
        or ``(reason, None)``."""
        located = self.locate(event)
        if located is None:
            return "not under roots " + ", ".join(repr(r) for r in self.roots), None
        root, relative = located
        if event.link_to is not None:
            if not self.follow_symlinks:
                return f"'{relative}' is a symbolic link (follow_symlinks = false)", None
            if not any(
                path_under(event.link_to, os.path.realpath(r)) is not None for r in self.roots
            ):
                return (
                    f"'{relative}' is a symbolic link to {event.link_to!r}, "
                    "outside the rule's roots",
                    None,
                )
        parts = relative.split("/")
        if not self.recursive and len(parts) > 1:
            return f"'{relative}' is in a subdirectory and recursive = false", None
        for ignore in self.ignore:
            if "/" in ignore:
                if glob_match(ignore, parts):
                    return f"ignored by '{ignore}'", None
                continue
            if fnmatchcase(parts[-1], ignore):
                return f"ignored by '{ignore}'", None
            for part in parts[:-1]:
                if fnmatchcase(part, ignore):
                    return f"ignored by '{ignore}' (directory '{part}')", None
        groups: dict[str, str] = {}
        if self.pattern is not None:
            found = self.pattern.search(relative)
            if found is None:
                return f"pattern does not match '{relative}'", None
            groups = {name: value or "" for name, value in found.groupdict().items()}
            groups["0"] = found[0]
            groups.update((str(n), found[n] or "") for n in range(1, self.pattern.groups + 1))
        elif self.glob is not None and not glob_match(self.glob, parts):
            return f"glob '{self.glob}' does not match '{relative}'", None
        return "matches", (root, relative, groups)


@dataclass(frozen=True)
class PvRule:
    """The ``[rule.pv]`` table: the PV, its condition, the PVs to snapshot when it fires.

    ``snapshot_defaults`` gives a value to a snapshot PV that has none (never connected,
    disconnected); a snapshot PV without a default and without a value fails the trigger.
    ``wait_for_file`` (a template, as params) names a file the run waits for: it starts
    once the file exists and has not changed for ``file_settle`` seconds, and fails as a
    trigger after ``file_timeout`` seconds.
    """

    name: str
    condition: Condition
    snapshot: tuple[str, ...] = ()
    snapshot_defaults: Mapping[str, Any] = field(default_factory=dict)
    wait_for_file: str | None = None
    file_timeout: float = 60.0
    file_settle: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshot", tuple(self.snapshot))

    @property
    def pvs(self) -> tuple[str, ...]:
        """Every PV the rule reads: its own first, then the snapshot PVs."""
        return (self.name, *(n for n in self.snapshot if n != self.name))

    def resolve(
        self, taken: Mapping[str, Mapping[str, Any]], needed: Collection[str] = ()
    ) -> dict[str, dict[str, Any]]:
        """The snapshot with defaults applied: name -> value, timestamp, severity, missing.

        ``taken`` is what the PV source had (:attr:`PvEvent.snapshot`). Raises
        :class:`TriggerFailed` naming every PV that has neither a value nor a default.
        A PV of ``needed`` (its value goes into a parameter or ``wait_for_file``) whose
        value is empty text takes its default too: an IOC that restarted, or a detector
        that never wrote a file, leaves its file name PV empty (see :meth:`Rule.empty_inputs`).
        """
        out: dict[str, dict[str, Any]] = {}
        missing = []
        for name in self.snapshot:
            seen = taken.get(name) or {}
            empty = (
                name in needed and name in self.snapshot_defaults and _is_empty(seen.get("value"))
            )
            if seen.get("connected") and seen.get("timestamp") is not None and not empty:
                out[name] = {
                    "value": seen.get("value"),
                    "timestamp": seen["timestamp"],
                    "severity": seen.get("severity", 0),
                    "missing": False,
                }
            elif name in self.snapshot_defaults:
                out[name] = {
                    "value": copy.deepcopy(self.snapshot_defaults[name]),
                    "timestamp": None,
                    "severity": None,
                    "missing": True,
                }
            else:
                why = "disconnected" if seen.get("timestamp") is not None else "no value yet"
                missing.append(f"{name} ({why})")
        if missing:
            raise TriggerFailed(
                "snapshot PV without a value and without a default: "
                + ", ".join(missing)
                + " (give one in snapshot_defaults to start the run anyway)"
            )
        return out


def _is_empty(value: Any) -> bool:
    """An empty (or blank) text value: what a file name PV holds when there is no file."""
    return isinstance(value, str) and not value.strip()


@dataclass(frozen=True)
class PvMatch:
    """A PV rule fired: the rendered params, the snapshot taken, the file to wait for."""

    rule: Rule
    event: PvEvent
    params: Mapping[str, Any]
    snapshot: Mapping[str, Mapping[str, Any]]
    wait_for_file: str | None = None


@dataclass(frozen=True)
class Limits:
    """How often and how many: enforced by the dispatcher, only carried here.

    ``rate`` is ``(count, per_seconds)``: "10/min" is ``(10, 60.0)``.
    """

    concurrent: int | None = None
    debounce: float | None = None
    batch: int | None = None
    batch_window: float | None = None
    rate: tuple[int, float] | None = None


@dataclass(frozen=True)
class Match:
    """A rule matched an event: the regex groups and the workflow parameters rendered.

    ``groups`` holds what ``{match[...]}`` can name: named groups, and the numbered ones
    as "0" (the whole match), "1", ...; a group that took no part is "".
    """

    rule: Rule
    event: FileEvent
    groups: Mapping[str, str]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: the workflow to start, its parameter templates, limits and source.

    ``files`` None and ``pv`` None make a manual-only rule (triggerctl start / replay).
    ``source`` and ``index``
    say where the rule was written (``index`` counts from 0 within its file).
    A rule built by hand checks its parameter templates like :func:`load_rules` does.
    """

    name: str
    workflow: str
    params: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = Limits()
    files: FileRule | None = None
    pv: PvRule | None = None
    enabled: bool = True
    description: str = ""
    source: str = ""
    index: int = 0
    templates: Mapping[str, Template] = field(init=False, repr=False, compare=False)
    wait_template: Template | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = self.files.pattern if self.files is not None else None
        pvs = self.pv.pvs if self.pv is not None else ()
        templates, errors = param_templates(
            self.params, _kind(self.files, self.pv), pattern, pvs=pvs
        )
        if self.pv is not None and self.pv.wait_for_file is not None:
            waits, wait_errors = param_templates(
                {"wait_for_file": self.pv.wait_for_file}, "pv", pvs=pvs
            )
            errors += [("pv.wait_for_file", m) for _, m in wait_errors]
        else:
            waits = {}
        if errors:
            key, message = errors[0]
            raise ConfigError(message, source=self.source or None, key=f"rule[{self.index}].{key}")
        object.__setattr__(self, "templates", templates)
        object.__setattr__(self, "wait_template", waits.get("wait_for_file"))

    def __hash__(self) -> int:  # by identity of definition; params may hold lists
        return hash((self.name, self.source, self.index))

    def _check(self, event: object) -> tuple[str, tuple[str, str, dict[str, str]] | None]:
        if self.files is None:
            kind = "a PV rule" if self.pv is not None else "manual-only (no [rule.files] table)"
            return f"the rule is {kind}", None
        if not isinstance(event, FileEvent):
            return f"not a file event ({type(event).__name__})", None
        return self.files.check(event)

    def match(self, event: FileEvent) -> Match | None:
        """The match of ``event`` with its rendered params, or None. ``enabled`` is not
        looked at: whether a paused rule fires is the dispatcher's decision."""
        _, found = self._check(event)
        if found is None:
            return None
        root, relative, groups = found
        params = self._render(file_values(event, root, relative, groups))
        return Match(rule=self, event=event, groups=groups, params=params)

    def explain(self, event: FileEvent) -> str:
        """One line: "matches", or why not ("not under roots ...", "ignored by '*.tmp'", ...)."""
        return self._check(event)[0]

    def render(self, events: Sequence[FileEvent]) -> dict[str, Any]:
        """Params for a batch: ``{files}`` and ``{count}`` cover all events, every other
        placeholder takes the first event's value. A manual-only rule renders its literal
        params (``events`` may be empty). Raises ValueError when the first event does not
        match this rule."""
        if self.files is None:
            if self.pv is not None:
                raise ValueError(f"rule '{self.name}': PV rules are rendered from PV events")
            return self._render({})
        if not events:
            raise ValueError(f"rule '{self.name}': a batch needs at least one file event")
        reason, found = self._check(events[0])
        if found is None:
            raise ValueError(f"rule '{self.name}' does not match {events[0].path!r}: {reason}")
        return self._render(batch_values(file_values(events[0], *found), events))

    def render_pv(self, event: PvEvent) -> PvMatch:
        """The run a PV event of this rule asks for: params rendered from the event and
        the snapshot (defaults applied), and the file to wait for. Raises
        :class:`TriggerFailed` (a snapshot PV without value or default, a value the
        format spec cannot take) and ValueError when this is not a PV rule."""
        if self.pv is None:
            raise ValueError(f"rule '{self.name}' is not a PV rule")
        snapshot = self.pv.resolve(event.snapshot, self.pv_inputs)
        values = pv_values(
            event.pv,
            event.value,
            event.old_value,
            event.timestamp,
            event.severity,
            snapshot,
            event.index,
        )
        try:
            params = self._render(values)
            wait = self.wait_template
            path = str(wait.render(values)) if wait is not None else None
        except (ValueError, TypeError) as exc:
            raise TriggerFailed(
                f"cannot render the parameters from {event.pv} = {event.value!r}: {exc}"
            ) from None
        return PvMatch(rule=self, event=event, params=params, snapshot=snapshot, wait_for_file=path)

    @property
    def pv_inputs(self) -> frozenset[str]:
        """The snapshot PVs whose values go into the params or ``wait_for_file`` (by
        ``{pv[NAME]}``): an empty value of one fails the trigger unless it has a default."""
        if self.pv is None:
            return frozenset()
        templates = [
            *self.templates.values(),
            *([self.wait_template] if self.wait_template else []),
        ]
        used = {p.key for t in templates for p in t.placeholders if p.name == "pv" and p.key}
        return frozenset(used & set(self.pv.snapshot))

    def empty_inputs(self, match: PvMatch) -> list[str]:
        """The snapshot PVs of :attr:`pv_inputs` whose value in ``match`` is empty text and
        not a default: a run would get an empty file name ("snapshot-empty")."""
        return sorted(
            name
            for name in self.pv_inputs
            if not match.snapshot[name].get("missing")
            and _is_empty(match.snapshot[name].get("value"))
        )

    def _render(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.params.items():
            template = self.templates.get(key)
            out[key] = template.render(values) if template is not None else copy.deepcopy(value)
        return out


def _kind(files: FileRule | None, pv: PvRule | None) -> str:
    return "files" if files is not None else ("pv" if pv is not None else "manual")


@dataclass(frozen=True)
class RuleSet:
    """The loaded rules, in file order, and the files they came from."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def by_name(self, name: str) -> Rule:
        """The rule called ``name``; KeyError naming the known rules otherwise."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(repr(r.name) for r in self.rules) or "none"
        raise KeyError(f"no rule named {name!r} (rules: {known})")

    def match(self, event: FileEvent) -> list[Match]:
        """Every rule that matches ``event``, in file order, paused (enabled = false) or not:
        pausing is the dispatcher's business."""
        matches = (rule.match(event) for rule in self.rules)
        return [m for m in matches if m is not None]

    def explain(self, event: FileEvent) -> dict[str, str]:
        """Rule name -> :meth:`Rule.explain` of ``event``, for every rule."""
        return {rule.name: rule.explain(event) for rule in self.rules}


def load_rules(
    dirs: Iterable[Path],
    *,
    known_workflows: Callable[[str], bool] | None = None,
    base: Path | None = None,
) -> RuleSet:
    """Read every ``*.toml`` in each directory (sorted; dot files skipped) into a RuleSet.

    A missing directory holds no rules; a path that is not a directory is a problem.
    All problems of all files (TOML syntax, unknown keys, bad values, placeholders,
    duplicate names across files, workflows ``known_workflows`` does not know) are
    raised together as one :class:`RulesError`. Relative roots are resolved against
    ``base`` (the config file's directory, as settings paths are; default: the current
    working directory).
    """
    specs, files = read_rule_specs(dirs, known_workflows, base)
    return RuleSet(tuple(_build(spec) for spec in specs), tuple(files))


def _build(spec: Mapping[str, Any]) -> Rule:
    fields = dict(spec)
    files = fields.pop("files")
    limits = fields.pop("limits")
    pv = fields.pop("pv")
    return Rule(
        files=FileRule(**files) if files is not None else None,
        pv=PvRule(**pv) if pv is not None else None,
        limits=Limits(**limits),
        **fields,
    )


def load_rules_for(settings: Settings) -> RuleSet:
    """The rules of ``settings``; a rule naming a workflow that is not there is an error."""

    def known(name: str) -> bool:
        try:
            find_workflow_file(name, settings.paths.workflows)
        except TriggerdError:
            return False
        return True

    return load_rules(settings.paths.triggers, known_workflows=known, base=settings.base_dir)
