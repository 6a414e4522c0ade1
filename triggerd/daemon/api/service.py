"""The daemon itself: ``/status``, ``/metrics``, ``/drain`` and ``/reload``."""

from __future__ import annotations

from typing import Any

from fastapi.responses import PlainTextResponse

from .. import views
from .base import Control, router

__all__ = ["routes"]

routes = router()


@routes.get("/status")
async def get_status(control: Control) -> dict[str, Any]:
    return views.status(control)


@routes.get("/metrics", response_class=PlainTextResponse)
async def metrics(control: Control) -> str:
    """Prometheus text format."""
    return control.metrics_text()


@routes.post("/drain")
async def drain(control: Control) -> dict[str, Any]:
    return control.drain()


@routes.post("/reload")
async def reload(control: Control) -> dict[str, Any]:
    return await control.reload()
