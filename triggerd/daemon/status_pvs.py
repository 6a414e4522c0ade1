"""The daemon's status as EPICS PVs, for beamline operator screens (``[status_pvs]``).

caproto's asyncio Channel Access server runs as a task on the daemon's own event loop,
so reading the daemon's state and pausing a rule need no locks and no threads. caproto
is pure Python: it shares no libca with pyepics (the PV source), and it is imported only
when a prefix is configured.

PVs (``P`` is the prefix):

=====================  ======  ===============================================
``P RUNNING``          int     1 while the daemon runs (0 as it stops)
``P DRAINING``         int     1 once it takes no new triggers
``P RUNS_ACTIVE``      int     runs submitted and not ended
``P RUNS_QUEUED``      int     runs waiting in the outbox (limits)
``P RUNS_FAILED``      int     runs that failed, as the state file counts them
``P OUTBOX``           int     runs not yet handed to the executor (queued, waiting for a file)
``P LAST_TRIGGER``     string  when a rule last fired (ISO 8601 UTC)
``P LAST_RULE``        string  which rule that was
``P <rule>:PAUSE``     enum    "active"/"paused"; writable: pause and resume
``P <rule>:FIRED``     int     how often the rule fired
=====================  ======  ===============================================

Counters are refreshed every ``interval`` seconds and only posted when they change;
LAST_* are posted when a trigger fires. A write to ``:PAUSE`` is recorded in the event
log as ``rule.paused``/``rule.resumed`` naming the Channel Access client.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from triggerd.eventlog.schema import LogEvent, format_time
from triggerd.log import get_logger

if TYPE_CHECKING:
    from .service import Daemon

__all__ = ["StatusPvs"]

log = get_logger(__name__)

PAUSE_STATES = ["active", "paused"]
_STRING_MAX = 39  # a DBR_STRING holds 40 bytes with its NUL


class StatusPvs:
    """Serve the daemon's status under ``prefix``; ``await start()``, ``await stop()``."""

    def __init__(self, daemon: Daemon, prefix: str, *, port: int | None = None, interval: float = 1.0) -> None:
        self._daemon = daemon
        self._prefix = prefix
        self._port = port
        self._interval = interval
        self._pvdb: dict[str, Any] = {}
        self._rules: set[str] = set()
        self._server: asyncio.Task[None] | None = None
        self._updater: asyncio.Task[None] | None = None
        self._integer: Any = None  # caproto's ChannelInteger, and the pause switch class
        self._pause: Any = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        from caproto import ChannelEnum, ChannelInteger, ChannelString
        from caproto.asyncio.server import Context

        daemon = self._daemon

        class PauseChannel(ChannelEnum):  # type: ignore[misc]
            """A rule's pause switch: a client's write pauses or resumes the rule."""

            rule = ""
            client = "a Channel Access client"

            async def auth_write(self, hostname: str, username: str, *args: Any, **kwargs: Any) -> Any:
                self.client = f"Channel Access client {username}@{hostname}"
                return await super().auth_write(hostname, username, *args, **kwargs)

            async def verify_value(self, value: Any) -> Any:
                paused = value == "paused" if isinstance(value, str) else bool(value)
                try:
                    paused = daemon.set_paused(self.rule, paused, by=self.client)
                except KeyError:
                    raise ValueError(f"rule {self.rule!r} is gone (reloaded)") from None
                return PAUSE_STATES[paused]

        self._integer, self._pause = ChannelInteger, PauseChannel
        for name in ("RUNNING", "DRAINING", "RUNS_ACTIVE", "RUNS_QUEUED", "RUNS_FAILED", "OUTBOX"):
            self._pvdb[self._prefix + name] = ChannelInteger(value=0)
        for name in ("LAST_TRIGGER", "LAST_RULE"):
            self._pvdb[self._prefix + name] = ChannelString(value="")
        self.rules_changed()
        context = Context(self._pvdb)
        if self._port is not None:
            context.ca_server_port = self._port
        self._server = asyncio.get_running_loop().create_task(context.run(), name="triggerd-status-pvs")
        self._server.add_done_callback(self._server_ended)
        self._updater = asyncio.get_running_loop().create_task(self._update_loop())
        daemon.add_sink(self._on_event)
        await self._post("RUNNING", 1)
        log.info("status PVs served", prefix=self._prefix, pvs=len(self._pvdb), port=self._port)

    async def stop(self) -> None:
        """RUNNING goes to 0 (clients see it), then the server closes its sockets."""
        if self._server is None:
            return
        await self._post("RUNNING", 0)
        await asyncio.sleep(0.05)  # let the monitor update leave before the circuits close
        for task in (self._updater, self._server, *self._pending):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._updater, self._server) if t is not None), return_exceptions=True)
        self._server = self._updater = None

    def _server_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._daemon.notify("daemon.status_pvs_failed", f"status PVs under {self._prefix} stopped: {task.exception()}", level="error")

    def rules_changed(self) -> None:
        """Add the PVs of new rules and drop those of removed ones (after a reload)."""
        d = self._daemon.dispatcher
        assert d is not None
        names = {r.name for r in d.rules.rules}
        for gone in self._rules - names:
            self._pvdb.pop(f"{self._prefix}{gone}:PAUSE", None)
            self._pvdb.pop(f"{self._prefix}{gone}:FIRED", None)
        for new in names - self._rules:
            pause = self._pause(value=PAUSE_STATES[new in d.paused], enum_strings=PAUSE_STATES)
            pause.rule = new
            self._pvdb[f"{self._prefix}{new}:PAUSE"] = pause
            self._pvdb[f"{self._prefix}{new}:FIRED"] = self._integer(value=0)
        self._rules = names

    # -- updates ------------------------------------------------------------------------

    async def _update_loop(self) -> None:
        while True:
            try:
                await self._refresh()
            except Exception:
                log.exception("status PVs: refresh failed")
            await asyncio.sleep(self._interval)

    async def _refresh(self) -> None:
        daemon, d = self._daemon, self._daemon.dispatcher
        if d is None:
            return
        counts = daemon.state.counts()  # the state file is the loop's: two small queries
        stats = daemon.state.rule_stats()
        await self._post("DRAINING", int(d.draining))
        await self._post("RUNS_ACTIVE", d.running())
        await self._post("RUNS_QUEUED", d.queued())
        await self._post("RUNS_FAILED", counts.get("failed", 0))
        await self._post("OUTBOX", d.queued() + (daemon.pv.waiting() if daemon.pv is not None else 0))
        for rule in self._rules:
            await self._post(f"{rule}:PAUSE", PAUSE_STATES[rule in d.paused])
            await self._post(f"{rule}:FIRED", stats.get(rule, {}).get("fired", 0))

    async def _post(self, name: str, value: Any) -> None:
        channel = self._pvdb.get(self._prefix + name)
        if channel is None or channel.value == value:
            return
        await channel.write(value, verify_value=False)

    def _on_event(self, event: LogEvent) -> None:
        """A sink of the daemon's events (on the loop): a trigger updates LAST_* at once."""
        if event.kind != "trigger.fired" or self._server is None:
            return
        at = format_time(event.time)
        rule = (event.rule or "(manual)")[:_STRING_MAX]
        task = asyncio.get_running_loop().create_task(self._post_trigger(at[:_STRING_MAX], rule))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post_trigger(self, at: str, rule: str) -> None:
        await self._post("LAST_TRIGGER", at)
        await self._post("LAST_RULE", rule)
