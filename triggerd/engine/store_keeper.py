"""The runner's writes to the data store, on a thread of their own, in order.

An executor's thread turns the crank of every run; it must never wait on MongoDB. What
the runner side writes to the data store (a run's document before its first task, DAG
times, removing a finished run's document) is queued here and done in order by one
thread. An unreachable store is a wait, not a failure: the operation at the head is
tried again, backing off up to :data:`MAX_BACKOFF` seconds, until it succeeds or it has
failed for ``give_up_after`` seconds; only then is its ``done`` told of the failure.
Errors that say something about the operation itself (a value too large, a bug) are
not retried.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from triggerd.errors import BackendUnavailable
from triggerd.health import Dependency
from triggerd.log import get_logger

__all__ = ["MAX_BACKOFF", "StoreKeeper", "unavailable", "unsent"]

_log = get_logger(__name__)
MAX_BACKOFF = 10.0
Done = Callable[[BaseException | None], None]


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be reached or written (try again later),
    rather than something about the operation itself."""
    return isinstance(exc, (BackendUnavailable, sqlite3.OperationalError, OSError))


def unsent(exc: BaseException) -> bool:
    """Whether the store surely did nothing of a request that failed with ``exc``, so
    that a write which is not idempotent (an append) may be sent again: MongoDB had no
    server to send it to; SQLite rolled the transaction back (locked, or disk I/O)."""
    return (isinstance(exc, BackendUnavailable) and exc.unsent) or isinstance(
        exc, sqlite3.OperationalError
    )


@dataclass
class _Op:
    what: str
    fn: Callable[[Any], Any]
    done: Done | None
    failing_since: float | None = None


class StoreKeeper:
    """Runs ``fn(store)`` operations in submission order on a thread; see the module doc.

    ``health`` says whether the last attempt reached the store.
    """

    def __init__(self, store: Any, *, target: str, give_up_after: float):
        self._store = store
        self._give_up_after = give_up_after
        self.health = Dependency("store", target)
        self._ops: collections.deque[_Op] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="triggerd-store-keeper", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> int:
        """Finish what is queued within ``timeout`` seconds; returns how many were left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._ops and self._thread is not None and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = len(self._ops)
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            self._thread = None
        if left:
            _log.warning(
                "data store: operations not done at shutdown",
                left=left,
                error=self.health.reading.error,
            )
        return left

    def submit(self, what: str, fn: Callable[[Any], Any], done: Done | None = None) -> None:
        """Queue ``fn(store)``; ``done(None)`` after it succeeded, ``done(exc)`` once it
        failed for good. ``done`` runs on the keeper's thread: keep it short."""
        with self._cond:
            self._ops.append(_Op(what, fn, done))
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.5
        while True:
            with self._cond:
                while not self._ops and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                op = self._ops[0]
            error = self._attempt(op)
            if error is not None and unavailable(error):
                now = time.monotonic()
                op.failing_since = op.failing_since or now
                if now - op.failing_since < self._give_up_after:
                    with self._cond:
                        if not self._closing:
                            self._cond.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                error = BackendUnavailable(
                    f"the data store ({self.health.reading.target}) was unreachable for "
                    f"{self._give_up_after:g} s (executor.give_up_after) "
                    f"while {op.what}: gave up ({error})"
                )
            backoff = 0.5
            with self._cond:
                self._ops.popleft()
                self._cond.notify_all()
            if op.done is not None:
                try:
                    op.done(error)
                except Exception:  # noqa: BLE001 - a callback's bug must not stop the keeper
                    _log.exception("data store: a completion callback failed", what=op.what)
            elif error is not None:
                _log.error(
                    "data store: an operation failed",
                    what=op.what,
                    error=f"{type(error).__name__}: {error}",
                )

    def _attempt(self, op: _Op) -> BaseException | None:
        try:
            op.fn(self._store.open())  # open: a no-op once open; a store down at start opens late
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            if unavailable(exc):
                if self.health.ok is not False:
                    _log.warning(
                        "data store unreachable: runs wait for it", error=str(exc), what=op.what
                    )
                self.health.down(f"{type(exc).__name__}: {exc}")
            return exc
        if self.health.ok is False:
            _log.info("data store answers again")
        self.health.up()
        return None
