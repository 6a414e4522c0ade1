"""What every command needs: settings loaded once, logging configured, errors shown well."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import click

from triggerd.config import Settings, load_settings
from triggerd.durations import parse_since
from triggerd.errors import TriggerdError
from triggerd.log import configure_logging
from triggerd.text import dumps, shown

__all__ = [
    "ago",
    "column_widths",
    "config_option",
    "daemon_command",
    "fail",
    "group_config_option",
    "json_option",
    "obtain_settings",
    "open_client",
    "print_json",
    "print_table",
    "reports_errors",
    "table_width",
]

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "Config file (default: $TRIGGERD_CONFIG, ./triggerd.toml, ./config/triggerd.toml, "
        "/etc/triggerd/triggerd.toml)."
    ),
)


def _valid_since(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a --since the daemon would refuse, before asking it."""
    try:
        parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("since: ")) from None
    return value


def since_option(what: str) -> Callable[[Any], Any]:
    """``--since``, one dialect for every command (see :mod:`triggerd.durations`)."""
    return click.option(
        "--since",
        callback=_valid_since,
        help=f"Only {what} since then: 30m, 2h, 3d... ago, or an ISO time.",
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


_GROUP_CONFIG = "triggerd.config"  # where the program's --config waits in click's context meta


def _config_for_every_command(
    ctx: click.Context, param: click.Parameter, value: Path | None
) -> None:
    ctx.meta[_GROUP_CONFIG] = value  # a command's own --config still wins (obtain_settings)


# On the program itself, so that `triggerctl --config FILE status` works as `triggerctl
# status --config FILE` does.
group_config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    expose_value=False,
    is_eager=True,
    callback=_config_for_every_command,
    help="Config file for every command (as each command's --config).",
)


def obtain_settings(config_path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings and configure logging from them: once, at the entry point. Without
    the command's own ``--config``, the program's (``triggerctl --config FILE cmd``)."""
    if config_path is None and (ctx := click.get_current_context(silent=True)) is not None:
        config_path = ctx.meta.get(_GROUP_CONFIG)
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
    """``data`` as JSON: UTF-8, a name's non-UTF-8 bytes as ``\\udcXX`` (triggerd.text)."""
    click.echo(dumps(data, indent=2))


MIN_WRAPPED = 12  # a column that wraps keeps at least this many characters a line
_GAP = 2  # spaces between two columns (rich's padding with box=None, pad_edge=False)


def table_width() -> int | None:
    """How wide a table may be: ``COLUMNS`` when set, else the terminal's width; piped
    without ``COLUMNS``, no limit (a row stays one line, for grep and cut)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def table_span(widths: list[int]) -> int:
    """How wide a table of columns this wide is, the gaps between them included."""
    return sum(widths) + _GAP * (len(widths) - 1)


def column_widths(natural: list[int], wrapping: list[bool], width: int | None) -> list[int]:
    """Each column's width: its widest cell when the table fits ``width``; else the
    columns that may wrap share what the others leave (each at least
    :data:`MIN_WRAPPED`, or its widest cell if narrower). A column that does not wrap
    (a number, an id, a state, a time) is never narrowed, so a table that cannot fit is
    wider than ``width``, never cut."""
    total = table_span(natural)
    if width is None or total <= width:
        return list(natural)
    widths = list(natural)
    flexible = sorted((i for i, wraps in enumerate(wrapping) if wraps), key=lambda i: natural[i])
    room = width - (total - sum(natural[i] for i in flexible))
    for k, i in enumerate(flexible):  # the narrowest first: what one leaves, the others share
        share = room // (len(flexible) - k)
        widths[i] = min(natural[i], max(MIN_WRAPPED, share))
        room -= widths[i]
    return widths


def print_table(
    columns: list[str],
    rows: list[list[Any]],
    *,
    wrap: Collection[str] = (),
    title: str | None = None,
) -> None:
    """A table whose every value is shown whole. Too wide for the terminal (or
    ``COLUMNS``), the columns named in ``wrap`` (default: the last) fold onto more lines;
    the others keep their width. Cells are escaped (:func:`triggerd.text.shown`): a file
    name cannot forge a line, move the cursor or reorder the text."""
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cells = [["" if cell is None else shown(cell) for cell in row] for row in rows]
    wrapping = (
        [name in wrap for name in columns]
        if wrap
        else [i == len(columns) - 1 for i in range(len(columns))]
    )
    natural = [
        max([cell_len(name), *(cell_len(row[i]) for row in cells)])
        for i, name in enumerate(columns)
    ]
    available = table_width()
    widths = column_widths(natural, wrapping, available)
    table = Table(title=title, box=None, header_style="bold", pad_edge=False, title_justify="left")
    for name, width, wraps in zip(columns, widths, wrapping, strict=True):
        table.add_column(Text(name), width=width, no_wrap=not wraps, overflow="fold")
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    Console(width=max(table_span(widths), available or 0), soft_wrap=False).print(table)


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
