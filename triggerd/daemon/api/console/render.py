"""How the console writes what it shows: the Jinja environment, states as a symbol and a
colour, times relative and absolute, durations.

Every value a template prints passes through :func:`triggerd.text.shown` (the
environment's ``finalize``) before HTML escaping, so a file name with a newline, an ANSI
escape or a bidi control shows its escapes instead of forging what an operator reads;
templates also say ``|shown`` where a name is printed, for the reader.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup

from triggerd.runstate import RunState
from triggerd.text import shown

__all__ = ["BADGES", "ago", "badge", "duration", "environment", "moment"]

#: A state word -> (symbol, CSS class). The symbol says the state without its colour.
BADGES: dict[str, tuple[str, str]] = {
    RunState.SUCCEEDED: ("✓", "ok"),
    RunState.FAILED: ("✗", "bad"),
    RunState.STOPPED: ("■", "stopped"),
    RunState.ABORTED: ("⚠", "warn"),
    RunState.REJECTED: ("⚠", "warn"),
    RunState.RUNNING: ("▶", "active"),
    RunState.QUEUED: ("…", "pending"),
    RunState.SUBMITTED: ("…", "pending"),
    RunState.WAITING: ("…", "pending"),
    # tasks and DAGs
    "skipped": ("↷", "muted"),
    "cancelled": ("■", "stopped"),
    # dependencies, file sources, PVs
    "up": ("✓", "ok"),
    "down": ("✗", "bad"),
    "watching": ("✓", "ok"),
    "rescanning": ("↻", "pending"),
    "overflow": ("⚠", "warn"),
    "error": ("✗", "bad"),
    "connected": ("✓", "ok"),
    "connecting": ("…", "pending"),
    "disconnected": ("✗", "bad"),
    "never connected": ("✗", "bad"),
    "paused": ("⏸", "warn"),
    "active": ("▶", "ok"),
}
_UNKNOWN = ("?", "muted")


def badge(state: object) -> Markup:
    """``state`` as a symbol and its word, coloured by its class: never colour alone."""
    word = "" if state is None else shown(state)
    symbol, css = BADGES.get(word, _UNKNOWN)
    return Markup('<span class="badge {}"><span aria-hidden="true">{}</span> {}</span>').format(
        css, symbol, word or "unknown"
    )


def moment(value: object) -> datetime | None:
    """A time as the daemon keeps it (epoch seconds, or ISO text from the event log) in UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        return moment(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def duration(seconds: object) -> str:
    """``0.018 s``, ``4.2 s``, ``3 min 5 s``, ``2 h 4 min``, ``3 d 1 h``; "" for none."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return ""
    if seconds < 10:
        return f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.1f} s"
    whole = int(seconds)
    for unit, size, smaller, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size} {unit} {whole % size // small_size} {smaller}"
    return f"{whole} s"


def ago(value: object, now: datetime | None = None) -> str:
    """How long ago ``value`` was, in one unit: ``4 s ago``, ``3 min ago``, ``in 2 s``."""
    when = moment(value)
    if when is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    size = abs(seconds)
    for unit, unit_seconds in (("d", 86400), ("h", 3600), ("min", 60)):
        if size >= unit_seconds:
            amount = f"{int(size // unit_seconds)} {unit}"
            break
    else:
        amount = f"{int(size)} s"
    return f"{amount} ago" if seconds >= -1 else f"in {amount}"


def _when(value: object) -> Markup:
    """A ``<time>``: the UTC time to the second (only the clock for today), how long ago,
    and the full ISO time as its title and machine-readable value."""
    when = moment(value)
    if when is None:
        return Markup('<span class="muted">–</span>')
    now = datetime.now(UTC)
    clock = when.strftime("%H:%M:%S" if when.date() == now.date() else "%Y-%m-%d %H:%M:%S")
    iso = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Markup(
        '<span class="when"><time datetime="{iso}" title="{iso}">{clock}</time>'
        ' <span class="ago">{ago}</span></span>'
    ).format(iso=iso, clock=clock, ago=ago(when, now))


def _finalize(value: Any) -> Any:
    """What every ``{{ ... }}`` prints: markup the templates made as it is, None as
    nothing, anything else through :func:`shown` (then autoescaped)."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return shown(value)


def environment() -> jinja2.Environment:
    """The console's templates, autoescaped, with its filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__ or "triggerd.daemon.api.console", "templates"),
        autoescape=True,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(shown=shown, badge=badge, when=_when, ago=ago, duration=duration)
    return env
