"""``/runs``: the outbox's runs; start, stop and replay."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from triggerd.errors import RunNotFound

from .base import Control, Limit, router

__all__ = ["routes"]

routes = router()


class StartRequest(BaseModel):
    workflow: str
    params: dict[str, Any] = Field(default_factory=dict)


@routes.get("/runs")
async def get_runs(
    control: Control,
    state: str | None = None,
    rule: str | None = None,
    since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    states = [s for s in (state or "").split(",") if s]
    rows = control.state.runs(states=states, rule=rule, since=since, limit=limit)
    return [row.to_dict() for row in rows]


@routes.get("/runs/{run_id}")
async def get_run(control: Control, run_id: str) -> dict[str, Any]:
    row = control.state.run(run_id)
    if row is None:
        raise RunNotFound(run_id)
    return row.to_dict()


@routes.post("/runs")
async def start_run(control: Control, request: StartRequest) -> dict[str, Any]:
    return {"run_id": control.start_run(request.workflow, request.params)}


@routes.post("/runs/{run_id}/stop")
async def stop_run(control: Control, run_id: str) -> dict[str, Any]:
    return {"ok": True, "state": control.stop_run(run_id)}


@routes.post("/runs/{run_id}/replay")
async def replay(control: Control, run_id: str) -> dict[str, Any]:
    return {"run_id": control.replay(run_id), "replay_of": run_id}
