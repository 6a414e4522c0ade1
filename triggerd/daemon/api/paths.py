"""``/test-trigger`` and ``/explain``: what the rules make of a path, and why."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .. import views
from .base import Control, router

__all__ = ["routes"]

routes = router()


class PathRequest(BaseModel):
    path: str


@routes.post("/test-trigger")
async def test_trigger(control: Control, request: PathRequest) -> dict[str, Any]:
    return views.test_trigger(control, request.path)


@routes.post("/explain")
async def explain(control: Control, request: PathRequest) -> dict[str, Any]:
    return views.explain(control, request.path)
