"""lightflow-filesystem's trigger tasks: react to new files in a directory, new lines in a file.

Both tasks run until their DAG (or the workflow) is stopped, calling a callback with
batches of file paths or lines; the callback typically starts a sub-DAG with
``signal.start_dag(...)``. Same names and constructor signatures as
``lightflow_filesystem``; every argument but the callbacks may be a callable
``(data, store) -> value``, evaluated when the task runs.

Neither task polls in a busy loop: NotifyTriggerTask blocks on a queue fed by the
daemon's file source (:class:`triggerd.sources.FileSource`: completion, renames into
place, overflow rescans, the symlink policy), NewLineTriggerTask sleeps between reads
when the file has not grown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from triggerd.flow import Action, BaseTask, TaskParameters
from triggerd.sources import FileSource, FileWatch

from .fileops import LightflowFilesystemConfigError, LightflowFilesystemPathError, _path

if TYPE_CHECKING:
    from triggerd.sources.events import FileEvent

__all__ = ["NewLineTriggerTask", "NotifyTriggerTask"]

log = logging.getLogger(__name__)

DEFAULT_WAIT = 0.5  # seconds between two looks at the stop flag while nothing happens
MIN_WAIT = 0.01


def _aggregate(value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LightflowFilesystemConfigError(
            f"aggregate must be None or an int >= 1, not {value!r}"
        )
    return value


def _wait(value: Any, error: type[Exception] = LightflowFilesystemConfigError) -> float:
    """Seconds to wait for an event before looking at the stop flag again; raises ``error``."""
    if value is None:
        return DEFAULT_WAIT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise error(f"event_trigger_time must be None or a number of seconds >= 0, not {value!r}")
    return max(float(value), MIN_WAIT)


def _exclude(value: Any) -> re.Pattern[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise LightflowFilesystemConfigError(
            f"exclude_mask must be a regular expression string, not {value!r}"
        )
    try:
        return re.compile(value)
    except re.error as err:
        raise LightflowFilesystemConfigError(
            f"exclude_mask {value!r} is not a valid regular expression: {err}"
        ) from None


def _chunks(pending: list, size: int) -> Iterator[list]:
    """Take chunks of exactly ``size`` items off the front of ``pending`` (FIFO)."""
    while len(pending) >= size:
        chunk = pending[:size]
        del pending[:size]
        yield chunk


# -- NotifyTriggerTask ----------------------------------------------------------------------

# Lightflow's selectors that do not mean "a file is complete". The file source reports
# complete files only, so these come from a watchdog observer of the task's own.
_RAW_SELECTORS: tuple[tuple[str, type[FileSystemEvent]], ...] = (
    ("on_file_create", FileCreatedEvent),
    ("on_file_delete", FileDeletedEvent),
    ("on_file_move", FileMovedEvent),
)
# File timestamps come from the kernel's coarse clock, which lags time.time() by up to a tick.
_CLOCK_SLACK_NS = 100_000_000

_Version = tuple[int, int, int]  # inode, size, mtime_ns: what a rewrite or a replace changes


@dataclass(frozen=True)
class _NotifySettings:
    """A NotifyTriggerTask's arguments, evaluated and checked when it runs."""

    path: str
    recursive: bool
    aggregate: int
    exclude: re.Pattern[str] | None
    skip_duplicate: bool
    use_existing: bool
    flush_existing: bool
    on_close: bool
    raw: tuple[type[FileSystemEvent], ...]
    wait: float

    @classmethod
    def evaluate(cls, params: TaskParameters) -> _NotifySettings:
        path = os.path.normpath(_path(params.path))
        if not os.path.isdir(path):
            raise LightflowFilesystemPathError(f"The path to watch is not a directory: {path}")
        settings = cls(
            path=path,
            recursive=bool(params.recursive),
            aggregate=_aggregate(params.aggregate),
            exclude=_exclude(params.exclude_mask),
            skip_duplicate=bool(params.skip_duplicate),
            use_existing=bool(params.use_existing),
            flush_existing=bool(params.flush_existing),
            on_close=bool(params.on_file_close),
            raw=tuple(kind for name, kind in _RAW_SELECTORS if params[name]),
            wait=_wait(params.event_trigger_time),
        )
        if not (settings.on_close or settings.raw):
            raise LightflowFilesystemConfigError(
                "No event selected: set at least one of on_file_create, on_file_close, "
                "on_file_delete, on_file_move"
            )
        return settings

    def excluded(self, path: str) -> bool:
        return self.exclude is not None and self.exclude.search(path) is not None


