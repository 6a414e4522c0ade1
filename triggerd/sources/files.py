"""The file source: watch directories, emit a :class:`FileEvent` once a file is complete.

A :class:`~triggerd.sources.watch.FileWatch` names a directory and what makes a file in
it complete (its ``complete`` mode, described in :mod:`triggerd.sources.watch`).

Nothing is silently missed where it can be helped: files written into a new directory
before its inotify watch landed are found by scanning it; a watch root that does not
exist yet is waited for and scanned once it appears; an inotify queue overflow (which
watchdog only logs) sets the state to ``overflow`` and rescans; a watch-limit or
permission error is reported through ``on_health`` and retried. Scans may report a file
twice (the daemon's ledger deduplicates by path, inode, size and mtime); a file still
open for writing is left to its coming close event. A file deleted before it was
complete gives nothing.

Symbolic links are not files: by default none is followed or reported, in any mode or
scan. A watch with ``follow_symlinks`` reports a link to a regular file (under the link's
own path, with its target's size, mtime and inode, and the target as ``link_to``) and
walks a linked directory, but only where the target resolves inside the watch's
``within`` roots; a directory reached twice (a loop) is walked once. The daemon's own
files (``own_dirs``' entries, ``own_files``) are never reported, whatever leads to them.
File names are kept as Python gives them (undecodable bytes as surrogate escapes).
No watchdog object leaves this module: the outside sees FileEvents and health dicts.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from watchdog import events as wd
from watchdog.observers.inotify import InotifyObserver

import triggerd.sources._inotify as _inotify
import triggerd.sources._scan as _scan
from triggerd.log import get_logger
from triggerd.sources._settle import Poller, Settler
from triggerd.sources.events import FileEvent
from triggerd.sources.watch import FileWatch

__all__ = ["HEALTH_STATES", "OVERFLOW_LOGGER", "FileSource"]

OVERFLOW_LOGGER = _inotify.OVERFLOW_LOGGER
HEALTH_STATES = ("watching", "waiting", "error", "overflow", "rescanning")

log = get_logger(__name__)

_RECENT = 4096  # identities remembered per watch, so rescans do not repeat what was just emitted
_PARTIAL_RETRY = 30.0  # seconds between attempts to watch a tree that hit the watch limit
_FOLLOWUP = 2.0  # seconds from an overflow rescan to the quiet one that follows it

# Only what each mode needs reaches the kernel mask: no IN_MODIFY per write() for inotify.
_DIRS = [wd.DirCreatedEvent, wd.DirMovedEvent, wd.DirDeletedEvent]
_FILTERS: dict[str, list[type[wd.FileSystemEvent]]] = {
    "closed": [wd.FileClosedEvent, wd.FileMovedEvent, *_DIRS],
    "moved": [wd.FileMovedEvent, *_DIRS],
    "marker": [wd.FileCreatedEvent, wd.FileClosedEvent, wd.FileMovedEvent, *_DIRS],
}


@dataclass(eq=False)
class _Live:
    """A watch at run time. Compared and hashed by identity (it keys settle candidates)."""

    spec: FileWatch
    state: str = "waiting"
    message: str = ""
    active: bool = True  # False once removed by update(): late events are dropped
    observed: Any = None  # the inotify ObservedWatch while scheduled
    handler: Any = None
    poller: Poller | None = None  # a settled watch's walker
    root_id: tuple[int, int] | None = None
    dirs: int = 0
    events: int = 0
    last_event: float | None = None
    recent: OrderedDict[tuple[str, int, int, int], None] = field(default_factory=OrderedDict)
    retry_at: float = 0.0
    rescan: bool = False
    followup: float = 0.0  # monotonic time of a quiet second rescan after an overflow

    @property
    def running(self) -> bool:
        return self.observed is not None or self.poller is not None


class _Handler(wd.FileSystemEventHandler):
    def __init__(self, source: FileSource, live: _Live) -> None:
        self._source, self._live = source, live

    def dispatch(self, event: wd.FileSystemEvent) -> None:
        self._source._on_fs_event(self._live, event)


class FileSource:
    """Watches ``watches`` and calls ``emit(FileEvent)`` for every complete file.

    ``emit`` and ``on_health(root, state, message)`` are called from watchdog and timer
    threads; both must be cheap and thread-safe. ``reconcile`` (seconds) adds a quiet
    periodic rescan of every watch; ``retry`` is how often missing or failing roots are
    tried again. Call :meth:`scan` after :meth:`start`, so that a file still being written
    (skipped by the scan) is reported by the running watch when it completes.
    """

    def __init__(
        self,
        watches: Iterable[FileWatch],
        emit: Callable[[FileEvent], None],
        *,
        on_health: Callable[[str, str, str], None] | None = None,
        reconcile: float | None = None,
        retry: float = 1.0,
        own_dirs: Iterable[str | os.PathLike[str]] = (),
        own_files: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self._emit = emit
        self._own_dirs = frozenset(os.path.realpath(d) for d in own_dirs)
        self._own_files = frozenset(os.path.realpath(f) for f in own_files)
        self._on_health = on_health
        self._reconcile = reconcile
        self._retry = retry
        self._lock = threading.RLock()  # state; never held while calling into watchdog
        self._ops = threading.RLock()  # start/stop/update/(de)activation; calls into watchdog
        self._lives: dict[FileWatch, _Live] = {spec: _Live(spec) for spec in dict.fromkeys(watches)}
        self._observer: InotifyObserver | None = None  # one for every inotify watch
        self._refs: dict[Any, int] = {}  # ObservedWatch -> lives sharing it (same root and filter)
        self._settler = Settler(self._on_settled, lambda owner, path: self._stat(owner.spec, path))
        self._overflow = _inotify.OverflowHandler(self._on_overflow)
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
        self._started = False
        self._stopping = False
        self._next_reconcile = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start observers for every watch; a missing or failing root is retried, never fatal."""
        with self._ops:
            if self._started:
                return
            self._started, self._stopping = True, False
            overflow_log = logging.getLogger(OVERFLOW_LOGGER)
            overflow_log.addHandler(self._overflow)
            if not overflow_log.isEnabledFor(logging.WARNING):
                overflow_log.setLevel(logging.WARNING)  # the warning must exist for us to see it
            _inotify.quiet_duplicate_callback_warnings()
            self._settler.start()
            for live in list(self._lives.values()):
                self._activate(live, scan=False)
            if self._reconcile:
                self._next_reconcile = time.monotonic() + self._reconcile
            self._keeper = threading.Thread(target=self._keep, name="triggerd-files", daemon=True)
            self._keeper.start()

    def stop(self) -> None:
        """Stop every observer and thread, and wait for them."""
        with self._ops:
            if not self._started:
                return
            self._stopping = True
            self._wake.set()
            keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.join()
        with self._ops:
            for live in self._lives.values():
                self._deactivate(live)
            if self._observer is not None:
                self._observer.stop()
                self._observer.join()
                self._observer = None
            self._settler.stop()
            logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._overflow)
            self._started = False
            self._wake.clear()

    def update(self, watches: Iterable[FileWatch]) -> None:
        """Reload: start new watches, then stop dropped ones; unchanged ones keep running
        untouched.

        A changed watch (the same root with another ignore list, say) is a new watch and a
        dropped one. The new one is running before the old one stops, takes over what the
        old one already reported (not reporting it again) and the files it was waiting on
        to settle; while both run, a file may reach both (the daemon's ledger keeps it
        from running twice). One gap remains, in watchdog: an event it is handing out
        while the old handler goes may reach neither, as watchdog picks the handlers
        before it calls them. So the daemon rescans a changed watch's root after a reload
        for files that arrived meanwhile and are not in its ledger.
        """
        wanted = dict.fromkeys(watches)
        with self._ops:
            with self._lock:
                removed = [live for spec, live in self._lives.items() if spec not in wanted]
                added = [_Live(spec) for spec in wanted if spec not in self._lives]
                for live in added:
                    predecessor = next(
                        (old for old in removed if old.spec.root == live.spec.root), None
                    )
                    if predecessor is not None:
                        live.recent = predecessor.recent  # one memory for both while they overlap
                    self._lives[live.spec] = live
            if self._started:
                for live in added:
                    self._activate(live, scan=False)
            with self._lock:
                for live in removed:
                    live.active = False
                    del self._lives[live.spec]
            if self._started:
                for live in removed:
                    successor = next(
                        (
                            new
                            for new in added
                            if new.spec.root == live.spec.root and new.poller is not None
                        ),
                        None,
                    )
                    if successor is not None and live.poller is not None:
                        self._settler.hand_over(live, successor, successor.spec.settle)
                    self._deactivate(live)

    def health(self) -> list[dict[str, Any]]:
        """Per watch: root, complete, state, message, watched_dirs, events, last_event."""
        with self._lock:
            lives = list(self._lives.values())
            rows = [
                {
                    "root": live.spec.root,
                    "complete": live.spec.complete,
                    "state": live.state,
                    "message": live.message,
                    "watched_dirs": live.dirs if live.running else 0,
                    "events": live.events,
                    "last_event": live.last_event,
                }
                for live in lives
            ]
        for live, row in zip(lives, rows, strict=True):
            watched = self._inotify_dirs(live)
            if watched is not None:
                row["watched_dirs"] = watched
        return rows

    def scan(self, watch: FileWatch, *, arrived_since: float | None = None) -> Iterator[FileEvent]:
        """Every existing complete file under ``watch.root`` (kind ``existing``); with
        ``arrived_since`` (a time.time()), only those that arrived since then (see
        :func:`_scan.arrival_ns`: a copy keeping an old mtime still counts as new).

        Respects ``ignore`` and ``recursive``, never follows a symlinked directory. In
        ``marker`` mode only files whose marker exists; in ``settled`` mode only files
        unchanged for ``settle`` seconds (younger ones are handed to the running watch and
        reported when they settle); in ``closed``/``moved`` mode files still open for
        writing are skipped (their close or rename is still to come).
        """
        with self._lock:
            live = self._lives.get(watch)
        since_ns = None if arrived_since is None else int(arrived_since * 1e9)
        return self._scan(watch, watch.root, live, arrived_since_ns=since_ns)

    # -- watching ---------------------------------------------------------------------------

    def _activate(self, live: _Live, *, scan: bool) -> None:
        """Schedule ``live``; on failure leave it waiting or in error for the keeper to retry."""
        spec = live.spec
        try:
            root_stat = os.stat(spec.root)
            if not stat.S_ISDIR(root_stat.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", spec.root)
            # inotify_add_watch's EACCES is swallowed by watchdog: find out here instead.
            with os.scandir(spec.root):
                pass
            handler = _Handler(self, live)
            if spec.complete == "settled":
                live.poller = self._poller(live)
                live.poller.start()
            else:
                observed = self._ensure_inotify().schedule(
                    handler,
                    spec.root,
                    recursive=spec.recursive,
                    event_filter=_FILTERS[spec.complete],
                )
                self._refs[observed] = self._refs.get(observed, 0) + 1
                live.observed = observed
            live.handler = handler
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self._set(live, "waiting", f"waiting for {spec.root} to appear")
            else:
                live.retry_at = time.monotonic() + self._retry
                self._set(live, "error", _inotify.describe(exc, spec.root))
            return
        live.root_id = (root_stat.st_dev, root_stat.st_ino)
        total = _scan.count_dirs(spec.root, recursive=spec.recursive)
        state, message = "watching", ""
        watched = self._inotify_dirs(live)
        if watched is not None and watched < total:
            # a directory removed meanwhile is no limit
            total = _scan.count_dirs(spec.root, recursive=spec.recursive)
            watched = self._inotify_dirs(live)
            if watched is not None and watched < total:
                state = "error"
                message = (
                    f"{_inotify.describe(OSError(errno.ENOSPC, ''), spec.root)}; "
                    f"only {watched} of {total} directories are watched"
                )
                live.retry_at = time.monotonic() + _PARTIAL_RETRY
        with self._lock:
            live.dirs = total
        self._set(live, state, message)
        if scan:
            self._rescan(live, spec.root)

    def _poller(self, live: _Live) -> Poller:
        spec = live.spec

        def walk(stopping: Callable[[], bool]) -> Iterator[tuple[str, os.stat_result]]:
            for path, st, _target in _scan.walk_files(
                spec.root,
                recursive=spec.recursive,
                ignore=spec.ignore,
                follow=spec.follow_symlinks,
                within=spec.within,
                stopping=stopping,
                max_entries=_scan.MAX_ENTRIES,
            ):
                yield path, st

        def changed(path: str) -> None:
            if live.active and self._wanted(spec, path):
                self._settler.note(live, path, spec.settle)

        def walked(trouble: str) -> None:
            if live.active and live.state in ("watching", "error"):
                self._set(
                    live,
                    "error" if trouble else "watching",
                    f"{trouble}: only part of the tree is polled" if trouble else "",
                )
                # its poller goes on; activating it again would change nothing
                live.retry_at = float("inf")

        return Poller(
            walk,
            spec.poll,
            changed=changed,
            gone=lambda path: self._settler.forget(live, path),
            on_walked=walked,
        )

    def _deactivate(self, live: _Live) -> None:
        poller, live.poller = live.poller, None
        if poller is not None:
            poller.stop()  # within a second; its thread ends on its own
        observed, live.observed = live.observed, None
        if observed is not None and self._observer is not None:
            sharing = self._refs.get(observed, 1) - 1
            with contextlib.suppress(KeyError):
                if sharing > 0:
                    self._refs[observed] = sharing
                    self._observer.remove_handler_for_watch(live.handler, observed)
                else:
                    self._refs.pop(observed, None)
                    self._observer.unschedule(observed)
        live.handler = live.root_id = None
        self._settler.drop(live)

    def _ensure_inotify(self) -> InotifyObserver:
        if self._observer is None:
            # Full events: a file moved in from an unwatched place comes as a move, not a create.
            observer = InotifyObserver(generate_full_events=True)
            observer.start()
            self._observer = observer
        return self._observer

    def _inotify_dirs(self, live: _Live) -> int | None:
        observer, observed = self._observer, live.observed
        return (
            None
            if observer is None or observed is None
            else _inotify.watched_dirs(observer, observed)
        )

    # -- events (watchdog and settle threads) ----------------------------------------------------

    def _on_fs_event(self, live: _Live, event: wd.FileSystemEvent) -> None:
        try:
            self._handle(live, event)
        except Exception:  # an exception would kill watchdog's dispatcher thread
            log.exception("file event handling failed", root=live.spec.root, event=event.event_type)

    def _handle(self, live: _Live, event: wd.FileSystemEvent) -> None:
        spec, kind = live.spec, event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if not live.active:
            return
        if kind == "deleted" and event.is_directory and src == spec.root:
            self._wake.set()  # the keeper notices the root is gone and waits for it
            return
        if event.is_directory:
            # Files written into a new directory before its watch landed have no event.
            new_dir = dest if kind == "moved" else src if kind == "created" else ""
            rel = _scan.relative(new_dir, spec.root) if new_dir else None
            if rel is not None and spec.recursive and not _scan.ignored(rel, spec.ignore):
                self._rescan(live, new_dir)
            return
        path = dest if kind == "moved" else src
        if not path:
            return  # moved out of the watch
        if spec.complete == "marker":
            if path.endswith(spec.marker_suffix):
                data = path[: -len(spec.marker_suffix)]
                if kind in ("created", "closed", "moved"):
                    self._emit_if_finished(live, data)
            elif kind in ("closed", "moved") and os.path.lexists(path + spec.marker_suffix):
                self._emit_path(live, path, "marker")  # the marker came first
        elif kind == "moved":
            self._emit_path(live, path, "moved")
        elif kind == "closed" and spec.complete == "closed":
            self._emit_path(live, path, "closed")

    def _wanted(self, spec: FileWatch, path: str) -> bool:
        rel = _scan.relative(path, spec.root)
        if rel is None or (not spec.recursive and "/" in rel) or _scan.ignored(rel, spec.ignore):
            return False
        return not (spec.complete == "marker" and path.endswith(spec.marker_suffix))

    def _stat(self, spec: FileWatch, path: str) -> os.stat_result | None:
        found = _scan.file_stat(path, follow=spec.follow_symlinks, within=spec.within)
        return found[0] if found is not None else None

    def _emit_path(self, live: _Live, path: str, kind: str) -> None:
        if self._wanted(live.spec, path):
            found = _scan.file_stat(path, follow=live.spec.follow_symlinks, within=live.spec.within)
            # None: deleted before it was complete, a directory, a link not followed
            if found is not None:
                self._deliver(live, _event(live.spec, path, *found, kind))

    def _emit_if_finished(self, live: _Live, path: str) -> None:
        """Emit ``path`` for its marker unless its writer is still at work.

        A marker may beat its data file's close, and the writer may create, fill or close
        the file while we look. Stat, ask whether it is open for writing, stat again: only
        a file that exists, is closed and did not change in between is emitted here;
        otherwise its close event, queued after this one, emits it.
        """
        spec = live.spec
        before = _scan.file_stat(path, follow=spec.follow_symlinks, within=spec.within)
        if before is None or _scan.open_for_writing(path):
            return
        after = _scan.file_stat(path, follow=spec.follow_symlinks, within=spec.within)
        if (
            after is not None
            and _scan.signature(after[0]) == _scan.signature(before[0])
            and self._wanted(spec, path)
        ):
            self._deliver(live, _event(spec, path, *after, "marker"))

    def _on_settled(self, owner: Hashable, path: str, st: os.stat_result) -> None:
        assert isinstance(owner, _Live)
        if self._wanted(owner.spec, path):
            target = (
                os.path.realpath(path)
                if owner.spec.follow_symlinks and os.path.islink(path)
                else None
            )
            self._deliver(owner, _event(owner.spec, path, st, target, "settled"))

    def own(self, path: str) -> bool:
        """Whether ``path`` leads (through any links) to one of the daemon's own files."""
        if not self._own_dirs and not self._own_files:
            return False
        real = os.path.realpath(path)
        return real in self._own_files or os.path.dirname(real) in self._own_dirs

    def _excluded(self, path: str) -> bool:
        if not self.own(path):
            return False
        log.warning("one of the daemon's own files never triggers", path=path)
        return True

    def _deliver(self, live: _Live, event: FileEvent) -> None:
        if self._excluded(event.path):
            return
        with self._lock:
            if not live.active or self._stopping:
                return
            identity = event.identity
            if identity in live.recent:
                live.recent.move_to_end(identity)
                return
            live.recent[identity] = None
            if len(live.recent) > _RECENT:
                live.recent.popitem(last=False)
            live.events += 1
            live.last_event = event.seen_at
        try:
            self._emit(event)
        except Exception:
            log.exception("file event consumer failed", path=event.path)

    def _scan(
        self, spec: FileWatch, top: str, live: _Live | None, *, arrived_since_ns: int | None = None
    ) -> Iterator[FileEvent]:
        young = None
        if live is not None and live.active and live.running and spec.complete == "settled":
            young = functools.partial(self._settler.note, live, settle=spec.settle)
        for path, st, target in _scan.complete_files(
            spec, top, young=young, arrived_since_ns=arrived_since_ns
        ):
            if not self._excluded(path):
                yield _event(spec, path, st, target, "existing")

    def _rescan(self, live: _Live, top: str) -> None:
        for event in self._scan(live.spec, top, live):
            if self._stopping:
                return
            self._deliver(live, event)

    # -- health ---------------------------------------------------------------------------------

    def _set(self, live: _Live, state: str, message: str) -> None:
        with self._lock:
            if (live.state, live.message) == (state, message) or not live.active:
                return
            live.state, live.message = state, message
            level = logging.WARNING if state in ("error", "overflow") else logging.INFO
            log.log(level, "file watch " + state, root=live.spec.root, message=message)
            if self._on_health is not None:
                try:  # under the lock, so that a consumer sees changes in order
                    self._on_health(live.spec.root, state, message)
                except Exception:
                    log.exception("health consumer failed", root=live.spec.root)

    def _on_overflow(self) -> None:
        with self._lock:
            if not self._started or self._stopping:
                return
            for live in self._lives.values():
                if live.observed is not None:
                    live.rescan = True
                    if live.state in ("watching", "rescanning"):
                        self._set(
                            live,
                            "overflow",
                            "inotify queue overflowed, events were lost: rescanning",
                        )
        self._wake.set()

    # -- the keeper: one thread for waiting roots, retries, liveness and rescans ----------------

    def _keep(self) -> None:
        while True:
            self._wake.wait(self._retry)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._tick(time.monotonic())
            except Exception:
                log.exception("file source housekeeping failed")

    def _tick(self, now: float) -> None:
        with self._ops:
            if self._stopping:
                return
            lives = list(self._lives.values())
            # Stop watches whose root vanished or was replaced first: a dead watchdog
            # emitter must be gone before the same root is scheduled again.
            for live in lives:
                if live.running and _root_changed(live):
                    self._deactivate(live)
                    self._set(
                        live,
                        "waiting",
                        f"{live.spec.root} disappeared: waiting for it to come back",
                    )
            for live in lives:
                if live.state == "waiting" or (live.state == "error" and now >= live.retry_at):
                    if live.running:
                        self._deactivate(live)  # partly watched (watch limit): start afresh
                    self._activate(live, scan=True)  # files may have arrived unwatched
            quiet = bool(self._reconcile) and now >= self._next_reconcile
            if quiet:
                self._next_reconcile = now + (self._reconcile or 0.0)
            for live in lives:
                followup = 0 < live.followup <= now
                if not live.running or not (live.rescan or quiet or followup):
                    continue
                loud, live.rescan, live.followup = live.state == "overflow", False, 0.0
                if loud:
                    self._set(live, "rescanning", "rescanning after an inotify queue overflow")
                self._rescan(live, live.spec.root)
                if loud and live.state == "rescanning":
                    self._set(live, "watching", "")
                    # watchdog re-adds the tree's watches after an overflow while we scan:
                    # once more, quietly, for files that fell between the two.
                    live.followup = time.monotonic() + _FOLLOWUP


def _event(
    spec: FileWatch, path: str, st: os.stat_result, target: str | None, kind: str
) -> FileEvent:
    return FileEvent(
        path, spec.root, st.st_size, st.st_mtime_ns, st.st_ino, kind, time.time(), link_to=target
    )


def _root_changed(live: _Live) -> bool:
    try:
        st = os.stat(live.spec.root)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:  # EIO, ESTALE on a network filesystem: let the observer ride it out
        return False
    return not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != live.root_id
