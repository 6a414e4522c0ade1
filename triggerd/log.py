"""Logging through structlog: a human console on a TTY, one JSON object a line otherwise.

:func:`configure_logging` is called once, at the entry point (CLI, worker); importing
this module configures nothing. structlog loggers are routed through the standard
library, and the root logger's handler renders with structlog's ``ProcessorFormatter``,
so log records of libraries (celery, pymongo, watchdog, ...) come out in the same format
and with the same level filter as triggerd's own.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from triggerd.text import shown

__all__ = ["LEVELS", "configure_logging", "get_logger"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "console", "json")
# Names the one root handler we install, so configuring again replaces it.
_HANDLER_NAME = "triggerd"


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging for the whole process.

    ``level`` is one of ``debug``, ``info``, ``warning``, ``error``; ``fmt`` is
    ``console``, ``json`` or ``auto`` (console when ``stream`` is a TTY, JSON otherwise).
    ``stream`` defaults to ``sys.stderr``. Timestamps are ISO 8601 in UTC. Calling it
    again (e.g. on reload) replaces the previous configuration.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (allowed: {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (allowed: {', '.join(FORMATS)})")
    stream = sys.stderr if stream is None else stream
    is_tty = _is_tty(stream)
    console = fmt == "console" or (fmt == "auto" and is_tty)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if console:
        # ConsoleRenderer formats exc_info itself (and warns if it is preformatted).
        final += [_escape_for_people, structlog.dev.ConsoleRenderer(colors=is_tty)]
    else:
        final += [
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
            structlog.processors.JSONRenderer(),
        ]

    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(LEVELS[level])

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so a second configure_logging (reload, tests) reaches every logger.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (use ``__name__``), optionally with bound values."""
    return structlog.stdlib.get_logger(name, **initial_values)


# Fields that are text of several lines by design (structlog's own renderings).
_MULTILINE = frozenset({"exception", "exc_info", "stack", "stack_info"})


def _escape_for_people(logger: Any, name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A console line holds file names and values from outside: a newline, ESC or bidi
    control in one must not forge a line or hide the rest (triggerd.text.shown). The
    JSON format needs no help: JSON escapes control characters itself."""
    return {
        k: v if k in _MULTILINE or not isinstance(v, str) else shown(v)
        for k, v in event_dict.items()
    }


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
