"""A task that runs a shell command or a program, streaming its output to callbacks."""

from __future__ import annotations

import os
import signal as _signals
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from .action import Action
from .context import OutputWriter, current_output
from .task import BaseTask, TaskParameters

__all__ = ["BashTask"]

# How long a terminated process group gets to clean up before it is killed.
_KILL_AFTER = 5.0
# The longest piece read at once from a stream no callback wants whole lines of: a
# command printing a gigabyte without a newline must not make the worker hold it all.
_READ_LIMIT = 64 * 1024
# How long a stream read only for events may stay open once the command has exited: a
# background child holding it (``daemon &``) did not delay the task before it was read.
_EVENTS_GRACE = 0.5


class BashTask(BaseTask):
    """Run ``command`` as Lightflow's ``BashTask`` does, without its sleep polling.

    ``command`` as a *string* runs through ``/bin/sh`` (the workflow author wrote it, so
    it is trusted). As a *list* of arguments it runs without a shell, and that is the
    only safe way to hand a file name or any data to a command: never interpolate them
    into a shell string (a name like ``x; rm -rf ~`` would run); pass them as list
    items, or through ``env`` and reference ``"$VAR"`` (quoted) in the string.

    Every parameter but the callbacks may be a callable ``(data, store) -> value``,
    evaluated when the task runs. ``env`` replaces the whole environment (values must be
    ``str``); ``user``/``group`` (names or ids) need the worker to have the privilege to
    switch. Without ``stdin`` the child reads from ``/dev/null``, not the worker's stdin.

    The line callbacks run on reader threads, one at a time, and see each line decoded
    as UTF-8 with its newline. A callback (or ``callback_process``) that raises — e.g.
    ``StopTask`` or ``AbortWorkflow`` — terminates the command, and the exception leaves
    ``run`` once the command has exited. The command runs in its own process group,
    which gets SIGTERM (then SIGKILL after 5 s) when the DAG is stopped, so the children
    of a shell die with it. A non-zero exit code is not an error: check it in
    ``callback_end(returncode, stdout_file, stderr_file, data, store, signal, context)``.

    Run by triggerd's engine, every output line also becomes an ``output`` event of the
    task (with the command's pid), with or without callbacks. A stream that has neither a
    callback nor a capture still reaches the worker's own stdout/stderr, as it did when
    the command wrote there directly.
    """

    def __init__(
        self,
        name: str,
        command: str | Sequence[str] | Callable[[Any, Any], Any],
        cwd: Any = None,
        env: Any = None,
        user: Any = None,
        group: Any = None,
        stdin: Any = None,
        refresh_time: Any = 0.1,
        capture_stdout: Any = False,
        capture_stderr: Any = False,
        callback_process: Callable | None = None,
        callback_end: Callable | None = None,
        callback_stdout: Callable | None = None,
        callback_stderr: Callable | None = None,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
        idempotent: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
            idempotent=idempotent,
        )
        self.params = TaskParameters(
            command=command,
            cwd=cwd,
            env=env,
            user=user,
            group=group,
            stdin=stdin,
            refresh_time=refresh_time,
            capture_stdout=capture_stdout,
            capture_stderr=capture_stderr,
        )
        self._callback_process = callback_process
        self._callback_end = callback_end
        self._callback_stdout = callback_stdout
        self._callback_stderr = callback_stderr

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        command, stdin = self._checked(params)
        refresh = max(float(params.refresh_time or 0.1), 0.01)
        args = (data, store, signal, context)
        out_file = tempfile.TemporaryFile() if params.capture_stdout else None
        err_file = tempfile.TemporaryFile() if params.capture_stderr else None
        opener = current_output()  # here: the task's thread holds its context
        asked = (
            out_file is not None or self._callback_stdout is not None,
            err_file is not None or self._callback_stderr is not None,
        )
        failures: list[BaseException] = []
        readers: list[threading.Thread] = []  # the task waits for these: callbacks, captures
        extra: list[threading.Thread] = []  # read for events only
        proc: subprocess.Popen | None = None
        try:
            proc = subprocess.Popen(
                command,
                shell=isinstance(command, str),
                cwd=params.cwd,
                env=params.env,
                user=params.user,
                group=params.group,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE if asked[0] or opener is not None else None,
                stderr=subprocess.PIPE if asked[1] or opener is not None else None,
                start_new_session=True,
            )
            self._start_readers(
                proc, stdin, (out_file, err_file), asked, opener, args, failures, (readers, extra)
            )
            returncode = _supervise(proc, readers, signal, failures, refresh)
            if failures:
                raise failures[0]
            if self._callback_end is not None:
                for file in (out_file, err_file):
                    if file is not None:
                        file.seek(0)
                self._callback_end(returncode, out_file, err_file, *args)
        finally:
            _clean_up(proc, readers, extra, (out_file, err_file))
        return Action(data)

    def _checked(self, params: Any) -> tuple[str | list[Any], bytes | None]:
        """The command and the bytes for its stdin; TypeError naming what is wrong."""
        command = params.command
        if not isinstance(command, str):
            if not isinstance(command, (list, tuple)) or not command:
                raise TypeError(f"task '{self.name}': command must be a str or a non-empty list")
            command = list(command)
        if params.env is not None:
            bad = [key for key, value in params.env.items() if not isinstance(value, str)]
            if bad:
                raise TypeError(f"task '{self.name}': env values must be str, not for {bad}")
        stdin = params.stdin
        if isinstance(stdin, str):
            return command, stdin.encode()
        if stdin is not None and not isinstance(stdin, (bytes, bytearray, memoryview)):
            raise TypeError(f"task '{self.name}': stdin must be str or bytes")
        return command, None if stdin is None else bytes(stdin)

    def _start_readers(
        self,
        proc: subprocess.Popen,
        stdin: bytes | None,
        sinks: tuple[Any, Any],
        asked: tuple[bool, bool],
        opener: Any,
        args: tuple[Any, ...],
        failures: list[BaseException],
        started: tuple[list[threading.Thread], list[threading.Thread]],
    ) -> None:
        """Threads reading stdout and stderr, into ``started``: those the task waits for
        (callbacks, captures), and those that only make output events; then stdin fed,
        and callback_process called, before any line callback."""
        readers, extra = started
        lock = threading.Lock()  # the callbacks share data and the signal channel
        with lock:
            for pipe, callback, sink, name, wanted, fd in (
                (proc.stdout, self._callback_stdout, sinks[0], "stdout", asked[0], 1),
                (proc.stderr, self._callback_stderr, sinks[1], "stderr", asked[1], 2),
            ):
                if pipe is not None:
                    events = opener(name, proc.pid) if opener is not None else None
                    echo = None if wanted else fd  # where the command wrote before we read it
                    reader = _start(_pump, pipe, callback, sink, args, failures, lock, events, echo)
                    (readers if wanted else extra).append(reader)
            if proc.stdin is not None:
                _start(_feed, proc.stdin, stdin)
            if self._callback_process is not None:
                try:
                    self._callback_process(proc.pid, *args)
                except BaseException as exc:
                    failures.append(exc)


