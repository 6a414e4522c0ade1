"""The control API's client, for triggerctl and scripts: HTTP over the daemon's unix socket."""

from __future__ import annotations

import getpass
import os
import socket as _socket
from pathlib import Path
from typing import Any

import httpx

from triggerd.errors import BackendUnavailable, TriggerdError
from triggerd.text import dumps

__all__ = ["USER_HEADER", "ApiError", "ControlClient", "DaemonNotRunning"]

#: The header in which triggerctl names its user (``user@host``); the daemon records it as
#: who paused a rule, and believes it on the unix socket only (api/access.py).
USER_HEADER = "x-triggerd-user"


def _user() -> str:
    try:
        return f"{getpass.getuser()}@{_socket.gethostname()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"uid {os.getuid()}@{_socket.gethostname()}"


class DaemonNotRunning(BackendUnavailable):
    """No daemon answers on the socket; the message says how to start one."""


class ApiError(TriggerdError):
    """The daemon refused a request; the message is the daemon's."""

    def __init__(self, message: str, status: int):
        self.status = status
        super().__init__(message)


class ControlClient:
    """``ControlClient(socket)`` or ``ControlClient(url="http://host:port", token=...)``."""

    def __init__(
        self,
        socket: Path | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ):
        if (socket is None) == (url is None):
            raise ValueError("give either a unix socket path or a URL")
        # Who asks: the daemon records it with a pause (believed on the unix socket only).
        headers = {USER_HEADER: _user()}
        if token:
            headers["authorization"] = f"Bearer {token}"
        transport = httpx.HTTPTransport(uds=str(socket)) if socket is not None else None
        self._where = f"unix socket {socket}" if socket is not None else str(url)
        self._http = httpx.Client(
            base_url=url or "http://triggerd", transport=transport, headers=headers, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(
                f"daemon not running (nothing answers on the {self._where}): start it with "
                "'triggerd run' (or 'systemctl start triggerd'), or point --config at its settings"
            ) from exc
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(
                f"the daemon did not answer within the timeout ({self._where})"
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("error") or body.get("detail") or response.text
            except ValueError:
                message = response.text
            raise ApiError(str(message), response.status_code)
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        # Not httpx's json=: it cannot encode a file name that is not UTF-8 (triggerd.text).
        content = None if body is None else dumps(body).encode()
        return self.request(
            "POST", path, content=content, headers={"content-type": "application/json"}
        )
