"""The control API: HTTP on a unix socket (file permissions say who may use it), optionally
on TCP with a bearer token.

Routes are grouped by what they are about (``runs``, ``rules``, ``events``, ``paths``,
``service``); each is a thin call into the daemon through
:class:`~triggerd.daemon.control.DaemonControl`, and the errors it raises are mapped to
status codes in one place (:mod:`.app`). :mod:`.server` serves the app inside the daemon's
own event loop, so handlers run on the loop thread and touch the dispatcher without locks,
and bounds whatever a client sends (:data:`HEAD_TIMEOUT`, :data:`MAX_BODY`,
:data:`BODY_TIMEOUT`).
"""

from __future__ import annotations

from .app import create_app
from .base import MAX_LIMIT
from .server import BODY_TIMEOUT, HEAD_TIMEOUT, MAX_BODY, ControlServer

__all__ = ["BODY_TIMEOUT", "HEAD_TIMEOUT", "MAX_BODY", "MAX_LIMIT", "ControlServer", "create_app"]
