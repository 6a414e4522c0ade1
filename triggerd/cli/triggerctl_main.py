"""``triggerctl``: look at triggerd and tell it what to do."""

from __future__ import annotations

import click

from triggerd import __version__

from .run import run
from .workflows import workflows

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="triggerctl")
def cli() -> None:
    """Operate triggerd: runs, workflows, rules and sources."""


cli.add_command(run)
cli.add_command(workflows)


def main() -> None:
    cli()
