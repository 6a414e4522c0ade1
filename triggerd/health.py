"""The state of one service triggerd depends on (the broker, the data store, the event log).

A leaf module, like :mod:`triggerd.errors`: every layer may import it. The part that
talks to the service owns its :class:`Dependency` and calls :meth:`Dependency.up` or
:meth:`Dependency.down` from its own thread after each attempt; anyone may read it (one
attribute read is atomic, and a reader only ever sees a whole :class:`Reading`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Dependency", "Reading", "patiently"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Reading:
    """What is known of a dependency now: ``ok`` None until the first attempt."""

    name: str
    target: str  # where it is, for people: a URL without its password, a file
    ok: bool | None
    since: float  # when ``ok`` last changed (or the dependency was made)
    error: str = ""

    @property
    def state(self) -> str:
        return "unknown" if self.ok is None else "up" if self.ok else "down"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "state": self.state,
            "since": self.since,
            "error": self.error,
        }


def patiently(
    attempt: Callable[[], _T],
    *,
    away: Callable[[BaseException], bool],
    give_up_after: float,
    max_backoff: float,
    on_first: Callable[[BaseException], Any] = lambda exc: None,
    sleep: Callable[[float], Any] = time.sleep,
) -> _T:
    """``attempt()``, again while it fails because a service is ``away`` (backing off from
    0.5 s to ``max_backoff``), for up to ``give_up_after`` seconds; then, or for any other
    error, it raises what ``attempt`` raised. ``on_first`` hears of the first failure."""
    deadline = time.monotonic() + give_up_after
    backoff = 0.5
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not away(exc) or time.monotonic() + backoff > deadline:
                raise
            if backoff == 0.5:
                on_first(exc)
            sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


class Dependency:
    """One service's state, changed only by the thread that uses the service."""

    def __init__(self, name: str, target: str):
        self._reading = Reading(name, target, None, time.time())

    @property
    def reading(self) -> Reading:
        return self._reading

    @property
    def ok(self) -> bool | None:
        return self._reading.ok

    def up(self) -> None:
        if self._reading.ok is not True:
            r = self._reading
            self._reading = Reading(r.name, r.target, True, time.time())

    def down(self, error: str) -> None:
        r = self._reading
        since = r.since if r.ok is False else time.time()
        self._reading = Reading(r.name, r.target, False, since, error)
