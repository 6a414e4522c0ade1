"""``triggerctl drain | reload``: change what the running daemon does."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import daemon_command, fail, open_client, print_json

__all__ = ["drain", "reload"]


@click.command()
@daemon_command
def drain(config_path: Path | None, as_json: bool) -> None:
    """Stop taking new triggers; queued and running runs finish. Restart to undo."""
    with open_client(config_path) as client:
        data = client.post("/drain")
    if as_json:
        print_json(data)
    else:
        click.echo(
            f"draining: {data['running']} running and {data['queued']} queued runs will finish"
        )


@click.command()
@daemon_command
def reload(config_path: Path | None, as_json: bool) -> None:
    """Re-read config and rules (like SIGHUP); invalid new ones are refused, old ones kept."""
    with open_client(config_path) as client:
        data = client.post("/reload")
    if as_json:
        print_json(data)
        if not data["ok"]:  # a script sees the refusal in the status as a person does
            sys.exit(1)
    elif data["ok"]:
        click.echo(f"reloaded: {len(data['rules'])} rules")
    else:
        fail(f"reload refused, the daemon keeps its current rules:\n{data['error']}", code=1)
