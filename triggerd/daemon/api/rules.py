"""``/rules``: the rules with what they fired and skipped; pause and resume."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .. import views
from .access import operator_name
from .base import Control, router

__all__ = ["routes"]

routes = router()


@routes.get("/rules")
async def get_rules(control: Control) -> list[dict[str, Any]]:
    return views.rules_view(control)


@routes.post("/rules/{name}/pause")
async def pause(control: Control, name: str, request: Request) -> dict[str, Any]:
    by = operator_name(request, "triggerctl")
    return {"rule": name, "paused": control.set_paused(name, True, by=by)}


@routes.post("/rules/{name}/resume")
async def resume(control: Control, name: str, request: Request) -> dict[str, Any]:
    by = operator_name(request, "triggerctl")
    return {"rule": name, "paused": control.set_paused(name, False, by=by)}
