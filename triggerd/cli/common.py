"""What every command needs: settings loaded once, logging configured, errors shown well."""

from __future__ import annotations

import functools
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from triggerd.config import Settings, load_settings
from triggerd.errors import TriggerdError
from triggerd.log import configure_logging

__all__ = [
    "ago",
    "config_option",
    "daemon_command",
    "fail",
    "json_option",
    "obtain_settings",
    "open_client",
    "print_json",
    "print_table",
    "reports_errors",
]

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $TRIGGERD_CONFIG, ./triggerd.toml, ./config/triggerd.toml, /etc/triggerd/triggerd.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def obtain_settings(config_path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings and configure logging from them: once, at the entry point."""
    settings = load_settings(config_path, overrides=overrides)
    configure_logging(settings.log.level, settings.log.format)
    return settings


def fail(message: str, code: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn triggerd's errors into one readable line and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TriggerdError as exc:
            fail(str(exc))

    return wrapper


def daemon_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What every command that talks to the daemon takes: --config, --json, readable errors."""
    return config_option(json_option(reports_errors(fn)))


def open_client(config_path: Path | None) -> Any:
    """A control API client for the daemon these settings describe (its unix socket)."""
    from triggerd.daemon.client import ControlClient

    settings = obtain_settings(config_path)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    return ControlClient(settings.socket_path)


def print_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str))


def print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> None:
    """A table that stays readable in 80 columns: long cells are cut with an ellipsis."""
    from rich.console import Console
    from rich.table import Table

    cells = [["" if cell is None else str(cell).replace("\n", "\\n") for cell in row] for row in rows]
    table = Table(*columns, title=title, box=None, header_style="bold", pad_edge=False, title_justify="left")
    for index, column in enumerate(table.columns):
        column.no_wrap = True
        column.overflow = "ellipsis"
        if index < len(columns) - 1:  # every column keeps its width; the last one gives way
            column.min_width = max([len(columns[index]), *(len(row[index]) for row in cells)])
    for row in cells:
        table.add_row(*row)
    Console(width=max(80, shutil.get_terminal_size().columns) if sys.stdout.isatty() else 100).print(table)


def ago(timestamp: float | None) -> str:
    """'3s ago', '5m ago', '2h ago', '4d ago'; '-' for never."""
    import time

    if not timestamp:
        return "-"
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"
