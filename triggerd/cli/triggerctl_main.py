"""``triggerctl``: look at triggerd and tell it what to do."""

from __future__ import annotations

import click

from triggerd import __version__

from .common import group_config_option
from .daemonctl import drain, reload
from .events import events, logs, show
from .files import explain, test_trigger
from .rules import pause, resume, rules
from .run import run
from .runs import replay, runs, start, stop
from .status import status
from .ui import ui
from .workers import workers
from .workflows import workflows

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="triggerctl")
@group_config_option
def cli() -> None:
    """Operate triggerd: runs, workflows, rules and sources."""


for command in (
    status,
    rules,
    runs,
    start,
    stop,
    replay,
    test_trigger,
    explain,
    pause,
    resume,
    drain,
    reload,
    run,
    workflows,
    workers,
    events,
    logs,
    show,
    ui,
):
    cli.add_command(command)


def main() -> None:
    cli()
