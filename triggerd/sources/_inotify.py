"""What watchdog's inotify observer does not tell its handlers, found out another way.

Private helpers of :mod:`triggerd.sources.files`: noticing a kernel queue overflow (watchdog
only logs it), counting the directories a recursive watch really covers (a subdirectory
over the watch limit is skipped silently), and saying what an OSError means to the person
who has to fix it.
"""

from __future__ import annotations

import errno
import logging
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "OVERFLOW_LOGGER",
    "OverflowHandler",
    "describe",
    "quiet_duplicate_callback_warnings",
    "watched_dirs",
]

# watchdog reports a kernel queue overflow only as a WARNING on this logger.
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"


class OverflowHandler(logging.Handler):
    """Calls ``on_overflow`` on watchdog's "Inotify queue overflowed" warning."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if "overflow" in message.lower():
            self._on_overflow()


def watched_dirs(observer: Any, observed: Any) -> int | None:
    """Directories inotify watches for ``observed``, or None if watchdog's internals differ."""
    try:
        for emitter in list(observer.emitters):
            if emitter.watch == observed:
                return len(emitter._inotify._active_callbacks_by_path)
    except Exception:  # another watchdog version, or a watch being stopped
        return None
    return None


def quiet_duplicate_callback_warnings() -> None:
    """watchdog warns each time a directory made with ``mkdir -p`` gets its (harmless) watch
    twice."""
    warnings.filterwarnings(
        "ignore", message=r"Callback with id '\d+' already exists", category=RuntimeWarning
    )


def describe(exc: OSError, root: str) -> str:
    """What is wrong with watching ``root``, and what to do about it."""
    if exc.errno == errno.ENOSPC:
        return (
            "inotify watch limit reached "
            f"(fs.inotify.max_user_watches={_sysctl('max_user_watches')}): "
            "raise it, or use complete = 'settled' (polling)"
        )
    if exc.errno == errno.EMFILE and "inotify" in str(exc):
        return (
            "inotify instance limit reached "
            f"(fs.inotify.max_user_instances={_sysctl('max_user_instances')}): "
            "raise it, or use complete = 'settled' (polling)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {root}"
    if exc.errno == errno.ENOTDIR:
        return f"not a directory: {root}"
    return f"cannot watch {root}: {exc.strerror or exc}"


def _sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/fs/inotify/{name}") as f:
            return f.read().strip()
    except OSError:
        return "?"
