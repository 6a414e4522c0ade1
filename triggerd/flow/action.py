"""What a task returns: its data, and optionally which successors may run (branching)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Action"]


class Action:
    """``Action(data, limit=None)``: ``limit`` lists the immediate successors that run.

    ``limit=None`` runs every successor, ``limit=[]`` skips them all; entries are task
    objects or task names, as in Lightflow.
    """

    def __init__(self, data: Any, limit: Iterable[Any] | None = None):
        self._data = data
        self._limit = list(limit) if limit is not None else None

    @property
    def data(self) -> Any:
        return self._data

    @property
    def limit(self) -> list[Any] | None:
        return self._limit

    def limit_names(self) -> tuple[str, ...] | None:
        """The limit as task names (task objects are replaced by their ``name``)."""
        if self._limit is None:
            return None
        return tuple(item if isinstance(item, str) else item.name for item in self._limit)

    def copy(self) -> Action:
        return Action(self._data, limit=self._limit)

    def __repr__(self) -> str:
        return f"Action({self._data!r}, limit={self._limit!r})"
