"""``triggerctl ui``: the console in a browser, on 127.0.0.1, through the daemon's socket.

A small proxy: every request to ``127.0.0.1:PORT`` goes on to the daemon's unix socket
as it came, and its answer comes back as it is made, a chunk at a time (live pages and
long polls are not held back until they end). Only requests that name the proxy itself
in ``Host`` are served: a web page whose name an attacker points at 127.0.0.1 (DNS
rebinding) is refused. The daemon is told who runs the proxy (``user@host``), and names
them in the event log when they press a button.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import signal
import socket
import webbrowser
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import config_option, fail, obtain_settings, reports_errors

if TYPE_CHECKING:
    import httpx

__all__ = ["ConsoleProxy", "ui"]

DEFAULT_PORT = 8470
MAX_BODY = 1 << 20  # bytes: as the daemon's own bound (a form, a workflow's parameters)
CONNECT_TIMEOUT = 10.0  # seconds to reach the daemon; answers may take as long as they take
# not passed on: they describe one connection, not the request (RFC 9110, 7.6.1)
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[Any]]
_Send = Callable[[Any], Awaitable[None]]


class ConsoleProxy:
    """ASGI app: each request for ``127.0.0.1:port`` (or ``localhost:port``) passed on to
    the daemon on ``socket_path`` with ``user`` in :data:`USER_HEADER`, and its answer
    streamed back."""

    def __init__(self, socket_path: Path, port: int, user: str):
        import httpx

        from triggerd.daemon.client import USER_HEADER

        self._socket = socket_path
        self._hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self._user = (USER_HEADER.encode(), user.encode("utf-8", "replace"))
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://triggerd",
            timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        if host not in self._hosts:
            await _answer(
                send, 403, f"refused: Host {host!r} is not this console ({sorted(self._hosts)[0]})"
            )
            return
        body = await _request_body(receive)
        if body is None:
            await _answer(send, 413, f"request body larger than {MAX_BODY} bytes")
            return
        await self._forward(scope, body, receive, send)

    async def _forward(self, scope: _Scope, body: bytes, receive: _Receive, send: _Send) -> None:
        import httpx

        # the browser's own headers (Host, Origin, Cookie: the daemon checks them), but who
        # the user is, the proxy says
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in HOP_BY_HOP and name not in (b"content-length", self._user[0])
        ]
        headers.append(self._user)
        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        request = self._client.build_request(scope["method"], target, headers=headers, content=body)
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            await _answer(send, 502, f"the daemon does not answer on {self._socket}: {exc}")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status_code,
                    "headers": [
                        (name, value)
                        for name, value in upstream.headers.raw
                        if name.lower() not in HOP_BY_HOP
                    ],
                }
            )
            await _relay(upstream, receive, send)
        finally:
            await upstream.aclose()


async def _relay(upstream: httpx.Response, receive: _Receive, send: _Send) -> None:
    """Each chunk of ``upstream`` to the browser as it arrives, until it ends or the
    browser goes away (then the daemon's answer is closed, so that a live page that is
    left does not keep its stream open)."""
    import httpx

    async def pump() -> None:
        with contextlib.suppress(httpx.TransportError, OSError):  # the daemon or browser left
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def browser_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(browser_gone())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _request_body(receive: _Receive) -> bytes | None:
    """The whole request body (forms and parameters are small); None past :data:`MAX_BODY`."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)  # the browser left: what came
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > MAX_BODY:
            return None
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: _Send, status: int, text: str) -> None:
    """A plain-text answer of the proxy's own."""
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _listen(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` (0: any free port); a clear error if taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        listener.close()
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror} (choose another --port, or 0)")
    listener.listen(128)
    listener.set_inheritable(True)
    return listener


@contextlib.contextmanager
def _quiet_uvicorn() -> Iterator[None]:
    """uvicorn's own log lines (started, shutting down) are noise for a command."""
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def _serve(proxy: ConsoleProxy, listener: socket.socket, url: str, browse: bool) -> None:
    """Serve ``proxy`` on ``listener`` until SIGINT (Ctrl-C) or SIGTERM."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # ours, below: uvicorn's would raise the signal again once it stopped

    server = Server(uvicorn.Config(proxy, log_config=None, access_log=False, lifespan="off"))

    def stop() -> None:
        # live pages never end on their own: no waiting for them
        server.should_exit = server.force_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        click.echo(f"console at {url} (Ctrl-C stops)")
        if browse:
            webbrowser.open(url)
    try:
        await serving
    finally:
        await proxy.aclose()


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--open/--no-open", "browse", default=False, help="Open the console in a web browser."
)
@config_option
@reports_errors
def ui(port: int, browse: bool, config_path: Path | None) -> None:
    """Serve the console on 127.0.0.1:PORT for a browser on this machine (or through an SSH
    tunnel to that port), by way of the daemon's unix socket: no TCP on the daemon needed.
    Buttons act as you (the event log names you); anyone who can reach the port can too."""
    from triggerd.daemon.client import ControlClient

    settings = obtain_settings(config_path)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    with ControlClient(settings.socket_path) as client:
        client.get("/status")  # the daemon answers: else say how to start it, now
    listener = _listen(port)
    port = listener.getsockname()[1]
    user = f"{getpass.getuser()}@{socket.gethostname()}"
    url = f"http://127.0.0.1:{port}/ui/"
    with _quiet_uvicorn():
        proxy = ConsoleProxy(settings.socket_path, port, user)
        asyncio.run(_serve(proxy, listener, url, browse))
