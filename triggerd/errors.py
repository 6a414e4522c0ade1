"""The one root of triggerd's errors, and subclasses that say whose fault it is.

This module is a leaf: every layer (including ``flow``) may import it, it imports nothing
of ours.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "InternalError",
    "NotFound",
    "NotReady",
    "RuleNotFound",
    "RunEnded",
    "RunNotFound",
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


# -- what a request to the daemon may meet (the control API maps each to its status code) --


class NotFound(TriggerdError):
    """What a request names does not exist."""


class RunNotFound(NotFound):
    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"no run {run_id} (see: triggerctl runs)")


class RuleNotFound(NotFound):
    def __init__(self, rule: str):
        self.rule = rule
        super().__init__(f"no rule '{rule}' (see: triggerctl rules)")


class Conflict(TriggerdError):
    """The request does not fit the state of what it names."""


class RunEnded(Conflict):
    def __init__(self, run_id: str, state: str):
        self.run_id = run_id
        self.state = state
        super().__init__(f"run {run_id} already ended ({state})")


class NotReady(TriggerdError):
    """The daemon is still starting: ask again shortly."""

    def __init__(self) -> None:
        super().__init__("the daemon is still starting")
