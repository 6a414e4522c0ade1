"""State writes that wait, in order, while the state file cannot be written.

Everything the daemon decides is written to its state file (a file version dispatched, a
run queued, submitted, ended) on its event loop. When the disk under the state directory
is full, a write raises :class:`~triggerd.daemon.state.StateUnavailable`; losing the
decision (a file never dispatched, a run "running" forever) is not an option, and neither
is reordering (a run's end written before its start). So each such action is a closure
run through :meth:`StateWrites.run`: at once if nothing waits, else queued behind what
does; a failed one waits at the head and is tried again every :data:`RETRY` seconds
until the disk has room. ``health`` says whether the state file takes writes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from pathlib import Path

from triggerd.health import Dependency
from triggerd.log import get_logger

from .state import StateUnavailable

__all__ = ["RETRY", "StateWrites"]

RETRY = 1.0
_log = get_logger("triggerd.daemon")


class StateWrites:
    """Runs state-writing closures in order on the daemon's loop; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, state_file: Path):
        self._loop = loop
        self._waiting: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._retry: asyncio.TimerHandle | None = None
        self.health = Dependency("state file", str(state_file))

    def waiting(self) -> int:
        return len(self._waiting)

    def run(self, what: str, action: Callable[[], None]) -> None:
        """``action()`` now, or after the actions already waiting if any are."""
        if self._waiting:
            self._waiting.append((what, action))
            return
        try:
            action()
        except StateUnavailable as exc:
            self._waiting.append((what, action))
            self._down(exc, what)
            return
        if self.health.ok is None:
            self.health.up()

    def _down(self, exc: StateUnavailable, what: str) -> None:
        if self.health.ok is not False:
            _log.error(
                "the state file cannot be written: triggers and run states wait in memory, "
                "in order, until it can (nothing is dropped; a crash meanwhile loses them)",
                error=str(exc),
                doing=what,
            )
        self.health.down(str(exc))
        if self._retry is None:
            self._retry = self._loop.call_later(RETRY, self._again)

    def _again(self) -> None:
        self._retry = None
        while self._waiting:
            what, action = self._waiting[0]
            try:
                action()
            except StateUnavailable as exc:
                self._down(exc, what)
                return
            self._waiting.popleft()
        if self.health.ok is False:
            _log.info("the state file takes writes again: what waited is written")
        self.health.up()
