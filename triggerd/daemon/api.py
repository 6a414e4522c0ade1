"""The control API: HTTP on a unix socket (file permissions say who may use it), optionally
on TCP with a bearer token. Every route is a thin call into the daemon or its views.

Served by uvicorn inside the daemon's own event loop, so handlers run on the loop
thread and touch the dispatcher without locks. Whatever a client sends is bounded: a
request's head must arrive within :data:`HEAD_TIMEOUT` seconds (and be at most 16 KiB),
its body is at most :data:`MAX_BODY` bytes (413) with no gap longer than
:data:`BODY_TIMEOUT` seconds (408), and query values out of range are a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, responses
from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from uvicorn.protocols.http.h11_impl import H11Protocol

from triggerd import __version__
from triggerd.errors import BackendUnavailable, ConfigError, TriggerdError
from triggerd.private import read_secret
from triggerd.text import dumps

from . import views
from .events import parse_since

if TYPE_CHECKING:
    from .service import Daemon

__all__ = ["BODY_TIMEOUT", "HEAD_TIMEOUT", "MAX_BODY", "MAX_LIMIT", "ControlServer", "create_app"]

MAX_BODY = 1 << 20  # bytes: the largest request is a workflow's parameters
HEAD_TIMEOUT = 10.0  # seconds for a request's line and headers to arrive
BODY_TIMEOUT = 10.0  # seconds the body may pause between two parts
MAX_LIMIT = 100_000  # the most rows or events one query returns
_Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


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


class StartRequest(BaseModel):
    workflow: str
    params: dict[str, Any] = Field(default_factory=dict)


class PathRequest(BaseModel):
    path: str


def create_app(daemon: Daemon, *, token: str | None = None) -> FastAPI:
    app = FastAPI(title="triggerd control API", version=__version__, docs_url=None, redoc_url=None)
    app.router.route_class = _Route

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> JSONResponse:
        """As FastAPI's own handler, but its message may name any file."""
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A query value or body field out of range or of the wrong type: the caller's fault."""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)

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
        return JSONResponse(
            {"error": str(exc)}, status_code=503 if isinstance(exc, BackendUnavailable) else 400
        )

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
    async def get_runs(
        state: str | None = None,
        rule: str | None = None,
        since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        limit: _Limit = 50,
    ) -> list[dict[str, Any]]:
        states = [s for s in (state or "").split(",") if s]
        return [
            r.to_dict()
            for r in daemon.state.runs(states=states, rule=rule, since=since, limit=limit)
        ]

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
        new = _dispatcher(daemon).start_manual(
            row.workflow,
            row.params,
            rule=row.rule,
            replay_of=run_id,
            trigger=row.trigger,
            now=time.time(),
        )
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
        return {
            "draining": True,
            "running": _dispatcher(daemon).running(),
            "queued": _dispatcher(daemon).queued(),
        }

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
        limit: _Limit = 100,
        newest: bool = False,
        wait: Annotated[float, Query(ge=0.0, le=3600.0)] = 0.0,
    ) -> list[dict[str, Any]]:
        """The event log, filtered (see ``EventStore.find``); ``after`` an id and ``wait``
        seconds: long polling, for following (``triggerctl logs -f``)."""
        if daemon.eventlog is None:
            raise HTTPException(503, "the daemon is still starting")
        try:
            query = {
                "run": run,
                "workflow": workflow,
                "rule": rule,
                "kinds": kind,
                "since": parse_since(since),
                "level": level,
                "after_id": after,
                "limit": limit,
                "newest_first": newest,
            }
            found = await daemon.eventlog.find(wait=min(max(wait, 0.0), 60.0), **query)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return [e.to_dict() for e in found]

    @app.get("/eventlog/runs")
    async def event_runs(
        failed: bool = False,
        since: str | None = None,
        workflow: str | None = None,
        rule: str | None = None,
        limit: _Limit = 100,
    ) -> list[dict[str, Any]]:
        if daemon.eventlog is None:
            raise HTTPException(503, "the daemon is still starting")
        try:
            return await daemon.eventlog.runs(
                failed=failed, since=parse_since(since), workflow=workflow, rule=rule, limit=limit
            )
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


class _Refused(HTTPException):
    """Raised while the body is read; FastAPI turns it into its status code, and the
    connection is closed after it (the rest of the body is not read)."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(status_code, detail, headers={"connection": "close"})


class _Bounded:
    """ASGI middleware: a body of at most :data:`MAX_BODY` bytes (413, refused by its
    Content-Length before it is read, or as soon as it grows past), and no pause longer
    than :data:`BODY_TIMEOUT` seconds while it arrives (408)."""

    def __init__(self, app: Any):
        self._app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            code, text = (
                (413, f"request body larger than {MAX_BODY} bytes")
                if length.isdigit()
                else (400, "bad Content-Length")
            )
            response = JSONResponse(
                {"error": text}, status_code=code, headers={"connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def bounded() -> Any:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT)
            except TimeoutError:
                raise _Refused(
                    408, f"request body stalled for more than {BODY_TIMEOUT:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    raise _Refused(413, f"request body larger than {MAX_BODY} bytes")
            return message

        await self._app(scope, bounded, send)


class _TimedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for each request's head: a client that
    connects and then sends its request line and headers slower than :data:`HEAD_TIMEOUT`
    is disconnected (uvicorn alone waits for a half-sent request for ever)."""

    _head_timer: asyncio.TimerHandle | None = None
    _waiting_after: Any = None  # the request cycle before the awaited one

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def handle_events(self) -> None:
        super().handle_events()
        if (
            self._head_timer is not None
            and self.cycle is not None
            and self.cycle is not self._waiting_after
        ):
            self._head_timer.cancel()  # the head is in
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._waiting_after = self.cycle
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _clear_socket_path(path: Path) -> None:
    """Remove what a daemon that died left at the socket path, and nothing else: a path
    that is not a socket, or a socket another process still answers on, is refused."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(
            f"{path} exists and is not a socket: refusing to replace it (remove it, or set daemon.socket)",
            key="daemon.socket",
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody answers: a stale socket
        return
    finally:
        probe.close()
    raise ConfigError(
        f"another process answers on {path}: is triggerd already running?", key="daemon.socket"
    )


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
        _clear_socket_path(self._socket)
        options = {"log_config": None, "access_log": False, "lifespan": "off", "http": _TimedH11}
        configs = [
            uvicorn.Config(_Bounded(create_app(self._daemon)), uds=str(self._socket), **options)
        ]
        if self._tcp:
            assert self._token_file is not None
            token = read_secret(self._token_file, what="API token", key="daemon.token_file")
            host, _, port = self._tcp.rpartition(":")
            configs.append(
                uvicorn.Config(
                    _Bounded(create_app(self._daemon, token=token)),
                    host=host,
                    port=int(port),
                    **options,
                )
            )
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
