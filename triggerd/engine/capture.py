"""Everything a task prints or logs, as events bound to its run, DAG and task.

While a task runs (:func:`capture_task`), three things become events, created in the
worker process where they happen (so their ids are time-ordered per producer):

- each line written to ``sys.stdout``/``sys.stderr``: kind ``output``, ``data.stream``;
- each line a BashTask's command writes (flow's output hook): ``output``, with ``data.pid``;
- each logging record, structlog's included (configured over stdlib logging, see
  :mod:`triggerd.log`): kind ``log``, the record's level, ``data.logger``, and
  ``data.exception`` / ``data.fields`` (structlog's key-value pairs) when there are any.

Which task a line or a record belongs to: the one bound in the current context (a
context variable), so tasks running at once in one process (Celery ``-P threads``) do
not mix. asyncio tasks and ``contextvars.copy_context().run`` inherit the binding; a
plain ``threading.Thread`` does not (Python 3.11). Output of such a thread goes to the
task only when exactly one task runs in the process and the thread did not exist when
that task started; otherwise (several tasks, or a thread left over from an earlier task
or belonging to the worker) it is nobody's event and only reaches the worker's streams.
Nor are the prints of a process the task forks (``multiprocessing``): only a BashTask's
command has its output read.

``sys.stdout``, ``sys.stderr`` and the root logger are process-wide: one router and one
handler are installed while any task runs; the previous streams come back when the last
one ends, whatever way it ended. What a task writes still reaches the worker's own
streams as before. Records of the worker's machinery (celery, kombu, billiard, amqp,
``triggerd.engine``) never become task events.

Lines are kept up to :data:`MAX_LINE` bytes; the rest of a longer line is counted, not
kept (``data.truncated`` holds the whole length). Undecodable bytes appear as ``\\xNN``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from triggerd.eventlog.schema import LogEvent
from triggerd.flow.context import bind_task_output
from triggerd.log import configure_logging

__all__ = [
    "MAX_LINE",
    "EventBatcher",
    "EventEmitter",
    "TaskCapture",
    "capture_task",
    "configure_worker_logging",
    "let_task_records_through",
]

EventEmitter = Callable[[LogEvent], None]

MAX_LINE = 64 * 1024  # bytes of one output line an event keeps
_MAX_TEXT = 64 * 1024  # characters of a log message or exception text an event keeps
# Loggers of the worker's own machinery: never a task's events, whoever's thread logs.
_INTERNAL = ("celery", "kombu", "amqp", "billiard", "triggerd.engine")
# Keys structlog adds to every event dict; the others are the caller's fields.
_STRUCTLOG_KEYS = frozenset(
    {
        "event",
        "level",
        "logger",
        "timestamp",
        "exc_info",
        "exception",
        "stack_info",
        "_record",
        "_from_structlog",
    }
)
# The worker's name goes into its own field once the schema has one (schema v2).
_WORKER_FIELD = "worker" in {f.name for f in dataclasses.fields(LogEvent)}

_log = logging.getLogger(__name__)
_current: ContextVar[TaskCapture | None] = ContextVar("triggerd_task_capture", default=None)


class TaskCapture:
    """The output and log records of one running task, turned into events for ``emit``."""

    def __init__(
        self,
        emit: EventEmitter,
        *,
        run: str,
        workflow: str,
        dag: str,
        task: str,
        worker: str,
        rule: str | None = None,
    ):
        self._emit = emit
        self._bound = {"run": run, "workflow": workflow, "dag": dag, "task": task, "rule": rule}
        self._worker = worker
        # Threads alive at the start are not the task's (see the module docstring). The
        # objects, not their idents: a new thread often gets the ident of a dead one.
        self.threads_before = frozenset(threading.enumerate())
        self.pid = os.getpid()
        self._printed = {name: _Lines(self._output_to(name, None)) for name in ("stdout", "stderr")}

    def event(
        self, kind: str, message: str, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        """Create the event here and now (its id and time) and hand it on; never raises."""
        data = dict(data or {})
        fields: dict[str, Any] = {}
        if _WORKER_FIELD:
            fields["worker"] = self._worker
        else:
            data["worker"] = self._worker
        try:
            self._emit(
                LogEvent(
                    kind=kind, message=message, level=level, data=data, **self._bound, **fields
                )
            )
        except Exception:  # noqa: BLE001 - a task's print must never fail because of us
            pass

    def printed(self, stream: str, text: str) -> None:
        self._printed[stream].write(_encode(text))

    def open_output(self, stream: str, pid: int | None = None) -> _Lines:
        """A writer for a command's ``stream`` (flow's
        :data:`~triggerd.flow.context.OutputOpener`)."""
        return _Lines(self._output_to(stream, pid))

    def logged(self, record: logging.LogRecord) -> None:
        message, data = _describe(record)
        self.event("log", message, _level(record.levelno), data)

    def close(self) -> None:
        """The task has ended: a last printed line without a newline counts too."""
        for lines in self._printed.values():
            lines.close()

    def _output_to(self, stream: str, pid: int | None) -> Callable[[bytes, int], None]:
        def output(line: bytes, size: int) -> None:
            data: dict[str, Any] = {"stream": stream}
            if pid is not None:
                data["pid"] = pid
            message = line.decode("utf-8", "backslashreplace")
            if size > len(line):
                data["truncated"] = size
                message += f" … [line truncated: {size} bytes in all]"
            self.event("output", message, "info", data)

        return output


@contextlib.contextmanager
def capture_task(
    emit: EventEmitter,
    *,
    run: str,
    workflow: str,
    dag: str,
    task: str,
    worker: str,
    rule: str | None = None,
) -> Iterator[TaskCapture]:
    """Turn what the task run in this block prints and logs into its events (``rule``: the
    trigger rule that started the run, when there is one)."""
    capture = TaskCapture(
        emit, run=run, workflow=workflow, dag=dag, task=task, worker=worker, rule=rule
    )
    token = _current.set(capture)
    _HUB.enter(capture)
    try:
        with bind_task_output(capture.open_output):
            yield capture
    finally:
        try:
            capture.close()
        finally:
            _HUB.leave(capture)
            _current.reset(token)


class _Lines:
    """Joins chunks of bytes into lines and delivers each without its line end; of a
    line longer than :data:`MAX_LINE`, the first bytes and the whole length. Thread-safe,
    and lines leave in the order they were completed. Never raises."""

    def __init__(self, deliver: Callable[[bytes, int], None]):
        self._deliver = deliver
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self._kept = 0
        self._size = 0

    def write(self, data: bytes) -> None:
        try:
            with self._lock:
                start = 0
                while (end := data.find(b"\n", start)) >= 0:
                    self._add(data[start:end])
                    self._take()
                    start = end + 1
                self._add(data[start:])
        except Exception:  # noqa: BLE001 - output must flow on, whatever happens to events
            pass

    def close(self) -> None:
        try:
            with self._lock:
                if self._size:
                    self._take()
        except Exception:  # noqa: BLE001
            pass

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        room = MAX_LINE - self._kept
        if room > 0 and piece:
            kept = piece[:room]
            self._parts.append(kept)
            self._kept += len(kept)

    def _take(self) -> None:
        line, size = b"".join(self._parts), self._size
        self._parts, self._kept, self._size = [], 0, 0
        if line.endswith(b"\r") and size == len(line):
            line, size = line[:-1], size - 1
        self._deliver(line, size)


class _RoutedStream:
    """Stands in for ``sys.stdout``/``sys.stderr`` while tasks run: each write reaches the
    stream it replaced, and its lines become output events of the task that wrote them."""

    def __init__(self, name: str, target: Any, hub: _Hub):
        self._name = name
        self._target = target
        self._hub = hub

    def write(self, text: Any) -> int:
        if isinstance(text, str) and text:
            self._hub.printed(self._name, text)
        if self._target is None:
            return len(text)
        try:
            return self._target.write(text)
        except BrokenPipeError:  # the process's own stdout has no reader now (`| head -1`):
            self._target = None  # the line is still the task's output event; never fail a print
            return len(text)
        except UnicodeEncodeError:  # e.g. undecodable file name bytes; never fail a print
            encoding = getattr(self._target, "encoding", None) or "utf-8"
            return self._target.write(
                text.encode(encoding, "backslashreplace").decode(encoding, "replace")
            )

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._target is not None:
            self._target.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, buffer, ...
        return getattr(self._target, name)


class _TaskLogHandler(logging.Handler):
    """On the root logger while tasks run: a record becomes a ``log`` event of its task."""

    def __init__(self, hub: _Hub):
        super().__init__()
        self._hub = hub

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: tasks log from several threads at once, and events need none.
        if self.filter(record):
            self.emit(record)
            return True
        return False

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if any(name == prefix or name.startswith(prefix + ".") for prefix in _INTERNAL):
            return
        self._hub.logged(record)


class _Hub:
    """The process-wide part: which tasks run now, and the streams and handler they share.

    Module state on purpose: ``sys.stdout`` and the root logger are one per process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: tuple[TaskCapture, ...] = ()  # replaced, never changed: read lock-free
        self._saved: tuple[Any, Any] | None = None
        self._handler = _TaskLogHandler(self)
        self._busy = threading.local()  # on a thread making an event: what it prints is ours

    def enter(self, capture: TaskCapture) -> None:
        root = logging.getLogger()
        with self._lock:
            if not self._active:
                self._saved = (sys.stdout, sys.stderr)
                sys.stdout = _RoutedStream("stdout", sys.stdout, self)  # type: ignore[assignment]
                sys.stderr = _RoutedStream("stderr", sys.stderr, self)  # type: ignore[assignment]
                root.addHandler(self._handler)
            # INFO and above, DEBUG too when the worker logs at DEBUG.
            self._handler.setLevel(min(logging.INFO, root.getEffectiveLevel()))
            self._active = (*self._active, capture)

    def leave(self, capture: TaskCapture) -> None:
        with self._lock:
            self._active = tuple(c for c in self._active if c is not capture)
            if not self._active:
                assert self._saved is not None
                sys.stdout, sys.stderr = self._saved
                self._saved = None
                logging.getLogger().removeHandler(self._handler)

    def owner(self) -> TaskCapture | None:
        capture = _current.get()
        if capture is None:
            active = self._active
            if len(active) == 1 and threading.current_thread() not in active[0].threads_before:
                capture = active[0]
        # A process the task forked inherits all this, but not the way out (and perhaps
        # a lock held at the fork): its output only reaches the streams.
        return capture if capture is not None and capture.pid == os.getpid() else None

    def printed(self, stream: str, text: str) -> None:
        self._as_task(lambda capture: capture.printed(stream, text))

    def logged(self, record: logging.LogRecord) -> None:
        self._as_task(lambda capture: capture.logged(record))

    def _as_task(self, action: Callable[[TaskCapture], None]) -> None:
        if getattr(self._busy, "on", False):
            return  # making an event printed or logged something: not the task's
        self._busy.on = True
        try:
            capture = self.owner()
            if capture is not None:
                action(capture)
        except Exception:  # noqa: BLE001 - never fail the task's print or log call
            pass
        finally:
            self._busy.on = False


