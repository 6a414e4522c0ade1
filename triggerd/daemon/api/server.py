"""Serving the control API in the daemon's own event loop, on the unix socket and, if
configured, on TCP; and bounding what a client may send: a request's head must arrive
within :data:`HEAD_TIMEOUT` seconds (and be at most 16 KiB), its body is at most
:data:`MAX_BODY` bytes (413) with no gap longer than :data:`BODY_TIMEOUT` seconds (408)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from triggerd.errors import ConfigError

from ..checks import read_api_tokens
from .app import create_app
from .base import JSONResponse
from .console.stream import streams_of

if TYPE_CHECKING:
    from triggerd.config import Settings

    from ..control import DaemonControl

__all__ = ["BODY_TIMEOUT", "HEAD_TIMEOUT", "MAX_BODY", "ControlServer"]

MAX_BODY = 1 << 20  # bytes: the largest request is a workflow's parameters
HEAD_TIMEOUT = 10.0  # seconds for a request's line and headers to arrive
BODY_TIMEOUT = 10.0  # seconds the body may pause between two parts


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
        body_done = False

        async def bounded() -> Any:
            nonlocal received, body_done
            if body_done:  # what comes now is the disconnect, whenever the client leaves
                return await receive()  # (a stream's answer listens for it as long as it runs)
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
                body_done = not message.get("more_body", False)
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
            f"{path} exists and is not a socket: refusing to replace it "
            "(remove it, or set daemon.socket)",
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

    def __init__(self, control: DaemonControl, settings: Settings):
        self._socket = Path(settings.socket_path)
        self._mode = settings.daemon.socket_mode
        self._servers: list[_QuietServer] = []
        self._apps: list[Any] = []
        self._tasks: list[Any] = []
        self._control = control
        self._tcp = settings.daemon.tcp
        self._daemon_settings = settings.daemon

    async def start(self) -> None:
        self._socket.parent.mkdir(parents=True, exist_ok=True)
        _clear_socket_path(self._socket)
        options = {"log_config": None, "access_log": False, "lifespan": "off", "http": _TimedH11}
        self._apps = [create_app(self._control)]
        configs = [uvicorn.Config(_Bounded(self._apps[0]), uds=str(self._socket), **options)]
        if self._tcp:
            token, viewer_token = read_api_tokens(self._daemon_settings)
            host, _, port = self._tcp.rpartition(":")
            self._apps.append(create_app(self._control, token=token, viewer_token=viewer_token))
            configs.append(
                uvicorn.Config(
                    _Bounded(self._apps[-1]),
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
        for app in self._apps:  # uvicorn waits for every answer to end, a stream's too
            streams_of(app).close()
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()
