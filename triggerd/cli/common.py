"""What every command needs: settings loaded once, logging configured, errors shown well."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from triggerd.config import Settings, load_settings
from triggerd.errors import TriggerdError
from triggerd.log import configure_logging

__all__ = ["config_option", "fail", "json_option", "obtain_settings", "reports_errors"]

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
