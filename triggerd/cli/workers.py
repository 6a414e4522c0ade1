"""``triggerctl workers [stop [NAME ...]]``: the Celery workers, asked through the broker."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    ago,
    config_option,
    fail,
    json_option,
    obtain_settings,
    print_json,
    print_table,
    reports_errors,
)

__all__ = ["workers"]


def _celery(config_path: Path | None):
    settings = obtain_settings(config_path)
    if settings.executor.kind != "celery":
        fail(
            f'executor.kind is "{settings.executor.kind}" in {settings.source}: '
            'runs use no Celery workers (set executor.kind = "celery")'
        )
    return settings.celery


@click.group(invoke_without_command=True)
@config_option
@json_option
@click.option(
    "--timeout",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds to wait for workers to answer.",
)
@click.pass_context
@reports_errors
def workers(ctx: click.Context, config_path: Path | None, as_json: bool, timeout: float) -> None:
    """The Celery workers: host, pid, queues, concurrency and the tasks they run now.

    Only workers that answer within --timeout are listed (a busy or stuck worker may not).
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config_path": config_path, "as_json": as_json, "timeout": timeout}
        return
    from triggerd.engine.celery_admin import list_workers

    found = list_workers(_celery(config_path), timeout=timeout)
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo("no worker answered: start one with `triggerd worker -Q task,dag,workflow`")
        return
    rows = []
    for w in found:
        jobs = [
            f"{j['workflow']}/{j['dag']}/{j['task']} ({ago(j['started']).replace(' ago', '')})"
            for j in w["running"]
        ]
        rows.append(
            [
                w["name"],
                w["pid"],
                ",".join(w["queues"]),
                w["concurrency"],
                f"{len(w['running'])}",
                "; ".join(jobs) or "-",
            ]
        )
    print_table(
        ["worker", "pid", "queues", "slots", "busy", "running now"],
        rows,
        wrap=("queues", "running now"),
    )


@workers.command()
@click.argument("names", nargs=-1)
@click.option(
    "--all", "everyone", is_flag=True, help="Every worker (without NAME this is required)."
)
@config_option
@json_option
@click.pass_obj
@reports_errors
def stop(
    obj: dict, names: tuple[str, ...], everyone: bool, config_path: Path | None, as_json: bool
) -> None:
    """Shut workers down gracefully: they finish their running tasks, take no new ones and exit.

    NAME is a worker name as `triggerctl workers` shows it (e.g. celery@beamline-node1).
    """
    from triggerd.engine.celery_admin import shutdown_workers

    if not names and not everyone:
        fail("name the workers to stop, or pass --all")
    config_path = config_path or obj["config_path"]  # given after `stop` or before it
    as_json = as_json or obj["as_json"]
    done = shutdown_workers(
        _celery(config_path), list(names) or None, timeout=max(obj["timeout"], 1.0)
    )
    if as_json:
        print_json({"stopping": done})
        return
    missing = sorted(set(names) - set(done))
    for name in done:
        click.echo(f"{name}: shutting down (finishes its running tasks first)")
    if missing:
        fail(
            f"no answer from {', '.join(missing)}: check the names with `triggerctl workers`",
            code=1,
        )
    if not done:
        fail("no worker answered", code=1)
