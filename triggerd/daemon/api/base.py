"""What every group of routes shares: the JSON they answer with, the daemon they ask
(a FastAPI dependency), and the bound on how many rows one answer holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, responses
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute

from triggerd.errors import BackendUnavailable, Conflict, NotFound, NotReady, TriggerdError
from triggerd.text import dumps

from ..control import DaemonControl
from ..events import DaemonEventLog

__all__ = ["MAX_LIMIT", "Control", "JSONResponse", "Limit", "eventlog_of", "router", "status_code"]

MAX_LIMIT = 100_000  # the most rows or events one query returns
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


class JSONResponse(responses.JSONResponse):
    """JSON as :mod:`triggerd.text` defines it: a file name that is not UTF-8 is sent
    with its bytes as ``\\udcXX`` escapes (starlette's own would fail to encode it: 500)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


class _Route(APIRoute):
    """A route that answers through :class:`JSONResponse`: FastAPI's fast path (pydantic
    writing JSON itself) is taken for routes without a response class of their own, and
    it cannot write such a name either."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any):
        if isinstance(kwargs.get("response_class"), DefaultPlaceholder):
            kwargs["response_class"] = JSONResponse
        super().__init__(path, endpoint, **kwargs)


# The first class an error is an instance of gives its status; any other TriggerdError is
# the request's fault (400).
_STATUS: tuple[tuple[type[TriggerdError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (NotReady, 503),  # ask again shortly
    (BackendUnavailable, 503),  # a service the daemon needs is away: ask again later
)


def status_code(error: TriggerdError) -> int:
    """The HTTP status of an error the daemon raised: one table for the API and the pages."""
    return next((code for cls, code in _STATUS if isinstance(error, cls)), 400)


def router() -> APIRouter:
    """A group of routes that answer through :class:`JSONResponse`."""
    return APIRouter(route_class=_Route)


def _control(request: Request) -> DaemonControl:
    control: DaemonControl = request.app.state.control
    return control


#: A handler's parameter of this type is the daemon it serves.
Control = Annotated[DaemonControl, Depends(_control)]


def eventlog_of(control: DaemonControl) -> DaemonEventLog:
    """The daemon's event log; NotReady (503) while the daemon starts."""
    if control.eventlog is None:
        raise NotReady()
    return control.eventlog
