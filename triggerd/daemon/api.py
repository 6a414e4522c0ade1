"""The control API: HTTP on a unix socket (file permissions say who may use it), optionally
on TCP with a bearer token. Every route is a thin call into the daemon or its views.

Served by uvicorn inside the daemon's own event loop, so handlers run on the loop
thread and touch the dispatcher without locks.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from triggerd import __version__
from triggerd.errors import BackendUnavailable, TriggerdError

from . import views
from .events import parse_since

if TYPE_CHECKING:
    from .service import Daemon

__all__ = ["ControlServer", "create_app"]


class StartRequest(BaseModel):
    workflow: str
    params: dict[str, Any] = Field(default_factory=dict)


class PathRequest(BaseModel):
    path: str


def create_app(daemon: Daemon, *, token: str | None = None) -> FastAPI:
    app = FastAPI(title="triggerd control API", version=__version__, docs_url=None, redoc_url=None)

    if token is not None:

        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
            return await call_next(request)

    @app.exception_handler(TriggerdError)
    async def triggerd_error(request: Request, exc: TriggerdError) -> JSONResponse:
        # A service the daemon needs is away (503: ask again later); else the request's fault.
        return JSONResponse({"error": str(exc)}, status_code=503 if isinstance(exc, BackendUnavailable) else 400)

    @app.get("/status")
    async def get_status() -> dict[str, Any]:
        return views.status(daemon)

    @app.get("/rules")
    async def get_rules() -> list[dict[str, Any]]:
        return views.rules_view(daemon)

    @app.post("/rules/{name}/{action}")
    async def pause_resume(name: str, action: str) -> dict[str, Any]:
        if action not in ("pause", "resume"):
            raise HTTPException(404, f"unknown action '{action}' (pause or resume)")
        try:
            paused = daemon.set_paused(name, action == "pause", by="an operator")
        except KeyError:
            raise HTTPException(404, f"no rule '{name}' (see: triggerctl rules)") from None
        return {"rule": name, "paused": paused}

    @app.get("/runs")
    async def get_runs(state: str | None = None, rule: str | None = None, since: float | None = None, limit: int = 50) -> list[dict[str, Any]]:
        states = [s for s in (state or "").split(",") if s]
        return [r.to_dict() for r in daemon.state.runs(states=states, rule=rule, since=since, limit=limit)]

    @app.get("/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        row = daemon.state.run(run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id} (see: triggerctl runs)")
        return row.to_dict()

    @app.post("/runs")
    async def start_run(request: StartRequest) -> dict[str, Any]:
        daemon.validate_start(request.workflow, request.params)
        run_id = _dispatcher(daemon).start_manual(request.workflow, request.params, now=time.time())
        return {"run_id": run_id}

    @app.post("/runs/{run_id}/stop")
    async def stop_run(run_id: str) -> dict[str, Any]:
        result = daemon.stop_run(run_id)
        if not result["ok"]:
            raise HTTPException(404 if "no run" in result["error"] else 409, result["error"])
        return result

    @app.post("/runs/{run_id}/replay")
    async def replay(run_id: str) -> dict[str, Any]:
        row = daemon.state.run(run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id} (see: triggerctl runs)")
        daemon.validate_start(row.workflow, row.params)
        new = _dispatcher(daemon).start_manual(row.workflow, row.params, rule=row.rule, replay_of=run_id, trigger=row.trigger, now=time.time())
        return {"run_id": new, "replay_of": run_id}

    @app.post("/test-trigger")
    async def test_trigger(request: PathRequest) -> dict[str, Any]:
        return views.test_trigger(daemon, request.path)

    @app.post("/explain")
    async def explain(request: PathRequest) -> dict[str, Any]:
        return views.explain(daemon, request.path)

    @app.post("/drain")
    async def drain() -> dict[str, Any]:
        _dispatcher(daemon).draining = True
        daemon.notify("daemon.draining", "draining: no new triggers are taken; running runs finish")
        return {"draining": True, "running": _dispatcher(daemon).running(), "queued": _dispatcher(daemon).queued()}

    @app.post("/reload")
    async def reload() -> dict[str, Any]:
        return await daemon.reload()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        """Prometheus text format."""
        return daemon.metrics.render(daemon)

    @app.get("/events")
    async def events(
        run: str | None = None,
        workflow: str | None = None,
        rule: str | None = None,
        kind: Annotated[list[str] | None, Query()] = None,
        since: str | None = None,
        level: str | None = None,
        after: str | None = None,
        limit: int = 100,
        newest: bool = False,
        wait: float = 0.0,
    ) -> list[dict[str, Any]]:
        """The event log, filtered (see ``EventStore.find``); ``after`` an id and ``wait``
        seconds: long polling, for following (``triggerctl logs -f``)."""
        if daemon.eventlog is None:
            raise HTTPException(503, "the daemon is still starting")
        try:
            query = {"run": run, "workflow": workflow, "rule": rule, "kinds": kind, "since": parse_since(since),
                     "level": level, "after_id": after, "limit": limit, "newest_first": newest}  # fmt: skip
            found = await daemon.eventlog.find(wait=min(max(wait, 0.0), 60.0), **query)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return [e.to_dict() for e in found]

    @app.get("/eventlog/runs")
    async def event_runs(failed: bool = False, since: str | None = None, workflow: str | None = None, rule: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if daemon.eventlog is None:
            raise HTTPException(503, "the daemon is still starting")
        try:
            return await daemon.eventlog.runs(failed=failed, since=parse_since(since), workflow=workflow, rule=rule, limit=limit)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.get("/eventlog/runs/{run_id}")
    async def event_run(run_id: str) -> dict[str, Any]:
        if daemon.eventlog is None:
            raise HTTPException(503, "the daemon is still starting")
        found = await daemon.eventlog.run(run_id)
        if found is None:
            raise HTTPException(404, f"no events of run {run_id} in the event log")
        return found

    return app


def _dispatcher(daemon: Daemon) -> Any:
    if daemon.dispatcher is None:
        raise HTTPException(503, "the daemon is still starting")
    return daemon.dispatcher


class _QuietServer(uvicorn.Server):
    """uvicorn in someone else's loop: the daemon owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlServer:
    """The API on the unix socket and, if configured, on TCP."""

    def __init__(self, daemon: Daemon):
        settings = daemon.settings
        self._socket = Path(settings.socket_path)
        self._mode = settings.daemon.socket_mode
        self._servers: list[_QuietServer] = []
        self._tasks: list[Any] = []
        self._daemon = daemon
        self._tcp = settings.daemon.tcp
        self._token_file = settings.daemon.token_file

    async def start(self) -> None:
        import asyncio

        self._socket.parent.mkdir(parents=True, exist_ok=True)
        if self._socket.exists():
            self._socket.unlink()  # a stale socket of a daemon that died
        configs = [uvicorn.Config(create_app(self._daemon), uds=str(self._socket), log_config=None, access_log=False, lifespan="off")]
        if self._tcp:
            assert self._token_file is not None
            token = self._token_file.read_text().strip()
            host, _, port = self._tcp.rpartition(":")
            configs.append(uvicorn.Config(create_app(self._daemon, token=token), host=host, port=int(port), log_config=None, access_log=False, lifespan="off"))
        for config in configs:
            server = _QuietServer(config)
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(server.serve()))
        while not all(s.started for s in self._servers):
            if any(t.done() for t in self._tasks):
                for t in self._tasks:
                    if t.done() and t.exception():
                        raise t.exception()  # type: ignore[misc]
                raise OSError("the control API did not start")
            await asyncio.sleep(0.01)
        os.chmod(self._socket, self._mode)

    async def stop(self) -> None:
        import asyncio

        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()
