"""``triggerctl run``: run one workflow now, on the configured executor, and wait for it."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from triggerd.eventlog.schema import LogEvent, new_id
from triggerd.text import dumps

from .common import config_option, json_option, obtain_settings, reports_errors

__all__ = ["parse_assignments", "run"]

_HINT_AFTER = 10.0  # seconds without a started task before `run` suggests starting a worker

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


def _wait(handle: Any, started: threading.Event, *, hint: bool) -> Any:
    """Wait for the run; on Celery, say so if no worker has taken a task after a while."""
    if hint and not started.wait(_HINT_AFTER) and not handle.done():
        click.secho(
            f"  no worker has started a task after {_HINT_AFTER:g} s: is one consuming the "
            "task's queue? (`triggerctl workers`; start one with `triggerd worker -Q task,dag,workflow`)",
            fg="yellow", err=True,
        )  # fmt: skip
    return handle.wait()


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM (systemd, kill, a job's timeout) takes Ctrl-C's path: the run is stopped and
    the executor closed, its worker processes with it; Python's default ends the process
    on the spot and leaves them running."""
    raise KeyboardInterrupt


def _json_line(event: LogEvent) -> None:
    click.echo(dumps(event.to_dict()))


def _reader_gone() -> None:
    """Standard output's reader has gone (``triggerctl run x | head -1``): the run goes on
    to its end, unseen, rather than dying with the pipe; stdout now leads nowhere, so no
    later print (nor Python's flush at exit) raises again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _print(show: Callable[[], None]) -> None:
    try:
        show()
    except BrokenPipeError:
        _reader_gone()


@click.command()
@click.option(
    "--workflows",
    "workflow_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Also look for workflows here, before the configured directories (try a file before deploying it).",
)
@click.option("--keep-data", is_flag=True, help="Keep the run's data store document afterwards.")
@config_option
@json_option
@click.argument("workflow")
@click.argument("args", nargs=-1)
@reports_errors
def run(workflow: str, args: tuple[str, ...], workflow_dirs: tuple[Path, ...], keep_data: bool, config_path: Path | None, as_json: bool) -> None:
    """Run WORKFLOW with ARGS (key=value ...) and wait for it.

    It runs on the configured executor: worker processes on this machine by default,
    Celery workers when executor.kind = "celery".

    Shows each task as it ends; exits 0 when the run succeeded, 1 when it failed, was
    aborted or stopped, 2 for bad input (unknown workflow, missing parameter).
    """
    from triggerd.engine.embedded import make_executor

    arguments = parse_assignments(args)
    settings = obtain_settings(config_path)
    extra = [d.resolve() for d in workflow_dirs]
    started = threading.Event()  # some task has started: workers are there

    def on_event(event: LogEvent) -> None:
        if event.kind in ("task.started", "task.retried"):
            started.set()
        # On the executor's thread: a closed pipe must not end it (the run would never end)
        _print(lambda: (_json_line if as_json else _show)(event))

    signal.signal(signal.SIGTERM, _interrupted)
    executor = make_executor(settings, extra_workflows=extra, keep_data=keep_data or None, on_event=on_event)
    executor.start()
    try:
        executor.validate(workflow, arguments)  # bad input: exit 2 before a run id is shown
        run_id = new_id()
        if not as_json:  # before submitting: progress lines follow at once
            _print(lambda: click.echo(f"run {run_id} of '{workflow}'"))
        handle = executor.submit(workflow, arguments, run_id=run_id)
        try:
            result = _wait(handle, started, hint=settings.executor.kind == "celery")
        except KeyboardInterrupt:
            click.secho("stopping the run (Ctrl-C again to leave at once)...", fg="yellow", err=True)
            executor.stop_run(handle.run_id, "interrupted from the terminal")
            result = handle.wait()
    finally:
        executor.close()
    if not as_json:
        colour = "green" if result.ok else "red"
        _print(lambda: click.secho(f"run {result.run_id} {result.status} in {result.ended - result.started:.3f} s", fg=colour, bold=True))
        if result.error and not result.ok:
            _print(lambda: click.secho(f"  {result.error}", fg=colour))
    sys.exit(0 if result.ok else 1)

