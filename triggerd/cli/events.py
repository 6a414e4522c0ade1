"""``triggerctl events | logs RUN | show RUN``: the event log, from the daemon or the store.

The daemon answers when it runs (and streams new events as it stores them, for ``-f``);
when it does not, the commands read the event store the config names directly.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from triggerd.durations import parse_since
from triggerd.runstate import END_KINDS
from triggerd.text import dumps, shown

from .common import (
    config_option,
    json_option,
    obtain_settings,
    print_json,
    print_table,
    reports_errors,
    since_option,
)

__all__ = ["events", "logs", "show"]

_FOLLOW_WAIT = 10.0  # seconds one long poll may wait for new events
_MAX_LIMIT = 100_000  # the most the API returns at once (triggerd.daemon.api.MAX_LIMIT)


class _Source:
    """Events from the daemon's API, or from the store when no daemon answers."""

    def __init__(self, config_path: Path | None):
        from triggerd.daemon.client import ControlClient, DaemonNotRunning

        self.settings = obtain_settings(config_path)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
        self._client: Any = ControlClient(self.settings.socket_path, timeout=_FOLLOW_WAIT + 20)
        self._store: Any = None
        try:
            self._client.get("/status")
        except DaemonNotRunning:
            from triggerd.daemon.events import event_store_for

            self._client.close()
            self._client = None
            self._store = event_store_for(self.settings).open()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._store is not None:
            self._store.close()

    @property
    def live(self) -> bool:
        return self._client is not None

    def find(self, *, wait: float = 0.0, **query: Any) -> list[dict[str, Any]]:
        if self._client is not None:
            params = {
                "run": query.get("run"),
                "workflow": query.get("workflow"),
                "rule": query.get("rule"),
                "kind": list(query.get("kinds") or []) or None,
                "since": query.get("since"),
                "level": query.get("level"),
                "after": query.get("after_id"),
                "limit": query.get("limit", 100),
                "newest": query.get("newest_first", False),
                "wait": wait,
            }
            return self._client.get("/events", **params)
        if wait:
            time.sleep(min(wait, 0.2))  # no daemon to wait on: read the store again shortly
        store_query = {**query, "since": parse_since(query.get("since"))}
        return [e.to_dict() for e in self._store.find(**store_query)]

    def run(self, run_id: str) -> dict[str, Any] | None:
        if self._client is not None:
            from triggerd.daemon.client import ApiError

            try:
                return self._client.get(f"/eventlog/runs/{run_id}")
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
        return self._store.run(run_id)


@contextlib.contextmanager
def _source(config_path: Path | None) -> Iterator[_Source]:
    source = _Source(config_path)
    try:
        yield source
    finally:
        source.close()


def _line(event: dict[str, Any]) -> str:
    """One event as a line: time, level, kind, where, message."""
    when = event["time"][11:23]
    where = (
        "/".join(p for p in (event.get("dag"), event.get("task")) if p) or event.get("rule") or ""
    )
    run = (event.get("run") or "")[-8:]
    return (
        f"{when} {event['level'][:4]:<4} {event['kind']:<16} {run:<8} "
        f"{shown(where):<24} {shown(event['message'])}"
    )


def _block(text: str) -> str:
    """Text of several lines (a traceback) with each line escaped, the line breaks kept."""
    return "\n".join(shown(line) for line in text.splitlines())


def _json_line(event: dict[str, Any]) -> None:
    """Following with --json: one compact JSON document a line."""
    click.echo(dumps(event))


@contextlib.contextmanager
def _ctrl_c_leaves(follow: bool) -> Iterator[None]:
    """With -f, Ctrl-C is how one leaves: wherever it lands (also while the first events
    are printed), the command ends quietly with status 0, not click's 'Aborted!'."""
    try:
        yield
    except KeyboardInterrupt:
        if not follow:
            raise


def _follow(
    source: _Source, query: dict[str, Any], show: Any, *, until_run_ends: str | None = None
) -> None:
    """Print matching events as they are stored, until Ctrl-C (or the run's end)."""
    last: str | None = query.pop("after_id", None)
    try:
        while True:
            batch = source.find(wait=_FOLLOW_WAIT, **query, after_id=last, limit=1000)
            for event in batch:
                show(event)
            if batch:
                last = batch[-1]["id"]
            if until_run_ends and source.find(run=until_run_ends, kinds=list(END_KINDS), limit=1):
                # the run is over: what it printed before its end event is stored by now
                for event in source.find(**query, after_id=last, limit=100_000):
                    show(event)
                return
    except KeyboardInterrupt:
        return