_HUB = _Hub()


class EventBatcher:
    """An event emitter that hands events on in batches, from a thread of its own: at most
    ``delay`` seconds after the first event of a batch, at once when ``size`` wait.

    :meth:`flush` sends what waits now (before a task's completion is reported). Batches
    leave in order. If ``send`` fails, the batch is dropped and logged; if more than
    ``limit`` events wait (``send`` is stuck), newer ones are dropped and counted.
    """

    def __init__(
        self,
        send: Callable[[list[LogEvent]], None],
        *,
        size: int = 100,
        delay: float = 0.02,
        limit: int = 100_000,
        name: str = "triggerd-events",
    ):
        self._send = send
        self._size = size
        self._delay = delay
        self._limit = limit
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[LogEvent] = []
        self._first = 0.0
        self._dropped = 0
        self._sending = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, event: LogEvent) -> None:
        with self._cond:
            if len(self._pending) >= self._limit:
                self._dropped += 1
                return
            if not self._pending:
                self._first = time.monotonic()
            self._pending.append(event)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            if len(self._pending) in (1, self._size):
                self._cond.notify()

    def flush(self) -> None:
        """Send every event waiting now; returns once they are sent (or dropped)."""
        with self._sending:
            with self._cond:
                batch, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                _log.warning("task events dropped: %d waited already, sending is stuck", dropped)
            if not batch:
                return
            try:
                self._send(batch)
            except Exception as exc:  # noqa: BLE001 - the task goes on; its events are lost
                _log.warning(
                    "could not send %d task events: %s: %s", len(batch), type(exc).__name__, exc
                )

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                while len(self._pending) < self._size:
                    left = self._first + self._delay - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            self.flush()