def _clean_up(
    proc: subprocess.Popen | None,
    readers: list[threading.Thread],
    extra: list[threading.Thread],
    files: tuple[Any, Any],
) -> None:
    """The process ended (terminated, then killed, if we leave on an error), its readers
    joined, the capture files closed."""
    if proc is not None and proc.poll() is None:  # we are leaving on an error
        _signal_group(proc, _signals.SIGTERM)
        try:
            proc.wait(timeout=_KILL_AFTER)
        except subprocess.TimeoutExpired:
            _signal_group(proc, _signals.SIGKILL)
            proc.wait()
    for reader in readers:
        reader.join(timeout=_KILL_AFTER)
    _join(extra, _EVENTS_GRACE)
    for file in files:
        if file is not None:
            file.close()


def _start(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _pump(
    pipe: IO[bytes],
    callback: Callable | None,
    sink: IO[bytes] | None,
    args: tuple,
    failures: list[BaseException],
    lock: threading.Lock,
    events: OutputWriter | None = None,
    echo: int | None = None,
) -> None:
    """Read lines until EOF; after a callback failed, keep draining so the child never
    blocks on a full pipe while it is being terminated. Without a callback nothing needs
    whole lines, so reads are bounded (the event writer joins the pieces)."""
    read = pipe.readline if callback is not None else lambda: pipe.readline(_READ_LIMIT)
    try:
        with pipe:
            for raw in iter(read, b""):
                if sink is not None:
                    sink.write(raw)
                if echo is not None:
                    echo = _echo(echo, raw)
                if events is not None:
                    events.write(raw)
                if callback is None:
                    continue
                with lock:
                    if failures:
                        continue
                    try:
                        callback(raw.decode("utf-8", errors="replace"), *args)
                    except BaseException as exc:
                        failures.append(exc)
    finally:
        if events is not None:
            events.close()


def _echo(fd: int, raw: bytes) -> int | None:
    """Write ``raw`` to the worker's own ``fd``; None (no more echo) once that fails."""
    view = memoryview(raw)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:  # closed or broken: the events still have every line
        return None
    return fd


def _join(threads: list[threading.Thread], timeout: float) -> None:
    """Join ``threads`` within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _feed(pipe: IO[bytes], payload: bytes) -> None:
    """Write stdin on its own thread: a child that does not read must not block us."""
    try:
        with pipe:
            pipe.write(payload)
    except OSError:  # the child exited without reading everything (broken pipe)
        pass


def _supervise(
    proc: subprocess.Popen,
    readers: list[threading.Thread],
    signal: Any,
    failures: list[BaseException],
    refresh: float,
) -> int:
    """Wait for the process and its output; terminate the group on a stop or a failure.

    A background child may hold the pipes after the shell exited, so "done" means the
    pipes are closed too, and a stop still reaches that child through the group.
    """
    terminated_at: float | None = None
    killed = False
    while True:
        try:
            proc.wait(timeout=refresh)
        except subprocess.TimeoutExpired:
            pass
        else:
            for reader in readers:
                reader.join(timeout=refresh)
            if not any(reader.is_alive() for reader in readers):
                return proc.returncode
        if terminated_at is None:
            if failures or (signal is not None and signal.is_stopped):
                _signal_group(proc, _signals.SIGTERM)
                terminated_at = time.monotonic()
        elif not killed and time.monotonic() - terminated_at >= _KILL_AFTER:
            _signal_group(proc, _signals.SIGKILL)
            killed = True


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    # The group id is the child's pid (start_new_session); it stays reserved while any
    # member lives, so it cannot name someone else's group.
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
