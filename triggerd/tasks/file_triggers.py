"""lightflow-filesystem's trigger tasks: react to new files in a directory, new lines in a file.

Both tasks run until their DAG (or the workflow) is stopped, calling a callback with
batches of file paths or lines; the callback typically starts a sub-DAG with
``signal.start_dag(...)``. Same names and constructor signatures as
``lightflow_filesystem``; every argument but the callbacks may be a callable
``(data, store) -> value``, evaluated when the task runs.

Neither task polls in a busy loop: NotifyTriggerTask blocks on a queue fed by watchdog's
inotify observer, NewLineTriggerTask sleeps between reads when the file has not grown.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from triggerd.flow import Action, BaseTask, TaskParameters

from .fileops import LightflowFilesystemConfigError, LightflowFilesystemPathError, _path

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


class _Collector(FileSystemEventHandler):
    """Runs on watchdog's observer thread: hands the file paths of events to the task."""

    def __init__(self, sink: queue.SimpleQueue[str]):
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
                self._sink.put(os.fsdecode(path))


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _existing_files(path: str, recursive: bool) -> list[str]:
    """The files now in ``path`` (and below it if ``recursive``), in walk order, sorted."""
    found: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files))
        if not recursive:
            break
    return found


class NotifyTriggerTask(BaseTask):
    """Call ``callback(files, data, store, signal, context)`` with files that change in a directory.

    ``path`` (absolute, an existing directory) is watched with inotify through watchdog,
    with its whole subtree if ``recursive`` (default). The events reported are chosen
    by ``on_file_close`` (default: a file opened for writing was closed — it is complete),
    ``on_file_create``, ``on_file_delete`` and ``on_file_move`` (both ends of a move
    that lie inside the watched tree). Directories are never reported. A path that
    ``re.search``-matches the ``exclude_mask`` regex is dropped.

    Paths are collected FIFO and handed to the callback in chunks of exactly
    ``aggregate`` (None: 1) as soon as enough have arrived; ``skip_duplicate=True``
    drops a path already waiting in the current chunk. ``use_existing=True`` also takes
    the files already there when the watch starts: with ``flush_existing=True``
    (default) the callback gets all of them at once, regardless of ``aggregate``; with
    ``False`` they head the first chunks. The watch starts before the directory is
    listed, so a file arriving meanwhile is not missed, nor reported twice.

    The task runs until ``signal.is_stopped`` (its DAG or the workflow was stopped); the
    paths of an incomplete chunk are then dropped. It raises PathError if the watched
    directory is removed or replaced while it runs.

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
        params = self.params.eval(data, store)
        path = os.path.normpath(_path(params.path))
        if not os.path.isdir(path):
            raise LightflowFilesystemPathError(f"The path to watch is not a directory: {path}")
        aggregate = _aggregate(params.aggregate)
        exclude = _exclude(params.exclude_mask)
        wait = _wait(params.event_trigger_time)
        recursive = bool(params.recursive)
        kinds: list[type[FileSystemEvent]] = [
            kind
            for flag, kind in (
                (params.on_file_create, FileCreatedEvent),
                (params.on_file_close, FileClosedEvent),
                (params.on_file_delete, FileDeletedEvent),
                (params.on_file_move, FileMovedEvent),
            )
            if flag
        ]
        if not kinds:
            raise LightflowFilesystemConfigError(
                "No event selected: set at least one of on_file_create, on_file_close, "
                "on_file_delete, on_file_move"
            )
        args = (data, store, signal, context)
        pending: list[str] = []

        def take(paths: list[str]) -> None:
            for file in paths:
                if exclude is not None and exclude.search(file):
                    continue
                if params.skip_duplicate and file in pending:
                    continue
                pending.append(file)
            for chunk in _chunks(pending, aggregate):
                self._callback(chunk, *args)

        events: queue.SimpleQueue[str] = queue.SimpleQueue()
        observer = InotifyObserver(generate_full_events=True)
        try:
            identity = _identity(path)
            observer.schedule(_Collector(events), path, recursive=recursive, event_filter=kinds)
            try:
                observer.start()  # the watches exist once start() returns
            except OSError as err:
                raise LightflowFilesystemPathError(f"Cannot watch {path}: {err}") from err

            listed: dict[str, tuple[int, int, int] | None] = {}
            if params.use_existing:
                existing = [
                    f
                    for f in _existing_files(path, recursive)
                    if not (exclude and exclude.search(f))
                ]
                listed = {file: _signature(file) for file in existing}
                if existing and params.flush_existing:
                    self._callback(existing, *args)
                else:
                    take(existing)

            while not signal.is_stopped:
                try:
                    batch = [events.get(timeout=wait)]
                except queue.Empty:
                    if _identity(path) != identity:
                        raise LightflowFilesystemPathError(
                            f"The watched directory {path} was removed or replaced"
                        ) from None
                    continue
                while True:  # take everything that arrived together, then look at the flag
                    try:
                        batch.append(events.get_nowait())
                    except queue.Empty:
                        break
                if listed:  # an event about an existing file that is unchanged since the listing
                    batch = [f for f in batch if f not in listed or _signature(f) != listed[f]]
                take(batch)
            if pending:
                log.info(
                    "Task %s stopped with %d file(s) short of a chunk: %s",
                    self.name,
                    len(pending),
                    pending,
                )
        finally:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)
        return Action(data)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


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
