"""Parameter templates of rules: ``"{dir}/{stem}.squashfs"``, checked at load, never eval'd.

A template is parsed once with :meth:`string.Formatter.parse`; every placeholder must be
a known name (``{match[...]}`` is the one that may be indexed), so attribute access such
as ``{path.__class__}`` is refused before the daemon ever sees an event. Rendering looks
names up in a plain mapping and applies the conversion and format spec, as
``str.format_map`` would, and nothing else.
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from triggerd.sources.events import FileEvent

__all__ = [
    "FILE_PLACEHOLDERS",
    "PV_PLACEHOLDERS",
    "Placeholder",
    "Template",
    "TemplateError",
    "batch_values",
    "compile_template",
    "file_values",
    "iso_epoch",
    "iso_utc",
    "param_templates",
    "pv_values",
]

# name -> a sample value of its type, used to check format specs at load time.
FILE_PLACEHOLDERS: Mapping[str, Any] = {
    "path": "",
    "name": "",
    "stem": "",
    "suffix": "",
    "dir": "",
    "relative": "",
    "root": "",
    "size": 0,
    "mtime": "",
    "inode": 0,
    "match": "",
    "files": [],
    "count": 0,
}
# A PV rule: the PV that fired (name, value, the value it was compared with, the IOC's
# time stamp in ISO 8601 UTC, alarm severity), {pv[NAME]} the value of the trigger PV or a
# snapshot PV, {snapshot} every snapshot PV with its time stamp and severity, {index} the
# counter value a run of a when = "increment" rule is for.
PV_PLACEHOLDERS: Mapping[str, Any] = {
    "pvname": "",
    "value": 0,
    "old_value": 0,
    "timestamp": "",
    "severity": 0,
    "pv": "",
    "snapshot": {},
    "index": 0,
}
INDEXED = ("match", "pv")  # the placeholders that take a [key]
_INDEX_HINT = {"match": "{match[group]}", "pv": "{pv[NAME]}"}
WHOLE_ONLY = ("files", "snapshot")  # a list or table: a whole value, never part of a string

_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\[\]]*)\])?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TemplateError(ValueError):
    """A template is malformed or names a placeholder it may not; the message says which."""


@dataclass(frozen=True)
class Placeholder:
    """One ``{name[key]!conversion:spec}`` of a template."""

    name: str
    key: str | None = None
    conversion: str | None = None
    spec: str = ""

    def __str__(self) -> str:
        key = f"[{self.key}]" if self.key is not None else ""
        conversion = f"!{self.conversion}" if self.conversion else ""
        spec = f":{self.spec}" if self.spec else ""
        return f"{{{self.name}{key}{conversion}{spec}}}"

    def value(self, values: Mapping[str, Any]) -> Any:
        value = values[self.name]
        return value[self.key] if self.key is not None else value

    def format(self, values: Mapping[str, Any]) -> str:
        return _format(self.value(values), self.conversion, self.spec)


@dataclass(frozen=True)
class Template:
    """A parsed parameter value: literal text and placeholders, in order."""

    text: str
    pieces: tuple[str | Placeholder, ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.pieces if isinstance(p, Placeholder))

    @property
    def whole(self) -> Placeholder | None:
        """The placeholder when the value is exactly one bare ``{name}``: it keeps its type."""
        if len(self.pieces) == 1 and isinstance(self.pieces[0], Placeholder):
            only = self.pieces[0]
            if only.conversion is None and not only.spec:
                return only
        return None

    def render(self, values: Mapping[str, Any]) -> Any:
        whole = self.whole
        if whole is not None:
            return whole.value(values)
        return "".join(p if isinstance(p, str) else p.format(values) for p in self.pieces)


def _format(value: Any, conversion: str | None, spec: str) -> str:
    if conversion == "r":
        value = repr(value)
    elif conversion == "a":
        value = ascii(value)
    elif conversion == "s":
        value = str(value)
    return format(value, spec)


def compile_template(
    text: str,
    allowed: Mapping[str, Any],
    *,
    pattern: re.Pattern[str] | None = None,
    check_groups: bool = True,
    nothing_allowed: str = "",
    pvs: Collection[str] | None = (),
) -> Template:
    """Parse ``text`` and check each placeholder against ``allowed`` (name -> sample value).

    ``{match[x]}`` must name a group of ``pattern`` (by name, or by number up to its group
    count, 0 being the whole match) unless ``check_groups`` is false (the pattern itself
    is broken and already reported); ``{pv[NAME]}`` must name one of ``pvs`` (the PV that
    fires and the snapshot PVs) unless ``pvs`` is None (the PV table is broken).
    ``nothing_allowed`` explains why, when ``allowed`` is empty. Raises :class:`TemplateError`.
    """
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{exc} (write '{{{{' and '}}}}' for literal braces)") from None
    pieces: list[str | Placeholder] = []
    for literal, field, spec, conversion in parsed:
        if literal:
            pieces.append(literal)
        if field is None:
            continue
        placeholder = _placeholder(field, conversion, spec or "", allowed, nothing_allowed)
        if placeholder.name == "match" and check_groups:
            placeholder = _check_group(placeholder, pattern)
        elif placeholder.name == "pv" and pvs is not None and placeholder.key not in pvs:
            known = ", ".join(repr(p) for p in pvs)
            raise TemplateError(
                f"placeholder '{placeholder}': '{placeholder.key}' is neither the rule's PV nor "
                f"in its snapshot list (known: {known}); add it to snapshot = [...]"
            )
        pieces.append(placeholder)
    template = Template(text, tuple(pieces))
    for placeholder in template.placeholders:
        if placeholder.name in WHOLE_ONLY and template.whole is None:
            raise TemplateError(_whole_only(placeholder.name))
    return template


def _whole_only(name: str) -> str:
    what = "a list of paths" if name == "files" else "a table of PVs"
    return (
        f"'{{{name}}}' is {what}: it must be the whole value "
        f'(e.g. {name} = "{{{name}}}"), unformatted, not part of a string'
    )


def _placeholder(
    field: str, conversion: str | None, spec: str, allowed: Mapping[str, Any], nothing_allowed: str
) -> Placeholder:
    shown = f"{{{field}}}"
    names = ", ".join(f"{{{n}[...]}}" if n in INDEXED else f"{{{n}}}" for n in allowed)
    indexed = " or ".join(_INDEX_HINT[n] for n in INDEXED if n in allowed) or "no placeholder"
    found = _FIELD.fullmatch(field)
    if found is None:
        if field == "" or field.isdigit():
            why = "positional placeholders are not allowed"
        elif "." in field.split("[", 1)[0] or "]." in field:
            why = "attribute access is not allowed"
        elif "[" in field:
            why = f"only {indexed} may be indexed, once"
        else:
            why = "not a placeholder name"
        raise TemplateError(
            f"placeholder '{shown}': {why}" + (f" (allowed: {names})" if names else "")
        )
    name, key = found[1], found[2]
    if name not in allowed:
        if not allowed:
            raise TemplateError(f"placeholder '{shown}': {nothing_allowed}")
        raise TemplateError(f"unknown placeholder '{shown}' (allowed: {names})")
    if name in INDEXED and not key:
        example = "{match[visit]} or {match[1]}" if name == "match" else "{pv[BL:DET:FileName_RBV]}"
        raise TemplateError(
            f"placeholder '{shown}': name a {'group' if name == 'match' else 'PV'}, as in {example}"
        )
    if name not in INDEXED and key is not None:
        raise TemplateError(f"placeholder '{shown}': only {indexed} may be indexed")
    if conversion is not None and conversion not in "rsa":
        raise TemplateError(
            f"placeholder '{shown}': unknown conversion '!{conversion}' (use !r, !s or !a)"
        )
    if "{" in spec or "}" in spec:
        raise TemplateError(
            f"placeholder '{shown}': placeholders inside a format spec are not allowed"
        )
    if name in WHOLE_ONLY and (conversion or spec):
        raise TemplateError(_whole_only(name))
    if spec or conversion:
        try:
            _format(allowed[name], conversion, spec)
        except (ValueError, TypeError) as exc:
            raise TemplateError(
                f"placeholder '{{{field}:{spec}}}': bad format spec: {exc}"
            ) from None
    return Placeholder(name, key, conversion, spec)


def _check_group(placeholder: Placeholder, pattern: re.Pattern[str] | None) -> Placeholder:
    key = placeholder.key or ""
    shown = str(placeholder)
    if pattern is None:
        raise TemplateError(
            f"placeholder '{shown}': the rule has no pattern, so there are no groups "
            "(use pattern = '...(?P<name>...)...' instead of glob)"
        )
    if key.isdigit():
        if int(key) > pattern.groups:
            raise TemplateError(f"placeholder '{shown}': the pattern has {pattern.groups} group(s)")
        return Placeholder(
            placeholder.name, str(int(key)), placeholder.conversion, placeholder.spec
        )
    if key not in pattern.groupindex:
        known = ", ".join(repr(g) for g in pattern.groupindex) or "none"
        raise TemplateError(
            f"placeholder '{shown}': the pattern has no group '{key}' (named groups: {known})"
        )
    return placeholder


MANUAL_ONLY = (
    "the rule has no [rule.files] table, so no file fills it "
    "(a manual-only rule takes literal params; write '{{' and '}}' for literal braces)"
)


def param_templates(
    params: Mapping[str, Any],
    kind: str,
    pattern: re.Pattern[str] | None = None,
    *,
    check_groups: bool = True,
    pvs: Collection[str] | None = (),
) -> tuple[dict[str, Template], list[tuple[str, str]]]:
    """Templates of the string params of a rule of ``kind`` ("files", "pv" or "manual"),
    and ``("params.<key>", message)`` for each value refused.

    A manual-only rule may use no placeholder; a PV rule's ``{pv[NAME]}`` must name one
    of ``pvs`` (its PV and its snapshot PVs).
    """
    templates: dict[str, Template] = {}
    errors: list[tuple[str, str]] = []
    allowed = {"files": FILE_PLACEHOLDERS, "pv": PV_PLACEHOLDERS}.get(kind, {})
    for key, value in params.items():
        if not isinstance(value, str):
            continue
        try:
            templates[key] = compile_template(
                value,
                allowed,
                pattern=pattern,
                check_groups=check_groups,
                nothing_allowed=MANUAL_ONLY,
                pvs=pvs,
            )
        except TemplateError as exc:
            errors.append((f"params.{key}", str(exc)))
    return templates, errors


def iso_epoch(seconds: float | None) -> str | None:
    """An epoch time (a PV's time stamp) as :func:`iso_utc` writes it; None stays None."""
    return None if seconds is None else iso_utc(round(seconds * 1e6) * 1000)


def pv_values(
    pvname: str,
    value: Any,
    old_value: Any,
    timestamp: float,
    severity: int,
    snapshot: Mapping[str, Mapping[str, Any]],
    index: int | None = None,
) -> dict[str, Any]:
    """The placeholder values of a PV rule that fired; ``snapshot`` maps each snapshot PV
    to ``{"value", "timestamp" (epoch s or None), "severity", "missing"}``, defaults
    already applied; ``index`` is the counter value of an increment rule's run."""
    table = {
        name: {**taken, "timestamp": iso_epoch(taken.get("timestamp"))}
        for name, taken in snapshot.items()
    }
    return {
        "pvname": pvname,
        "value": value,
        "old_value": old_value,
        "timestamp": iso_epoch(timestamp),
        "severity": severity,
        "pv": {**{name: taken["value"] for name, taken in snapshot.items()}, pvname: value},
        "snapshot": table,
        "index": index,
    }


def iso_utc(mtime_ns: int) -> str:
    """ISO 8601 in UTC with microseconds, as the event log writes times:
    ``...T18:55:17.123456Z``."""
    moment = _EPOCH + timedelta(microseconds=mtime_ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_values(
    event: FileEvent, root: str, relative: str, groups: Mapping[str, str]
) -> dict[str, Any]:
    """The placeholder values of one file event matched under ``root``."""
    name = posixpath.basename(event.path)
    stem, suffix = _split_suffix(name)
    return {
        "path": event.path,
        "name": name,
        "stem": stem,
        "suffix": suffix,
        "dir": posixpath.dirname(event.path),
        "relative": relative,
        "root": root,
        "size": event.size,
        "mtime": iso_utc(event.mtime_ns),
        "inode": event.inode,
        "match": dict(groups),
        "files": [event.path],
        "count": 1,
    }


def batch_values(first: Mapping[str, Any], events: Sequence[FileEvent]) -> dict[str, Any]:
    """``first``'s values with ``files`` and ``count`` of the whole batch."""
    return {**first, "files": [e.path for e in events], "count": len(events)}


def _split_suffix(name: str) -> tuple[str, str]:
    # As pathlib: the last dot starts the suffix, but a leading dot ('.hidden') does not.
    dot = name.rfind(".")
    if 0 < dot < len(name) - 1:
        return name[:dot], name[dot:]
    return name, ""