@click.command()
@click.option("--run", help="Only events of this run.")
@click.option("--workflow", help="Only events of this workflow.")
@click.option("--rule", help="Only events of this rule.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only this kind (task.failed) or family (task); repeatable.",
)
@since_option("events")
@click.option(
    "--level",
    type=click.Choice(["debug", "info", "warning", "error", "critical"]),
    help="This level and more severe.",
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, _MAX_LIMIT),
    help="At most this many: the newest (it says when there are more).",
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Then print new events as they come (Ctrl-C ends); with --json one per line.",
)
@config_option
@json_option
@reports_errors
def events(
    run: str | None,
    workflow: str | None,
    rule: str | None,
    kinds: tuple[str, ...],
    since: str | None,
    level: str | None,
    limit: int,
    follow: bool,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """The event log: triggers, runs, DAGs, tasks, signals, log and output lines."""
    query: dict[str, Any] = {
        "run": run,
        "workflow": workflow,
        "rule": rule,
        "kinds": kinds or None,
        "since": since,
        "level": level,
    }
    with _ctrl_c_leaves(follow), _source(config_path) as source:
        # one more: are there more?
        found = source.find(**query, limit=min(limit + 1, _MAX_LIMIT), newest_first=True)
        more = len(found) > limit
        found = found[:limit][::-1]  # the newest N, shown oldest first
        if more:  # on stderr: --json stays one JSON document
            click.secho(
                f"(the newest {limit} shown; older events match too: "
                "raise --limit or narrow with --since, --kind, --run)",
                fg="yellow",
                err=True,
            )
        show = _json_line if as_json else (lambda e: click.echo(_line(e)))
        if as_json and not follow:
            print_json(found)
            return
        for event in found:
            show(event)
        if follow:
            if found:
                query["after_id"] = found[-1]["id"]
            elif not source.live:
                query["after_id"] = None
            _follow(source, query, show)


@click.command()
@click.argument("run_id")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing until the run ends (Ctrl-C leaves)."
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Task and DAG state changes too, not only output and logs.",
)
@config_option
@json_option
@reports_errors
def logs(
    run_id: str, follow: bool, everything: bool, config_path: Path | None, as_json: bool
) -> None:
    """What RUN's tasks printed and logged, in order, with the task each line came from."""
    kinds = None if everything else ["output", "log", "task.failed"]
    query: dict[str, Any] = {"run": run_id, "kinds": kinds}

    def show(event: dict[str, Any]) -> None:
        if as_json:
            _json_line(event)
            return
        where, message = (
            shown("/".join(p for p in (event.get("dag"), event.get("task")) if p)),
            shown(event["message"]),
        )
        if event["kind"] == "task.failed":
            tb = (event.get("data") or {}).get("traceback") or ""
            click.secho(
                f"{where}: {message}" + (f"\n{_block(tb.rstrip())}" if tb else ""), fg="red"
            )
        elif event["kind"] == "output":
            stream = (event.get("data") or {}).get("stream", "stdout")
            click.echo(f"{where} {'|' if stream == 'stdout' else '!'} {message}", err=False)
        else:
            click.echo(f"{where} {event['level'].upper()}: {message}")

    with _ctrl_c_leaves(follow), _source(config_path) as source:
        found = source.find(**query, limit=100_000)
        if not found and not follow and not source.find(run=run_id, limit=1):
            click.secho(f"error: no events of run {run_id} in the event log", fg="red", err=True)
            sys.exit(1)
        if as_json and not follow:
            print_json(found)
            return
        for event in found:
            show(event)
        if follow:
            if found:
                query["after_id"] = found[-1]["id"]
            if not source.find(run=run_id, kinds=list(END_KINDS), limit=1):
                _follow(source, query, show, until_run_ends=run_id)


@click.command()
@click.argument("run_id")
@config_option
@json_option
@reports_errors
def show(run_id: str, config_path: Path | None, as_json: bool) -> None:
    """One run: its state, trigger, parameters, DAGs and tasks (state, host, duration), error."""
    with _source(config_path) as source:
        summary = source.run(run_id)
    if summary is None:
        click.secho(f"error: no events of run {run_id} in the event log", fg="red", err=True)
        sys.exit(1)
    if as_json:
        print_json(summary)
        return
    click.echo(
        f"run {shown(run_id)}: {summary.get('status')}, "
        f"workflow {shown(summary.get('workflow'))}, rule {shown(summary.get('rule') or '-')}"
    )
    for key in ("queued", "started", "ended"):
        if summary.get(key):
            click.echo(f"  {key:<8} {summary[key]}")
    if summary.get("duration") is not None:
        click.echo(f"  took     {summary['duration']:.3f} s")
    attempts = summary.get("attempts") or []
    if len(attempts) > 1:  # the run was resumed after the daemon stopped: each attempt apart
        for a in attempts:
            how = (
                f"resumed: {a.get('tasks_ended')} tasks had ended, "
                f"{a.get('tasks_running')} were running or due"
                if a.get("resumed")
                else "started"
            )
            click.echo(
                f"  attempt {a.get('attempt')} {a.get('started')} on {a.get('host') or '?'}: {how}"
            )
    trigger = summary.get("trigger") or {}
    if trigger:
        source = trigger.get("source") or {}
        what = trigger.get("message") or source.get("path") or trigger.get("event")
        click.echo(f"  trigger  {shown(what)}")
    if summary.get("params"):
        click.echo(f"  params   {shown(summary['params'])}")
    rows = []
    for dag, info in (summary.get("dags") or {}).items():
        for task, t in (info.get("tasks") or {}).items():
            duration = t.get("duration")
            rows.append(
                [
                    dag,
                    task,
                    t.get("state"),
                    t.get("worker") or t.get("host") or "",
                    f"{duration:.3f}s" if isinstance(duration, (int, float)) else "",
                ]
            )
    if rows:
        print_table(["dag", "task", "state", "where", "took"], rows)
    if summary.get("error"):
        click.secho(f"error: {shown(summary['error'])}", fg="red")
        if summary.get("traceback"):
            click.secho(_block(summary["traceback"].rstrip()), fg="red")
