"""Who may do what on the control API: the operator and the viewer.

On the unix socket every client is an operator: the socket's file permissions decide who
connects. On TCP the bearer token says the role: ``daemon.token_file`` an operator's,
``daemon.viewer_token_file`` a viewer's, who may only read. :class:`Access` finds the
role of each request and refuses what it may not do; handlers ask :func:`role_of`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from ..client import USER_HEADER  # who asks: triggerctl and triggerctl ui name their user
from .base import JSONResponse

__all__ = ["OPERATOR", "USER_HEADER", "VIEWER", "Access", "operator_name", "role_of", "same_origin"]

OPERATOR = "operator"  # may read and act: pause, stop, replay, start, drain, reload
VIEWER = "viewer"  # may read (GET and HEAD) only

# On the socket a browser's request must name a local host: a web page whose name an
# attacker points at 127.0.0.1 (DNS rebinding) reaches a forwarded socket (ssh -L,
# triggerctl ui) under that name, and is refused. Other clients (triggerctl, scripts)
# may send any Host.
LOCAL_HOSTS = frozenset({"triggerd", "localhost", "127.0.0.1", "[::1]"})
READING = frozenset({"GET", "HEAD"})

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[Any]]
_Send = Callable[[Any], Awaitable[None]]


def role_of(request: Request) -> str:
    """:data:`OPERATOR` or :data:`VIEWER`, as :class:`Access` found it (a viewer if unknown)."""
    return getattr(request.state, "role", VIEWER)


MAX_USER = 100  # characters of the USER_HEADER kept as who did it


def operator_name(request: Request, via: str) -> str:
    """Who asked, as the event log records it (``rule.paused``: ``data.by``). The user
    triggerctl names (:data:`USER_HEADER`) is believed on the unix socket only, where the
    file's permissions say who may connect; on TCP anyone with the token could claim it."""
    if not request.app.state.on_socket:
        return f"an operator over TCP ({via})"
    user = request.headers.get(USER_HEADER, "").strip()[:MAX_USER]
    return f"{user} ({via})" if user else f"an operator ({via})"


def same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (an ``Origin`` or ``Referer`` header) is of the site ``host``
    names (the ``Host`` header): the same host and port, http or https."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


class Access:
    """ASGI middleware: the role of each request, and the requests refused for it.

    ``tokens`` None (the unix socket): everyone is an operator, but a browser's request
    (the console's pages, or any request with ``Origin`` or ``Sec-Fetch-*``) whose
    ``Host`` is no local name is refused. Else (TCP) ``tokens`` maps a role to its bearer
    token: a request without one of them is refused (401), a viewer's request that is
    not a read too (403). Everywhere, a request that is not a read and whose ``Origin``
    is another site's is refused (403): a page of another site cannot make a browser
    pause a rule or start a run (the console's forms ask more: :mod:`.console.pages`)."""

    def __init__(self, app: Any, tokens: dict[str, str] | None):
        self._app = app
        self._tokens = (
            None
            if tokens is None
            else [(f"Bearer {token}".encode(), role) for role, token in tokens.items()]
        )

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k: v.decode("latin-1") for k, v in scope["headers"]}
        role, refusal = self._role(headers, scope["path"])
        if refusal is None and scope["method"] not in READING:
            refusal = _action_refusal(role, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})["role"] = role
        await self._app(scope, receive, send)

    def _role(self, headers: dict[bytes, str], path: str) -> tuple[str, JSONResponse | None]:
        if self._tokens is None:
            host = headers.get(b"host", "triggerd")
            if _from_browser(headers, path) and _host_name(host) not in LOCAL_HOSTS:
                return OPERATOR, _refusal(
                    403,
                    f"Host {host!r} is not a local name ({', '.join(sorted(LOCAL_HOSTS))}): "
                    "refused, as a web page of another site could be behind it",
                )
            return OPERATOR, None
        given = headers.get(b"authorization", "").encode("latin-1")
        # every token compared, so that the time taken says nothing about either
        matches = [role for expected, role in self._tokens if hmac.compare_digest(given, expected)]
        if not matches:
            return VIEWER, _refusal(401, "missing or wrong bearer token")
        return matches[0], None


def _action_refusal(role: str, headers: dict[bytes, str]) -> JSONResponse | None:
    """Why a request that is not a read is refused, or None."""
    if role != OPERATOR:
        return _refusal(
            403, "the viewer token may not pause/stop/replay/start: use the operator token"
        )
    origin = headers.get(b"origin")
    if origin is not None and not same_origin(origin, headers.get(b"host", "")):
        return _refusal(403, f"refused: a request from a page of another site ({origin})")
    return None


def _from_browser(headers: dict[bytes, str], path: str) -> bool:
    """Whether a browser sent the request: it asks for the console, or sends what
    browsers send (``Origin`` on every POST, ``Sec-Fetch-*`` on every request)."""
    return (
        path == "/ui"
        or path.startswith("/ui/")
        or b"origin" in headers
        or b"sec-fetch-site" in headers
        or b"sec-fetch-mode" in headers
    )


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without its port: ``[::1]:8470`` -> ``[::1]``."""
    name = host.lower()
    if name.startswith("["):
        return name.partition("]")[0] + "]"
    return name.partition(":")[0]


def _refusal(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)
