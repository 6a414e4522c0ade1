"""``triggerctl run``: run one workflow now, on the configured executor, and wait for it."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click

from triggerd.eventlog.schema import LogEvent, new_id
from triggerd.text import dumps

from .common import config_option, json_option, obtain_settings, reports_errors

__all__ = ["parse_assignments", "run"]

HINT_AFTER = 10.0  # default seconds between two looks for queues with tasks waiting and no worker
_ASK_WORKERS = 1.0  # seconds the workers have to say which queues they consume

_MARKS = {
    "started": ("▶", None),
    "succeeded": ("✓", "green"),
    "skipped": ("·", "bright_black"),
    "cancelled": ("·", "yellow"),
    "stopped": ("■", "yellow"),
    "aborted": ("✗", "red"),
    "failed": ("✗", "red"),
}


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    args: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not key=value", param_hint="ARGS")
        args[key] = value
    return args


def _show(event: LogEvent) -> None:
    """One progress line per task and DAG state change, readable in 80 columns."""
    if not event.kind.startswith(("task.", "dag.")) or event.kind == "dag.started":
        return
    state = event.kind.split(".", 1)[1]
    mark, colour = _MARKS.get(state, ("?", None))
    where = f"{event.dag}/{event.task}" if event.task else f"{event.dag}"
    extra = f"{event.data['duration']:.3f} s" if "duration" in event.data else ""
    if state == "failed":
        extra = event.message.split(" failed: ", 1)[-1]
    click.secho(f"  {mark} {where:<38} {state:<9} {extra}".rstrip(), fg=colour)
    traceback = event.data.get("traceback")
    if traceback:
        click.secho("    " + traceback.rstrip().replace("\n", "\n    "), fg="red", err=True)


def _consumed_queues(celery: Any) -> set[str] | None:
    """The queues some Celery worker consumes, or None if the broker did not say in time
    (asked on a thread of its own, so a broker that hangs costs seconds, not the run)."""
    from triggerd.engine.celery_admin import consumed_queues

    answer: list[set[str]] = []

    def ask() -> None:
        try:
            answer.append(consumed_queues(celery, timeout=_ASK_WORKERS))
        except Exception:  # noqa: BLE001 - no answer is no hint, never a failed run
            pass

    asking = threading.Thread(target=ask, name="triggerctl-ask-workers", daemon=True)
    asking.start()
    asking.join(_ASK_WORKERS + 2.0)
    return answer[0] if answer else None


class _StarvedQueues:
    """Names the queues where tasks of the run wait and no worker consumes (each once),
    and the worker that would take them."""

    def __init__(self, executor: Any, celery: Any, every: float):
        self._waiting: Callable[[], dict[str, int]] = getattr(executor, "waiting_queues", dict)
        self._celery = celery
        self.every = every
        self._named: set[str] = set()
        self._asked_in_vain = False

    def look(self, anything_started: bool) -> None:
        waiting = {
            queue: count for queue, count in self._waiting().items() if queue not in self._named
        }
        if not waiting:
            return
        consumed = _consumed_queues(self._celery)
        quiet = (
            f"no worker has started a task after {self.every:g} s"
            if not anything_started
            else "still waiting"
        )
        if consumed is None:  # the workers did not say: the hint of old, once
            if not anything_started and not self._named and not self._asked_in_vain:
                click.secho(
                    f"  {quiet}: is one consuming the task's queue? "
                    "(`triggerctl workers`; start one with `triggerd worker -Q task,dag,workflow`)",
                    fg="yellow",
                    err=True,
                )
            self._asked_in_vain = True
            return
        starved = sorted(queue for queue in waiting if queue not in consumed)
        if not starved:
            return
        self._named.update(starved)
        count = sum(waiting[queue] for queue in starved)
        names = ", ".join(f"'{queue}'" for queue in starved)
        click.secho(
            f"  {quiet}: no worker consumes queue{'s' if len(starved) > 1 else ''} {names} "
            f"({count} task{'s' if count > 1 else ''} waiting); "
            f"start one with `triggerd worker -Q {','.join(starved)}` "
            "(`triggerctl workers` lists those running)",
            fg="yellow",
            err=True,
        )


def _wait(handle: Any, started: threading.Event, starved: _StarvedQueues | None) -> Any:
    """Wait for the run; on Celery, every ``starved.every`` seconds, name the queues where
    its tasks wait with no worker to take them (asked off the executor's threads)."""
    while starved is not None:
        try:
            return handle.wait(starved.every)
        except TimeoutError:
            starved.look(started.is_set())
    return handle.wait()


def _manual_trigger(run_id: str, workflow: str, arguments: dict[str, str]) -> LogEvent:
    """What the event log says of a run started here: no rule, the command, who and where."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    by = f"{user}@{socket.gethostname()}"
    return LogEvent(
        "trigger.fired",
        f"manual start of {workflow} by `triggerctl run` ({by})",
        run=run_id,
        workflow=workflow,
        data={"params": arguments, "by": by, "command": "triggerctl run", "cwd": os.getcwd()},
    )


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM (systemd, kill, a job's timeout) takes Ctrl-C's path: the run is stopped and
    the executor closed, its worker processes with it; Python's default ends the process
    on the spot and leaves them running."""
    raise KeyboardInterrupt


def _stdout_for_json() -> TextIO:
    """``--json``: standard output carries one JSON event a line and nothing else. The
    local executor's worker processes inherit file descriptor 1, and what tasks print
    would land between the lines (it is in the ``output`` events already); so fd 1
    becomes stderr for them, and the JSON lines go out through a descriptor of their own."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out


def _reader_gone(stream: TextIO) -> None:
    """The reader of ``stream`` has gone (``triggerctl run x | head -1``): the run goes on
    to its end, unseen, rather than dying with the pipe; the stream now leads nowhere, so
    no later print (nor Python's flush at exit) raises again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _print(show: Callable[[], None], stream: TextIO | None = None) -> None:
    try:
        show()
    except BrokenPipeError:
        _reader_gone(stream or sys.stdout)


def _shows_events(
    recorder: Any, started: threading.Event, json_out: TextIO | None
) -> Callable[[LogEvent], None]:
    """What the executor calls with each event: store it, note that a task started, and
    print it (on the executor's thread: a closed pipe must not end it, or the run would
    never end)."""

    def on_event(event: LogEvent) -> None:
        recorder.record(event)
        if event.kind in ("task.started", "task.retried"):
            started.set()
        if json_out is not None:
            _print(lambda: click.echo(dumps(event.to_dict()), file=json_out), json_out)
        else:
            _print(lambda: _show(event))

    return on_event


def _wait_or_stop(
    executor: Any, handle: Any, started: threading.Event, starved: _StarvedQueues | None
) -> Any:
    """The run's result; Ctrl-C (or SIGTERM) stops the run and waits for it to end."""
    try:
        return _wait(handle, started, starved)
    except KeyboardInterrupt:
        click.secho("stopping the run (Ctrl-C again to leave at once)...", fg="yellow", err=True)
        executor.stop_run(handle.run_id, "interrupted from the terminal")
        return handle.wait()


def _show_result(result: Any) -> None:
    colour = "green" if result.ok else "red"
    _print(
        lambda: click.secho(
            f"run {result.run_id} {result.status} in {result.ended - result.started:.3f} s",
            fg=colour,
            bold=True,
        )
    )
    if result.error and not result.ok:
        _print(lambda: click.secho(f"  {result.error}", fg=colour))


@click.command()
@click.option(
    "--workflows",
    "workflow_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help=(
        "Also look for workflows here, before the configured directories "
        "(try a file before deploying it)."
    ),
)
@click.option("--keep-data", is_flag=True, help="Keep the run's data store document afterwards.")
@click.option(
    "--hint-after",
    type=click.FloatRange(0, min_open=True),
    default=HINT_AFTER,
    show_default=True,
    help=(
        "On Celery: seconds after which (and between which) queues with tasks waiting "
        "and no worker are named."
    ),
)
@config_option
@json_option
@click.argument("workflow")
@click.argument("args", nargs=-1)
@reports_errors
def run(
    workflow: str,
    args: tuple[str, ...],
    workflow_dirs: tuple[Path, ...],
    keep_data: bool,
    hint_after: float,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Run WORKFLOW with ARGS (key=value ...) and wait for it.

    It runs on the configured executor: worker processes on this machine by default,
    Celery workers when executor.kind = "celery".

    Shows each task as it ends; exits 0 when the run succeeded, 1 when it failed, was
    aborted or stopped, 2 for bad input (unknown workflow, missing parameter).
    """
    from triggerd.daemon.events import RunEventLog
    from triggerd.engine.factory import make_executor

    arguments = parse_assignments(args)
    settings = obtain_settings(config_path)
    run_id = new_id()
    recorder = RunEventLog(settings, run_id)  # the daemon's event log, daemon or not
    started = threading.Event()  # some task has started: workers are there
    on_event = _shows_events(recorder, started, _stdout_for_json() if as_json else None)
    signal.signal(signal.SIGTERM, _interrupted)
    recorder.start()
    try:
        executor = make_executor(
            settings,
            extra_workflows=[d.resolve() for d in workflow_dirs],
            keep_data=keep_data or None,
            on_event=on_event,
        )
        executor.start()
        try:
            executor.validate(workflow, arguments)  # bad input: exit 2 before a run id is shown
            if not as_json:  # before submitting: progress lines follow at once
                _print(lambda: click.echo(f"run {run_id} of '{workflow}'"))
            recorder.record(_manual_trigger(run_id, workflow, arguments))
            handle = executor.submit(workflow, arguments, run_id=run_id)
            starved = (
                _StarvedQueues(executor, settings.celery, hint_after)
                if settings.executor.kind == "celery"
                else None
            )
            result = _wait_or_stop(executor, handle, started, starved)
        finally:
            executor.close()
    finally:
        # every event of the run stored (or kept for later) before we exit
        warning = recorder.close()
        if warning:
            click.secho(f"warning: {warning}", fg="yellow", err=True)
    if not as_json:
        _show_result(result)
    sys.exit(0 if result.ok else 1)
