"""``/events`` and ``/eventlog/runs``: the event log, filtered, and followed by long polling."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Query

from triggerd.durations import parse_since

from .base import Control, Limit, eventlog_of, router

__all__ = ["routes"]

routes = router()


def _since(text: str | None) -> datetime | None:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc


@routes.get("/events")
async def events(
    control: Control,
    run: str | None = None,
    workflow: str | None = None,
    rule: str | None = None,
    kind: Annotated[list[str] | None, Query()] = None,
    since: str | None = None,
    level: str | None = None,
    after: str | None = None,
    limit: Limit = 100,
    newest: bool = False,
    wait: Annotated[float, Query(ge=0.0, le=3600.0)] = 0.0,
) -> list[dict[str, Any]]:
    """The event log, filtered (see ``EventStore.find``); ``after`` an id and ``wait``
    seconds: long polling, for following (``triggerctl logs -f``)."""
    eventlog = eventlog_of(control)
    query = {
        "run": run,
        "workflow": workflow,
        "rule": rule,
        "kinds": kind,
        "since": _since(since),
        "level": level,
        "after_id": after,
        "limit": limit,
        "newest_first": newest,
    }
    try:
        found = await eventlog.find(wait=min(wait, 60.0), **query)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    return [e.to_dict() for e in found]


@routes.get("/eventlog/runs")
async def event_runs(
    control: Control,
    failed: bool = False,
    since: str | None = None,
    workflow: str | None = None,
    rule: str | None = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    eventlog, since_moment = eventlog_of(control), _since(since)
    try:
        return await eventlog.runs(
            failed=failed, since=since_moment, workflow=workflow, rule=rule, limit=limit
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc


@routes.get("/eventlog/runs/{run_id}")
async def event_run(control: Control, run_id: str) -> dict[str, Any]:
    found = await eventlog_of(control).run(run_id)
    if found is None:
        raise HTTPException(404, f"no events of run {run_id} in the event log")
    return found