def let_task_records_through() -> None:
    """Make the root logger pass INFO records, so tasks' INFO logs become events even in a
    worker that shows only warnings; its handlers keep showing what they showed."""
    root = logging.getLogger()
    level = root.getEffectiveLevel()
    if level <= logging.INFO:
        return
    for handler in root.handlers:
        if handler.level < level:
            handler.setLevel(level)
    root.setLevel(logging.INFO)


def configure_worker_logging(level: int | str, fmt: str = "auto") -> None:
    """Log in a pool worker process as its parent does (structlog over stdlib logging,
    ``level``, ``fmt``), letting tasks' INFO records through for their events."""
    if isinstance(level, int):
        level = next((name for name, number in _LEVEL_NAMES if level <= number), "error")
    configure_logging(level, fmt)
    let_task_records_through()


_LEVEL_NAMES = (("debug", logging.DEBUG), ("info", logging.INFO), ("warning", logging.WARNING))


def _level(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


def _describe(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """The message and payload of a log event for ``record`` (stdlib or structlog)."""
    data: dict[str, Any] = {"logger": record.name}
    exception = ""
    msg = record.msg
    if isinstance(msg, dict) and "event" in msg:  # structlog, wrapped for ProcessorFormatter
        message = str(msg["event"])
        fields = {str(k): _plain(v) for k, v in msg.items() if k not in _STRUCTLOG_KEYS}
        if fields:
            data["fields"] = fields
        if isinstance(msg.get("exception"), str):
            exception = msg["exception"]
    else:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad %-arguments: the template is still worth keeping
            message = str(msg)
    if record.exc_info and record.exc_info[0] is not None:
        exception = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        exception = record.exc_text
    if exception:
        data["exception"] = _text(exception)
    if record.stack_info:
        data["stack"] = _text(record.stack_info)
    if record.levelname.lower() not in ("debug", "info", "warning", "error", "critical"):
        data["levelname"] = _text(record.levelname)
    return _text(message), data


def _plain(value: Any) -> Any:
    """A JSON-safe value: scalars as they are (text cleaned), anything else as its repr."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(value if isinstance(value, str) else repr(value))


def _text(text: str) -> str:
    """``text`` storable anywhere: valid UTF-8 (stray surrogates as ``\\x`` escapes), at
    most :data:`_MAX_TEXT` characters."""
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f" … [truncated: {len(text)} characters in all]"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _encode(text).decode("utf-8", "backslashreplace")
    return text


def _encode(text: str) -> bytes:
    """UTF-8; undecodable bytes smuggled in as surrogates (``surrogateescape``) come back."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace")