class _Batches:
    """The paths waiting to be handed over, taken off in chunks of exactly ``aggregate``."""

    def __init__(self, settings: _NotifySettings):
        self._settings = settings
        self.pending: list[str] = []

    def add(self, paths: Iterable[str]) -> Iterator[list[str]]:
        """Queue ``paths`` (minus excluded ones and, with skip_duplicate, waiting ones);
        yield every chunk now complete, oldest first."""
        for path in paths:
            if self._settings.excluded(path):
                continue
            if self._settings.skip_duplicate and path in self.pending:
                continue
            self.pending.append(path)
        return _chunks(self.pending, self._settings.aggregate)


class _Collector(FileSystemEventHandler):
    """Runs on watchdog's observer thread: hands the file paths of events to the task."""

    def __init__(self, sink: queue.SimpleQueue[tuple[str, _Version | None]]):
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            # With generate_full_events a move whose other end is outside the tree has
            # an empty src_path or dest_path; both ends inside give both paths, as
            # Lightflow's IN_MOVED_FROM and IN_MOVED_TO events did.
            paths = (event.src_path, event.dest_path)
        else:
            paths = (event.src_path,)
        for path in paths:
            if path:
                self._sink.put((os.fsdecode(path), None))


class _FileFeed:
    """The paths a NotifyTriggerTask reports, in the order they come.

    Files closed after writing or renamed into place come from a
    :class:`~triggerd.sources.FileSource` watch (``complete="closed"``), which also
    lists the existing ones; Lightflow's create, delete and move events from a watchdog
    observer started only when one of them is selected. Use as a context manager:
    leaving it stops every thread it started.
    """

    def __init__(self, settings: _NotifySettings):
        self._settings = settings
        self._watch = FileWatch(settings.path, recursive=settings.recursive, complete="closed")
        self._source = FileSource([self._watch], self._on_complete)
        self._observer: InotifyObserver | None = None
        self._arrived: queue.SimpleQueue[tuple[str, _Version | None]] = queue.SimpleQueue()
        self._listed: dict[str, _Version] = {}
        self._root = _identity(settings.path)
        self._since_ns = time.time_ns() - _CLOCK_SLACK_NS

    def __enter__(self) -> _FileFeed:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def existing(self) -> list[str]:
        """The complete files there now (no links, none still open for writing), in
        ``os.walk`` order with sorted names. An event about one of them is dropped
        while the file is unchanged since this listing."""
        found = sorted(self._source.scan(self._watch), key=_walk_order)
        self._listed = {event.path: _version(event) for event in found}
        return [event.path for event in found]

    def arrivals(self, wait: float) -> list[str]:
        """What arrived within ``wait`` seconds: the first path and all that came with it."""
        items: list[tuple[str, _Version | None]] = []
        with contextlib.suppress(queue.Empty):
            items.append(self._arrived.get(timeout=wait))
            while True:
                items.append(self._arrived.get_nowait())
        if _identity(self._settings.path) != self._root:
            raise LightflowFilesystemPathError(
                f"The watched directory {self._settings.path} was removed or replaced"
            )
        return [path for path, version in items if not self._unchanged(path, version)]

    def _start(self) -> None:
        path = self._settings.path
        if self._settings.on_close:
            self._source.start()  # the watches exist once start() returns
            for row in self._source.health():  # the source retries; the task gives up
                if row["state"] != "watching":
                    raise LightflowFilesystemPathError(f"Cannot watch {path}: {row['message']}")
        if self._settings.raw:
            self._observer = InotifyObserver(generate_full_events=True)
            self._observer.schedule(
                _Collector(self._arrived),
                path,
                recursive=self._settings.recursive,
                event_filter=list(self._settings.raw),
            )
            try:
                self._observer.start()
            except OSError as err:
                raise LightflowFilesystemPathError(f"Cannot watch {path}: {err}") from err

    def _stop(self) -> None:
        self._source.stop()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join()

    def _on_complete(self, event: FileEvent) -> None:
        """The file source's ``emit``, called on its threads."""
        if event.kind == "moved" and FileMovedEvent in self._settings.raw:
            return  # on_file_move reports both ends of every rename itself
        if event.kind == "existing" and not self._arrived_since_start(event.path):
            return  # a rescan (inotify overflow, new directory) met a file older than the task
        self._arrived.put((event.path, _version(event)))

    def _arrived_since_start(self, path: str) -> bool:
        """Whether ``path`` was written or renamed into place (its ctime) since the start."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return max(st.st_ctime_ns, st.st_mtime_ns) >= self._since_ns

    def _unchanged(self, path: str, version: _Version | None) -> bool:
        listed = self._listed.get(path)
        if listed is None:
            return False
        return (version if version is not None else _stat_version(path)) == listed


def _version(event: FileEvent) -> _Version:
    return (event.inode, event.size, event.mtime_ns)


def _stat_version(path: str) -> _Version | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _walk_order(event: FileEvent) -> tuple[list[str], str]:
    """Sort key of os.walk's top-down order, names sorted: a directory's files come
    before those of its subdirectories."""
    *dirs, name = event.relative.split("/")
    return dirs, name


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class NotifyTriggerTask(BaseTask):
    """Call ``callback(files, data, store, signal, context)`` with files that change in a directory.

    ``path`` (absolute, an existing directory) is watched with inotify, with its whole
    subtree if ``recursive`` (default). Directories and symbolic links are never
    reported, and no link is followed, so nothing outside the tree is. File names that
    are not UTF-8 come as ``str`` with surrogate escapes (``os.fsencode`` gives the bytes
    back, ``open`` takes the str as it is). A path that ``re.search``-matches the
    ``exclude_mask`` regex is dropped.

    Lightflow's selectors, and what triggerd's file source makes of them:

    ``on_file_close`` (default)
        a file is complete: closed after writing, or renamed into the tree. This is a
        :class:`~triggerd.sources.FileWatch` with ``complete="closed"``. Lightflow saw
        only the close (IN_CLOSE_WRITE), so it missed a file written elsewhere and
        renamed in. A file is reported once its writer closes it, however slowly it is
        written; not when it is closed again unchanged (same inode, size and mtime), nor
        when it is deleted before the event is handled. After an inotify queue overflow
        the tree is rescanned, and the files that arrived since the task started and
        were not reported yet are.
    ``on_file_create``, ``on_file_delete``, ``on_file_move``
        as in Lightflow: a file created, deleted, or both ends of a rename that lie in
        the tree (with ``on_file_close`` too, an arrival is reported once). The file
        source reports complete files only, so these come from a watchdog observer of
        the task's own, without the rescans; they are not ordered with the close events.

    Paths are collected FIFO and handed to the callback in chunks of exactly
    ``aggregate`` (None: 1) as soon as enough have arrived; ``skip_duplicate=True``
    drops a path already waiting in the current chunk. ``use_existing=True`` also takes
    the complete files already there (a file still open for writing is reported when it
    is closed): with ``flush_existing=True`` (default) the callback gets all of them at
    once, regardless of ``aggregate``; with ``False`` they head the first chunks. The
    watch starts before the directory is listed, so a file arriving meanwhile is not
    missed, nor reported twice.

    The task runs until ``signal.is_stopped`` (its DAG or the workflow was stopped); the
    paths of an incomplete chunk are then dropped. Every watch and thread it started
    ends with it. It raises PathError if the directory cannot be watched, or is removed
    or replaced while it runs.

    Timing, compared with Lightflow: events are handled as soon as they arrive (there
    is no sleep per event). ``event_trigger_time`` (None: 0.5 s) is how long the task
    waits for an event before it looks at the stop flag again, so a stop is noticed
    within that time; the flag is also read after every batch of events.
    ``stop_polling_rate`` is accepted and ignored (Lightflow read the flag only every
    ``stop_polling_rate + 1`` ticks of ~1 s).
    """

    def __init__(
        self,
        name: str,
        path: Any,
        callback: Callable,
        recursive: Any = True,
        aggregate: Any = None,
        skip_duplicate: Any = False,
        use_existing: Any = False,
        flush_existing: Any = True,
        exclude_mask: Any = None,
        on_file_create: Any = False,
        on_file_close: Any = True,
        on_file_delete: Any = False,
        on_file_move: Any = False,
        event_trigger_time: Any = None,
        stop_polling_rate: Any = 2,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        # Definition errors in literal arguments fail when the workflow loads.
        if not callable(aggregate):
            _aggregate(aggregate)
        if not callable(exclude_mask):
            _exclude(exclude_mask)
        if not callable(event_trigger_time):
            _wait(event_trigger_time)
        self.params = TaskParameters(
            path=path,
            recursive=recursive,
            aggregate=aggregate,
            skip_duplicate=skip_duplicate,
            use_existing=use_existing,
            flush_existing=flush_existing,
            exclude_mask=exclude_mask,
            on_file_create=on_file_create,
            on_file_close=on_file_close,
            on_file_delete=on_file_delete,
            on_file_move=on_file_move,
            event_trigger_time=event_trigger_time,
            stop_polling_rate=stop_polling_rate,
        )
        self._callback = callback

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        settings = _NotifySettings.evaluate(self.params.eval(data, store))
        batches = _Batches(settings)

        def hand_over(files: list[str]) -> None:
            self._callback(files, data, store, signal, context)

        with _FileFeed(settings) as feed:
            if settings.use_existing:
                existing = [f for f in feed.existing() if not settings.excluded(f)]
                if existing and settings.flush_existing:
                    hand_over(existing)
                else:
                    for chunk in batches.add(existing):
                        hand_over(chunk)
            while not signal.is_stopped:
                for chunk in batches.add(feed.arrivals(settings.wait)):
                    hand_over(chunk)
        if batches.pending:
            log.info(
                "Task %s stopped with %d file(s) short of a chunk: %s",
                self.name,
                len(batches.pending),
                batches.pending,
            )
        return Action(data)


# -- NewLineTriggerTask ---------------------------------------------------------------------


class NewLineTriggerTask(BaseTask):
    """Call ``callback(lines, data, store, signal, context)`` with the lines appended to a file.

    ``path`` must be an absolute path to an existing file. Each line is a ``str`` with
    its trailing ``'\\n'`` (decoded as UTF-8, undecodable bytes replaced; ``'\\r\\n'``
    becomes ``'\\n'``); a line is only reported once its newline was written. Lines are
    handed over in chunks of exactly ``aggregate`` (None: 1), oldest first.

    Without ``use_existing`` only lines written after the task started are reported.
    ``use_existing=True`` takes the lines already in the file: with ``flush_existing``
    (default) all at once in one call, regardless of ``aggregate``; else they head the
    first chunks. If the file is truncated, reading starts again from its beginning.

    The task reads whatever is new, then looks at ``signal.is_stopped``; when the file has
    not grown it sleeps ``event_trigger_time`` seconds (default 0.5; None means 0.5)
    before reading again. It runs until stopped; an incomplete chunk is dropped.
    ``stop_polling_rate`` is accepted and ignored: the stop flag is read on every wake-up.
    """

    def __init__(
        self,
        name: str,
        path: Any,
        callback: Callable,
        aggregate: Any = None,
        use_existing: Any = False,
        flush_existing: Any = True,
        event_trigger_time: Any = 0.5,
        stop_polling_rate: Any = 2,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        if not callable(aggregate):
            _aggregate(aggregate)
        if not callable(event_trigger_time):
            _wait(event_trigger_time)
        self.params = TaskParameters(
            path=path,
            aggregate=aggregate,
            use_existing=use_existing,
            flush_existing=flush_existing,
            event_trigger_time=event_trigger_time,
            stop_polling_rate=stop_polling_rate,
        )
        self._callback = callback

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        path = _path(params.path)
        aggregate = _aggregate(params.aggregate)
        wait = _wait(params.event_trigger_time)
        args = (data, store, signal, context)
        try:
            file = open(path, "rb")  # closed in the finally below
        except OSError as err:
            raise LightflowFilesystemPathError(f"Cannot read the file {path}: {err}") from err
        try:
            if not os.path.isfile(path):
                raise LightflowFilesystemPathError(f"The path is not a regular file: {path}")
            reader = _LineReader(file)
            pending: list[str] = []
            if params.use_existing:
                existing = reader.read_lines()
                if existing and params.flush_existing:
                    self._callback(existing, *args)
                else:
                    pending.extend(existing)
            else:
                reader.skip_to_end()
            while True:
                for chunk in _chunks(pending, aggregate):
                    self._callback(chunk, *args)
                if signal.is_stopped:
                    break
                lines = reader.read_lines()
                if lines:
                    pending.extend(lines)
                else:
                    time.sleep(wait)
        finally:
            file.close()
        return Action(data)


class _LineReader:
    """Complete lines from a growing binary file; a partial last line waits for its newline."""

    def __init__(self, file: Any):
        self._file = file
        self._partial = b""

    def skip_to_end(self) -> None:
        self._file.seek(0, os.SEEK_END)

    def read_lines(self) -> list[str]:
        if os.fstat(self._file.fileno()).st_size < self._file.tell():  # truncated
            self._file.seek(0)
            self._partial = b""
        raw = self._file.read()
        if not raw:
            return []
        raw = self._partial + raw
        *complete, self._partial = raw.split(b"\n")
        return [
            (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", errors="replace") + "\n"
            for line in complete
        ]
