"""What the daemon's readers may see of it and ask of it: the control API, the metrics and
the status PVs are written against these two protocols, never against the daemon class.

:class:`DaemonView` is what is read (state, rules, health), :class:`DaemonControl` adds what
an operator may ask (pause, start, stop, replay, drain, reload). A request that cannot be
done raises one of :mod:`triggerd.errors`' request errors (:class:`~triggerd.errors.RunNotFound`,
:class:`~triggerd.errors.RunEnded`, :class:`~triggerd.errors.NotReady`, ...), which the API
maps to a status code in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from triggerd.config import Settings
    from triggerd.eventlog.schema import LogEvent
    from triggerd.health import Reading

    from .deferred import StateWrites
    from .dispatcher import Dispatcher
    from .events import DaemonEventLog
    from .pv_triggers import PvTriggers
    from .state import StateDB

__all__ = ["DaemonControl", "DaemonView"]


class DaemonView(Protocol):
    """The running daemon, read-only. ``dispatcher`` and ``eventlog`` are None while it starts."""

    @property
    def settings(self) -> Settings: ...
    @property
    def state(self) -> StateDB: ...
    @property
    def dispatcher(self) -> Dispatcher | None: ...
    @property
    def eventlog(self) -> DaemonEventLog | None: ...
    @property
    def pv(self) -> PvTriggers | None: ...
    @property
    def writes(self) -> StateWrites | None: ...
    @property
    def started(self) -> float: ...
    @property
    def reloads(self) -> int: ...
    @property
    def last_reload(self) -> dict[str, Any] | None: ...
    @property
    def recent(self) -> Sequence[LogEvent]: ...
    @property
    def observed(self) -> Mapping[str, list[dict[str, Any]]]: ...

    def summary(self) -> str:
        """One line: rules, running, queued, failed, what is waited for."""
        ...

    def readings(self) -> list[Reading]:
        """Every service the daemon needs, as last seen."""
        ...

    def file_health(self) -> list[dict[str, Any]]:
        """Each watched root: its state (watching, waiting, error) and why."""
        ...

    def own_file(self, path: str) -> bool:
        """Whether ``path`` is one of the daemon's own files (which never trigger)."""
        ...

    def skipped_by_reason(self, rule: str | None) -> dict[str, int]:
        """Triggers of ``rule`` (None: of all rules) that did not become a run, by reason."""
        ...

    def status_pvs_status(self) -> dict[str, Any] | None:
        """The status PVs as ``triggerctl status`` shows them; None when not configured."""
        ...

    def metrics_text(self) -> str:
        """The Prometheus exposition text of ``/metrics``."""
        ...


class DaemonControl(DaemonView, Protocol):
    """The running daemon, with what an operator may ask of it."""

    def set_paused(self, rule: str, paused: bool, *, by: str) -> bool:
        """Pause or resume ``rule`` (RuleNotFound); returns whether it is paused now."""
        ...

    def start_run(self, workflow: str, params: dict[str, Any]) -> str:
        """Queue a run of ``workflow`` now; its id. ConfigError: unknown or bad parameters."""
        ...

    def replay(self, run_id: str) -> str:
        """Queue a new run with the trigger and parameters of ``run_id`` (RunNotFound)."""
        ...

    def stop_run(self, run_id: str) -> str:
        """Stop a run: "stopped" or "stopping" (RunNotFound, RunEnded)."""
        ...

    def drain(self) -> dict[str, Any]:
        """Take no new triggers; the runs going on finish. Their counts."""
        ...

    async def reload(self) -> dict[str, Any]:
        """Re-read config and rules; ``{"ok": False, "error": ...}`` keeps the old ones."""
        ...

    def record_event(
        self,
        kind: str,
        message: str,
        level: str = "info",
        run: str | None = None,
        workflow: str | None = None,
        rule: str | None = None,
        dag: str | None = None,
        data: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        """Record an event: the daemon's log, its metrics, the event log."""
        ...

    def add_sink(self, sink: Callable[[LogEvent], None]) -> None:
        """Also hand every recorded event to ``sink`` (on the loop)."""
        ...
