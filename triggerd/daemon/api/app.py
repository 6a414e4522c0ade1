"""The FastAPI app: the groups of routes, who may do what (:class:`.access.Access`), and
the handlers that turn an error into an answer (its status code: :func:`.base.status_code`)."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from triggerd import __version__
from triggerd.errors import TriggerdError

from ..control import DaemonControl
from .access import OPERATOR, VIEWER, Access
from .base import JSONResponse, status_code
from .console import STATIC_PATH, static_files
from .console import routes as console_routes
from .events import routes as event_routes
from .paths import routes as path_routes
from .rules import routes as rule_routes
from .runs import routes as run_routes
from .service import routes as service_routes

__all__ = ["create_app"]


def create_app(
    control: DaemonControl, *, token: str | None = None, viewer_token: str | None = None
) -> FastAPI:
    """The API of ``control``. Without ``token`` it is the unix socket's: every client is
    an operator (the socket's file permissions decide who connects). With ``token`` (TCP)
    every request must bear it (an operator) or ``viewer_token`` (a viewer: reads only)."""
    app = FastAPI(title="triggerd control API", version=__version__, docs_url=None, redoc_url=None)
    app.state.control = control
    app.state.on_socket = token is None
    # rendered into the console's forms, checked on their POSTs: a page of another site
    # cannot read it (see docs/security.md)
    app.state.form_token = secrets.token_urlsafe(32)
    for routes in (service_routes, rule_routes, run_routes, path_routes, event_routes):
        app.include_router(routes)
    app.include_router(console_routes)  # the operator's console: pages under /ui/
    app.mount(STATIC_PATH, static_files(), name="console-static")
    app.add_exception_handler(TriggerdError, _refused_by_daemon)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _bad_request)  # type: ignore[arg-type]
    tokens = None
    if token is not None:
        tokens = {OPERATOR: token} | ({VIEWER: viewer_token} if viewer_token else {})
    app.add_middleware(Access, tokens=tokens)
    return app


async def _refused_by_daemon(request: Request, exc: TriggerdError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=status_code(exc))


async def _refused(request: Request, exc: HTTPException) -> JSONResponse:
    """As FastAPI's own handler, but its message may name any file."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A query value or body field out of range or of the wrong type: the caller's fault."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)
