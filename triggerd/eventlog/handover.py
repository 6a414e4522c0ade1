"""Events a short-lived writer could not store, handed over to the next one that can.

``triggerctl run`` records its run's events itself (no daemon need run), and ends soon
after its run: an event store that is away then (MongoDB restarting) must not hold it up
nor lose the events. Such a writer takes a :class:`Handover` in a directory (the state
directory: files ``events-run-<run id>.*``, all the daemon's own, none triggers a rule):
its :class:`~triggerd.eventlog.forwarder.EventWriter` keeps every event in the handover's
pending file until it is stored or spooled, and spools to the handover's spool file. A
lock (``flock``) held while the writer lives tells the others to keep away.

What is left when it ends (the store was down, or the process was killed) is taken over
by :func:`adopt`, which the daemon calls at start and ``triggerctl run`` calls too: the
events go to the caller's writer, then the files go. Inserts are idempotent by event id,
so an event both spooled and pending, or adopted twice, is stored once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

from triggerd.log import get_logger

from .schema import LogEvent

__all__ = ["Handover", "adopt"]

_log = get_logger(__name__)
_PREFIX = "events-run-"  # in a directory that holds other files too (the state directory)
_KINDS = (".pending.jsonl", ".spool.jsonl", ".lock")


class Handover:
    """The files of one writer named ``name`` (a run id) in ``directory``, locked by
    :meth:`claim` until :meth:`release`."""

    def __init__(self, directory: Path, name: str):
        self.directory = Path(directory)
        self.name = name
        self.pending = self.directory / f"{_PREFIX}{name}.pending.jsonl"
        self.spool = self.directory / f"{_PREFIX}{name}.spool.jsonl"
        self._lock = self.directory / f"{_PREFIX}{name}.lock"
        self._fd = -1

    def claim(self) -> Handover:
        """Take the lock, in a directory that exists (raises OSError if it cannot)."""
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def left(self) -> int:
        """How many events its files hold (those not yet stored, perhaps some twice)."""
        return sum(_count(path) for path in (self.pending, self.spool))

    def release(self) -> int:
        """Remove the files that hold nothing, give up the lock; returns how many events
        stay for :func:`adopt` (0: everything was stored, nothing is left behind)."""
        left = self.left()
        if not left:
            for path in (self.pending, self.spool):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        if self._fd >= 0:
            if not left:
                with contextlib.suppress(FileNotFoundError):
                    # before the unlock: an adopter that opened it finds no files
                    self._lock.unlink()
            os.close(self._fd)
            self._fd = -1
        return left


def adopt(directory: Path, put: Callable[[LogEvent], None]) -> int:
    """Hand the events every writer left in ``directory`` (and that no live writer holds)
    to ``put``, oldest file first, then remove their files; returns how many."""
    try:
        names = sorted(
            {
                p.name[len(_PREFIX) :].split(".", 1)[0]
                for p in Path(directory).iterdir()
                if p.name.startswith(_PREFIX) and p.name.endswith(_KINDS)
            }
        )
    except FileNotFoundError:
        return 0
    adopted = 0
    for name in names:
        handover = Handover(directory, name)
        try:
            handover.claim()
        except OSError:
            continue  # its writer still runs
        try:
            for path in (handover.spool, handover.pending):
                events = _read(path)
                for event in events:
                    put(event)
                adopted += len(events)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        finally:
            handover.release()
    if adopted:
        _log.info(
            "storing events a `triggerctl run` could not store",
            events=adopted,
            directory=str(directory),
        )
    return adopted


def _read(path: Path) -> list[LogEvent]:
    """The events of a JSON-lines file; a line cut short by a crash is skipped."""
    events = []
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    events.append(LogEvent.from_dict(json.loads(line)))
    except FileNotFoundError:
        pass
    return events


def _count(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0
