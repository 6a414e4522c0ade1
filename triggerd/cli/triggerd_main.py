"""``triggerd``: the daemon's own commands (config, check; the daemon and workers later)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from triggerd import __version__

from .common import config_option, json_option, obtain_settings, reports_errors

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="triggerd")
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
            click.echo(f"{key} = {json.dumps(value)}")


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


@cli.command()
@config_option
@reports_errors
def check(config_path: Path | None) -> None:
    """Validate the configuration, every trigger rule and every workflow; print each problem.

    Exits 0 when all is well, 1 when something is wrong.
    """
    from triggerd.daemon.service import load_rules_for
    from triggerd.errors import ConfigError
    from triggerd.flow.workflow import discover_workflows

    settings = obtain_settings(config_path)
    click.echo(f"config: {settings.source}: ok")
    problems = 0
    try:
        rules = load_rules_for(settings)
        click.echo(f"rules: {len(rules.rules)} rules in {len(rules.files)} files: ok")
    except ConfigError as exc:
        problems += 1
        click.secho(f"rules: {exc}", fg="red")
    for name, item in discover_workflows(settings.paths.workflows):
        if isinstance(item, Exception):
            problems += 1
            click.secho(f"workflow {name}: {item}", fg="red")
        else:
            click.echo(f"workflow {name}: ok")
    if problems:
        click.secho(f"{problems} problem(s) found", fg="red")
        raise SystemExit(1)


def main() -> None:
    cli()
