"""``triggerd``: the daemon's own commands: config, run (the daemon), worker, check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from triggerd import __version__

from .common import config_option, group_config_option, json_option, obtain_settings, reports_errors

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="triggerd")
@group_config_option
def cli() -> None:
    """The triggerd daemon: watches files and PVs, starts workflows."""


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@config_option
@json_option
@reports_errors
def config_show(config_path: Path | None, as_json: bool) -> None:
    """Print the effective settings and where they came from."""
    settings = obtain_settings(config_path)
    data = settings.to_toml_dict()
    if as_json:
        click.echo(json.dumps({"source": settings.source, "settings": data}, indent=2))
        return
    click.echo(f"# source: {settings.source}")
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            # TOML as one would write it: permissions in octal
            octal = key.endswith("_mode") and isinstance(value, int)
            click.echo(f"{key} = {oct(value) if octal else json.dumps(value)}")


@cli.command("run")
@config_option
@reports_errors
def run_daemon(config_path: Path | None) -> None:
    """Run the daemon in the foreground (systemd runs it like this, Type=notify).

    SIGTERM or Ctrl-C drains and stops; SIGHUP reloads config and rules.
    """
    import asyncio

    from triggerd.daemon.service import Daemon

    settings = obtain_settings(config_path)
    sys.exit(asyncio.run(Daemon(settings, config_path=config_path).run()))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@config_option
@click.option(
    "-Q",
    "--queues",
    default="task,dag,workflow",
    show_default=True,
    help="Queues to consume, comma-separated (e.g. task,high_memory).",
)
@click.option(
    "-c",
    "--concurrency",
    type=int,
    default=None,
    help="Tasks run at once (default: Celery's, one per CPU).",
)
@click.option(
    "-n", "--hostname", "name", default=None, help="Worker name, e.g. gpu1@%h (Celery's -n)."
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@reports_errors
def worker(
    config_path: Path | None,
    queues: str,
    concurrency: int | None,
    name: str | None,
    celery_args: tuple[str, ...],
) -> None:
    """Run a Celery worker for workflows run with executor.kind = "celery".

    It runs tasks from its own workflows directories (deploy the same files as the
    daemon's) and needs the daemon's HMAC key and data store. Every other option goes to
    `celery worker` unchanged, e.g. `triggerd worker -Q task -c 4 -P threads --without-mingle`.
    """
    from triggerd.engine.celery_worker import run_worker, worker_argv

    settings = obtain_settings(config_path)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("name at least one queue", param_hint="-Q")
    argv = worker_argv(
        names, concurrency=concurrency, name=name, loglevel=settings.log.level, extra=celery_args
    )
    sys.exit(run_worker(settings, argv))


@cli.command()
@config_option
@reports_errors
def check(config_path: Path | None) -> None:
    """Validate the configuration, every trigger rule and every workflow; print each problem.

    Exits 0 when all is well, 1 when something is wrong.
    """
    from triggerd.daemon.checks import check_everything

    settings = obtain_settings(config_path)
    click.echo(f"config: {settings.source}: ok")
    checked = check_everything(settings)
    for subject, problem in checked.results:
        if problem is not None:
            click.secho(f"{subject}: {problem}", fg="red")
        elif subject == "rules" and checked.rules is not None:
            click.echo(
                f"rules: {len(checked.rules.rules)} rules in {len(checked.rules.files)} files: ok"
            )
        else:
            click.echo(f"{subject}: ok")
    for warning in checked.warnings:
        click.secho(f"warning: {warning}", fg="yellow")
    if checked.problems:
        count = len(checked.problems)
        click.secho(f"{count} problem{'' if count == 1 else 's'} found", fg="red")
        raise SystemExit(1)


@cli.command()
@click.option(
    "--prefix",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/"),
    show_default=True,
    help=(
        "Lay the install out under this directory (a test, a chroot); "
        "every path written is under it."
    ),
)
@click.option(
    "--no-user",
    is_flag=True,
    help="Do not create the service user and group (create them yourself).",
)
@reports_errors
def init(prefix: Path, no_user: bool) -> None:
    """Lay out a system install: /etc/triggerd (config, workflows, example rules), the
    state directory, the systemd units for this environment's triggerd, the service user.

    Idempotent: what exists is kept, never overwritten. Prints each step, then what to do next.
    """
    from triggerd.install import lay_out, next_steps

    # the venv whose triggerd runs this (not resolved: a venv's python is a link)
    bin_dir = Path(sys.executable).parent
    for step in lay_out(prefix, bin_dir=bin_dir, create_user=not no_user):
        click.echo(str(step))
    click.echo(next_steps(prefix))


def main() -> None:
    cli()
