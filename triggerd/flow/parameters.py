"""Workflow parameters: ``Parameters([Option(...)])`` declares what a workflow takes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .exceptions import WorkflowArgumentError

__all__ = ["Option", "Parameters"]

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class Option:
    """One parameter. ``default=None`` means the option is required."""

    def __init__(self, name: str, default: Any = None, help: str | None = None, type: type = str):
        self._name = name
        self._default = default
        self._help = help
        self._type = type

    @property
    def name(self) -> str:
        return self._name

    @property
    def default(self) -> Any:
        return self._default

    @property
    def help(self) -> str | None:
        return self._help

    @property
    def type(self) -> type:
        return self._type

    @property
    def required(self) -> bool:
        return self._default is None

    def convert(self, value: Any) -> Any:
        """Convert ``value`` (often a string from the command line) to this option's type."""
        kind = self._type
        try:
            if kind is str:
                return str(value)
            if kind is bool:
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
                raise ValueError(value)
            if kind in (int, float):
                return kind(value)
        except (TypeError, ValueError):
            expected = "a boolean (true/false, yes/no, 1/0)" if kind is bool else f"{kind.__name__}"
            raise WorkflowArgumentError(
                f"parameter '{self._name}': cannot convert {value!r} to {expected}"
            ) from None
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "type": getattr(self._type, "__name__", str(self._type)),
            "default": self._default,
            "required": self.required,
            "help": self._help or "",
        }

    def __repr__(self) -> str:
        return f"Option({self._name!r}, default={self._default!r}, type={self._type.__name__})"


class Parameters(list):
    """A list of :class:`Option`; validates and converts a run's arguments."""

    def check_missing(self, args: Mapping[str, Any]) -> list[str]:
        """Names of required options that ``args`` does not give."""
        return [opt.name for opt in self if opt.required and opt.name not in args]

    def consolidate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments converted to their option types, with defaults for absent options.

        Arguments no option declares are passed through unconverted, as in Lightflow.
        """
        result = dict(args)
        for opt in self:
            if opt.name in args:
                result[opt.name] = opt.convert(args[opt.name])
            elif not opt.required:
                result[opt.name] = opt.convert(opt.default)
        return result

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``consolidate`` after checking required options; raises with every missing name."""
        missing = self.check_missing(args)
        if missing:
            wanted = ", ".join(
                f"{opt.name} ({opt.type.__name__})" for opt in self if opt.name in missing
            )
            raise WorkflowArgumentError(
                f"The following parameters are required by the workflow, but are missing: {wanted}"
            )
        return self.consolidate(args)
