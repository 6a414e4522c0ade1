"""The event log's storage, backend-neutral: what both backends do
(:func:`triggerd.eventlog.factory.open_event_store` opens one).

- :class:`~triggerd.eventlog.sqlite.SqliteEventStore`: one SQLite file (WAL), the
  embedded default;
- :class:`~triggerd.eventlog.mongodb.MongoEventStore`: an events collection and a run
  summaries collection on a MongoDB server (a standalone one will do).

Both store the same fields (:mod:`triggerd.eventlog.schema`), answer the same queries
with the same results, and keep the same run summaries (:mod:`triggerd.eventlog.summary`).
``insert`` is idempotent by event id, and sanitises what it stores
(:mod:`triggerd.eventlog.safe`): no payload makes it raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from triggerd.eventlog.safe import safe_text
from triggerd.eventlog.schema import LEVELS, LogEvent

__all__ = ["EventQuery", "EventStore"]


@dataclass(frozen=True)
class EventQuery:
    """The arguments of :meth:`EventStore.find`, checked and normalised once."""

    run: str | None
    workflow: str | None
    rule: str | None
    exact_kinds: tuple[str, ...]
    kind_families: tuple[str, ...]  # "task" selects "task" and "task.*"
    since: datetime | None
    levels: tuple[str, ...] | None
    after_id: str | None
    limit: int
    newest_first: bool

    @classmethod
    def of(
        cls,
        *,
        run: str | None = None,
        workflow: str | None = None,
        rule: str | None = None,
        kinds: Iterable[str] | str | None = None,
        since: datetime | None = None,
        level: str | None = None,
        after_id: str | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> EventQuery:
        if isinstance(kinds, str):
            kinds = [kinds]
        exact: list[str] = []
        families: list[str] = []
        for kind in kinds or ():
            (exact if "." in kind else families).append(kind)
        levels = None
        if level is not None:
            name = level.lower()
            if name not in LEVELS:
                raise ValueError(f"unknown level {level!r}: expected one of {', '.join(LEVELS)}")
            levels = LEVELS[LEVELS.index(name) :]
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        # as stored: a run or name given with surrogate escapes finds what sanitize made of it
        run, workflow, rule = (
            None if v is None else safe_text(v, 1024) for v in (run, workflow, rule)
        )
        return cls(
            run,
            workflow,
            rule,
            tuple(exact),
            tuple(families),
            since,
            levels,
            after_id,
            limit,
            newest_first,
        )


class EventStore(ABC):
    """Where events are kept and looked up. Nothing connects before ``open()``; use it
    as a context manager or call ``close()``. One store may be shared by threads."""

    @abstractmethod
    def open(self) -> EventStore: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> EventStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def insert(self, events: Sequence[LogEvent]) -> int:
        """Store the events not stored yet (by id) and bring the run summaries up to
        date; returns how many were new. Inserting the same events again stores nothing
        and changes nothing."""

    def find(
        self,
        *,
        run: str | None = None,
        workflow: str | None = None,
        rule: str | None = None,
        kinds: Iterable[str] | str | None = None,
        since: datetime | None = None,
        level: str | None = None,
        after_id: str | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[LogEvent]:
        """Events matching every filter given, in id (= time) order, at most ``limit``.

        ``kinds``: a kind with a dot matches exactly, one without selects its family
        (``"task"`` matches ``task`` and ``task.*``; ``"log"`` matches ``log``).
        ``since``: at or after that time (a naive datetime counts as UTC). ``level``:
        that level and more severe ones. ``after_id``: only ids greater than it, to
        follow a log by asking again with the last id seen. ``newest_first``: the
        newest ``limit`` events, newest first (``triggerctl events`` without
        ``--since``); otherwise the oldest, oldest first.
        """
        query = EventQuery.of(
            run=run,
            workflow=workflow,
            rule=rule,
            kinds=kinds,
            since=since,
            level=level,
            after_id=after_id,
            limit=limit,
            newest_first=newest_first,
        )
        return [] if query.limit == 0 else self._find(query)

    @abstractmethod
    def _find(self, query: EventQuery) -> list[LogEvent]: ...

    def runs(
        self,
        *,
        failed: bool = False,
        since: datetime | None = None,
        workflow: str | None = None,
        rule: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Run summaries, newest first (by their first event), without their DAGs.
        ``failed``: only runs that failed, were aborted or rejected; ``since``: runs
        whose first event is at or after that time (a naive datetime counts as UTC)."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        workflow, rule = (None if v is None else safe_text(v, 1024) for v in (workflow, rule))
        return [] if limit == 0 else self._runs(failed, since, workflow, rule, limit)

    @abstractmethod
    def _runs(
        self,
        failed: bool,
        since: datetime | None,
        workflow: str | None,
        rule: str | None,
        limit: int,
    ) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's summary with its DAGs and tasks (see
        :mod:`triggerd.eventlog.summary`), or None when no event of it is stored."""
        return self._run(safe_text(run_id, 1024))

    @abstractmethod
    def _run(self, run_id: str) -> dict[str, Any] | None: ...
