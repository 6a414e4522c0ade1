"""What triggerd's two MongoDB users (the data store and the event log) share: how a
client is made from a URL, and how an unreachable server is reported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError

from triggerd.config import mask_url_password
from triggerd.errors import BackendUnavailable

__all__ = ["DEFAULT_DATABASE", "SERVER_SELECTION_TIMEOUT_MS", "client_for", "reports_unavailable"]

DEFAULT_DATABASE = "triggerd"  # when neither the settings nor the URL name one
SERVER_SELECTION_TIMEOUT_MS = 5000  # unless the URL says otherwise; pymongo's own is 30 s
_CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS, "appName": "triggerd"}


def client_for(url: str, **options: Any) -> MongoClient:
    """A client for ``url``: its options (auth, TLS, replicaSet) pass through unchanged;
    triggerd's defaults apply only where the URL sets nothing."""
    given = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
    defaults = {k: v for k, v in _CLIENT_DEFAULTS.items() if k.lower() not in given}
    return MongoClient(url, **defaults, **options)


@contextmanager
def reports_unavailable(
    what: str, url: str, setting: str, doing: str, outcome: str
) -> Iterator[None]:
    """pymongo's connection errors as BackendUnavailable: which server, what now."""
    try:
        yield
    except ConnectionFailure as exc:  # also ServerSelectionTimeoutError, AutoReconnect
        reason = str(exc).split(", Timeout:")[0]
        raise BackendUnavailable(
            f"the MongoDB {what} at {mask_url_password(url)} did not answer while {doing} "
            f"({reason}): {outcome}. Check that the server runs and that {setting} "
            "(host, port, credentials, TLS options) is right.",
            unsent=isinstance(exc, ServerSelectionTimeoutError),
        ) from exc
