"""The one root of triggerd's errors, and subclasses that say whose fault it is.

This module is a leaf: every layer (including ``flow``) may import it, it imports nothing
of ours.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "InternalError",
    "TriggerdError",
]


class TriggerdError(Exception):
    """Root of every error triggerd raises on purpose."""


class ConfigError(TriggerdError):
    """The configuration, a rule or a workflow definition is wrong: the user's to fix.

    ``source`` names the file (or workflow), ``key`` the setting, when known.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.reason = message
        where = ": ".join(p for p in (source, f"key '{key}'" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class BackendUnavailable(TriggerdError):
    """A backend (Redis, MongoDB, a worker pool) cannot be reached; says what happens now.

    ``unsent``: the request never reached the server (no server could be selected), so
    repeating it cannot do it twice; False when it may have been done before the
    connection broke."""

    def __init__(self, message: str, *, unsent: bool = False):
        self.unsent = unsent
        super().__init__(message)


class InternalError(TriggerdError):
    """triggerd's own bug, e.g. an invalid state transition. Please report it."""
