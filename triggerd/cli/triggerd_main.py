"""``triggerd``: the daemon's own commands (config, check; the daemon and workers later)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from triggerd import __version__
from triggerd.flow.workflow import discover_workflows

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


@cli.command()
@config_option
@reports_errors
def check(config_path: Path | None) -> None:
    """Validate the configuration and every workflow; print each problem found.

    Exits 0 when all is well, 1 when something is wrong.
    """
    settings = obtain_settings(config_path)
    click.echo(f"config: {settings.source}: ok")
    problems = 0
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
