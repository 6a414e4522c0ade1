"""Deciding when a file has stopped changing, for filesystems inotify cannot see (NFS,
GPFS, Lustre).

A :class:`Poller` per settled watch walks its root every ``poll`` seconds and notes every
file that is new or changed since its last walk. One :class:`Settler` thread serves every
settled watch: candidates sit in a heap ordered by the time they are due for a check; the
thread sleeps on a condition until the earliest one is due (no busy loop), re-stats it,
and reports it once size, mtime and inode have not changed for the watch's settle time.
A file that vanishes is dropped without a report.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import triggerd.sources._scan as _scan
from triggerd.log import get_logger

__all__ = ["Poller", "Settler"]

StatOf = Callable[[Hashable, str], "os.stat_result | None"]

log = get_logger(__name__)


@dataclass
class _Candidate:
    signature: _scan.Signature
    since: float  # monotonic time the current signature was first seen
    settle: float
    token: int  # the heap entry that is current; older entries are stale


class Settler:
    """Report ``(owner, path, stat)`` through ``on_settled`` once a noted file stops changing."""

    def __init__(
        self, on_settled: Callable[[Hashable, str, os.stat_result], None], stat_of: StatOf
    ) -> None:
        """``stat_of(owner, path)``: the file's stat as its watch sees it (a link it does
        not follow is no file), or None."""
        self._on_settled = on_settled
        self._stat_of = stat_of
        self._cond = threading.Condition()
        self._candidates: dict[tuple[Hashable, str], _Candidate] = {}
        self._heap: list[tuple[float, int, tuple[Hashable, str]]] = []
        self._tokens = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="triggerd-settle", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._candidates.clear()
            self._heap.clear()
            self._cond.notify_all()
        if thread is not None:
            thread.join()

    def note(self, owner: Hashable, path: str, settle: float) -> None:
        """A change to ``path`` was seen (or it was found young by a scan): watch it settle."""
        st = self._stat_of(owner, path)
        key = (owner, path)
        with self._cond:
            if st is None:
                self._candidates.pop(key, None)
                return
            now = time.monotonic()
            candidate = self._candidates.get(key)
            if candidate is None:
                candidate = _Candidate(_scan.signature(st), now, settle, 0)
                self._candidates[key] = candidate
                self._push(key, candidate, now + settle)
            elif _scan.signature(st) != candidate.signature:
                candidate.signature, candidate.since = _scan.signature(st), now

    def forget(self, owner: Hashable, path: str) -> None:
        with self._cond:
            self._candidates.pop((owner, path), None)

    def drop(self, owner: Hashable) -> None:
        """Forget every candidate of ``owner`` (its watch stopped)."""
        with self._cond:
            for key in [k for k in self._candidates if k[0] is owner]:
                del self._candidates[key]

    def hand_over(self, old: Hashable, new: Hashable, settle: float) -> None:
        """``old``'s watch gives way to ``new``'s (a reload): the files waiting to settle
        for ``old`` wait for ``new`` (from now: ``settle`` seconds more)."""
        with self._cond:
            paths = [path for owner, path in self._candidates if owner is old]
        for path in paths:
            self.note(new, path, settle)

    def pending(self) -> int:
        with self._cond:
            return len(self._candidates)

    def _push(self, key: tuple[Hashable, str], candidate: _Candidate, due: float) -> None:
        self._tokens += 1
        candidate.token = self._tokens
        heapq.heappush(self._heap, (due, self._tokens, key))
        self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (
                    self._heap and self._heap[0][0] <= time.monotonic()
                ):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopping:
                    return
                due = []
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token, key = heapq.heappop(self._heap)
                    candidate = self._candidates.get(key)
                    if candidate is not None and candidate.token == token:
                        due.append((key, token))
            # stat() outside the lock: on a network filesystem it can take a while
            checked = [(key, token, self._stat_of(*key)) for key, token in due]
            ready = []
            with self._cond:
                now = time.monotonic()
                for key, token, st in checked:
                    candidate = self._candidates.get(key)
                    if candidate is None or candidate.token != token:
                        continue
                    if st is None:  # deleted before it settled: no report
                        del self._candidates[key]
                    elif _scan.signature(st) != candidate.signature:
                        candidate.signature, candidate.since = _scan.signature(st), now
                        self._push(key, candidate, now + candidate.settle)
                    elif now - candidate.since >= candidate.settle:
                        del self._candidates[key]
                        ready.append((key, st))
                    else:
                        self._push(key, candidate, candidate.since + candidate.settle)
            for (owner, path), st in ready:
                try:
                    self._on_settled(owner, path, st)
                except Exception:
                    log.exception("settled file could not be reported", path=path)


class Poller:
    """Walks one settled watch's root every ``period`` seconds, in a thread of its own, and
    calls ``changed(path)`` for every file that is new or changed since its last walk and
    ``gone(path)`` for every file that went; the first walk reports only files modified
    since the poller started (older ones are the catch-up scan's).

    ``walk()`` yields ``(path, stat)`` and checks ``stopping`` (passed to it) at every
    entry, so :meth:`stop` returns within a second however large the tree; it may raise
    :class:`~triggerd.sources._scan.TooMany` (the walk's findings so far still count).
    After every walk, ``on_walked`` hears what went wrong ("" when nothing did).
    """

    def __init__(
        self,
        walk: Callable[[Callable[[], bool]], Iterator[tuple[str, os.stat_result]]],
        period: float,
        *,
        changed: Callable[[str], None],
        gone: Callable[[str], None],
        on_walked: Callable[[str], None],
    ) -> None:
        self._walk = walk
        self._period = period
        self._changed, self._gone, self._on_walked = changed, gone, on_walked
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triggerd-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop; wait up to ``timeout`` s for it (it ends on its own)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        since_ns = time.time_ns() - 1_000_000_000
        last: dict[str, _scan.Signature] | None = None
        while not self._stopping.is_set():
            seen: dict[str, _scan.Signature] = {}
            trouble = ""
            try:
                for path, st in self._walk(self._stopping.is_set):
                    sig = seen[path] = _scan.signature(st)
                    if (last.get(path) != sig) if last is not None else st.st_mtime_ns >= since_ns:
                        self._changed(path)
            except _scan.TooMany as exc:
                trouble = str(exc)
            except Exception as exc:  # noqa: BLE001 - the next walk may do better; say why meanwhile
                log.exception("polling a settled watch failed")
                trouble = f"polling failed: {type(exc).__name__}: {exc}"
            if self._stopping.is_set():
                return
            self._on_walked(trouble)
            if last is not None:
                for path in last.keys() - seen.keys():
                    self._gone(path)
            last = seen
            self._stopping.wait(self._period)
