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
``P <rule>:PAUSE``     enum    "active"/"paused"; the one writable PV: pause and resume
``P <rule>:FIRED``     int     how often the rule fired
=====================  ======  ===============================================

Counters are refreshed every ``interval`` seconds and only posted when they change;
LAST_* are posted when a trigger fires. A write to ``:PAUSE`` is recorded in the event
log as ``rule.paused``/``rule.resumed`` naming the Channel Access client.

**Finding them.** The server has a port of its own, ``port`` = 5069 by default (TCP and
UDP, on the interfaces of ``EPICS_CAS_INTF_ADDR_LIST``), not the 5064 of IOCs: servers on
one host that share a UDP port each miss the unicast searches that the kernel hands to
another (the last one bound), so on a beamline server that runs IOCs either their PVs or
the daemon's would not be found. A client adds ``<host>:5069`` to ``EPICS_CA_ADDR_LIST``;
the log line at start and ``triggerctl status`` name that entry. A port already taken is
an error naming ``status_pvs.port`` (caproto on its own would move to a random port that
no client searches); the daemon then runs without status PVs.

**Who may write.** Every PV but ``<rule>:PAUSE`` is read-only: a client sees no write
access, and a put that comes anyway fails with a Channel Access error (ECA_PUTFAIL), the
value unchanged. PAUSE is writable by anyone who reaches the port, unless ``writers``
lists who may, as the UAG and HAG of EPICS access security do::

    writers = ["ops@bl13-ws1", "bl13-ws2", "blctl@*"]

``user@host`` is that user on that host, ``host`` (or ``*@host``) anyone on it, ``user@*``
that user anywhere, ``*`` anyone. User names compare exactly, host names ignore case, and
a host name without a dot also matches a fully qualified name that begins with it (libca
sends what gethostname() returns: the short name on one machine, the FQDN on the next).
These are the names the client *asserts*: Channel Access has no passwords, so ``writers``
guards against mistakes (a screen on the wrong workstation), it does not authenticate.
An unlisted client sees PAUSE read-only; a put that reaches the daemon anyway is refused,
logged and recorded as a ``daemon.status_pv_refused`` event naming the client (libca
clients such as caget, caput and CSS refuse on their own side and send nothing).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from triggerd.errors import ConfigError, RuleNotFound
from triggerd.eventlog.schema import LogEvent, format_time
from triggerd.log import get_logger

if TYPE_CHECKING:
    from triggerd.config import StatusPvSettings

    from .control import DaemonControl

__all__ = ["StatusPvs", "may_write", "status_view"]

log = get_logger(__name__)

PAUSE_STATES = ["active", "paused"]
_STRING_MAX = 39  # a DBR_STRING holds 40 bytes with its NUL
_ANY_INTERFACE = "0.0.0.0"


def may_write(writers: Sequence[str], host: str | None, user: str | None) -> bool:
    """Whether a client calling itself ``user`` on ``host`` may write PAUSE (module doc: syntax).

    An empty list lets anyone write, as before ``writers`` existed. A client that sent no
    names (``None``) matches only entries that accept any user on any host.
    """
    if not writers:
        return True
    host = (host or "").lower()
    try:
        ipaddress.ip_address(host)
        short = host  # "10" must not match the client "10.0.0.5"
    except ValueError:
        short = host.split(".", 1)[0]
    for entry in writers:
        want_user, _, want_host = entry.rpartition("@")
        if want_user not in ("", "*") and want_user != user:
            continue
        want_host = want_host.lower()
        if want_host in ("*", host) or ("." not in want_host and want_host == short):
            return True
    return False


def status_view(
    cfg: StatusPvSettings, served: StatusPvs | None, recent: Sequence[LogEvent]
) -> dict[str, Any] | None:
    """The ``status_pvs`` entry of ``triggerctl status``: None without a prefix; ``error``
    (from the last ``daemon.status_pvs_failed`` event in ``recent``) when not served."""
    if cfg.prefix is None:
        return None
    if served is not None:
        return served.describe()
    why = next((e.message for e in reversed(recent) if e.kind == "daemon.status_pvs_failed"), None)
    return {
        "prefix": cfg.prefix,
        "port": cfg.port,
        "error": why or "not served (see the daemon.status_pvs_failed event)",
    }


class _HideRefusals(logging.Filter):
    """Drop caproto's traceback for a write we refused: ``_refuse`` logged it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from caproto import Forbidden

        return not (record.exc_info and isinstance(record.exc_info[1], Forbidden))


_REFUSALS = _HideRefusals()


class StatusPvs:
    """Serve the daemon's status under ``prefix`` on ``port``; ``await start()``,
    ``await stop()``."""

    def __init__(
        self,
        daemon: DaemonControl,
        prefix: str,
        *,
        port: int,
        interval: float = 1.0,
        writers: Sequence[str] = (),
    ) -> None:
        self._daemon = daemon
        self._prefix = prefix
        self._port = port
        self._interval = interval
        self._writers = tuple(writers)
        self._interfaces: list[str] = []
        self._pvdb: dict[str, Any] = {}
        self._rules: set[str] = set()
        self._server: asyncio.Task[None] | None = None
        self._updater: asyncio.Task[None] | None = None
        self._integer: Any = None  # the channel classes, defined once caproto is imported
        self._string: Any = None
        self._pause: Any = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind the port (ConfigError naming ``status_pvs.port`` if taken), then serve."""
        import caproto
        from caproto.asyncio.server import Context

        self._interfaces = list(caproto.get_server_address_list())
        sockets = self._bind()

        class Server(Context):  # type: ignore[misc]
            """caproto's server on the sockets bound above, never on a port of its choosing
            (caproto's hook for binding its TCP sockets, as of caproto 1.3)."""

            async def _bind_tcp_sockets_with_consistent_port_number(self, make_socket: Any) -> Any:
                return self.ca_server_port, sockets

        try:
            self._define_channels()
            for name in (
                "RUNNING",
                "DRAINING",
                "RUNS_ACTIVE",
                "RUNS_QUEUED",
                "RUNS_FAILED",
                "OUTBOX",
            ):
                self._add(name, self._integer(value=0))
            for name in ("LAST_TRIGGER", "LAST_RULE"):
                self._add(name, self._string(value=""))
            self.rules_changed()
            context = Server(self._pvdb, self._interfaces)
        except BaseException:
            for sock in sockets.values():
                sock.close()
            raise
        context.ca_server_port = self._port  # the UDP search port, and what the searches answer
        logging.getLogger("caproto.circ").addFilter(_REFUSALS)
        self._server = asyncio.get_running_loop().create_task(
            context.run(), name="triggerd-status-pvs"
        )
        self._server.add_done_callback(self._server_ended)
        self._updater = asyncio.get_running_loop().create_task(self._update_loop())
        self._daemon.add_sink(self._on_event)
        await self._post("RUNNING", 1)
        where = self.describe()
        log.info(
            "status PVs served",
            prefix=self._prefix,
            pvs=len(self._pvdb),
            port=self._port,
            EPICS_CA_ADDR_LIST=where["ca_addr_list"],
            writers=where["writers"],
        )

    async def stop(self) -> None:
        """RUNNING goes to 0 (clients see it), then the server closes its sockets."""
        if self._server is None:
            return
        await self._post("RUNNING", 0)
        await asyncio.sleep(0.05)  # let the monitor update leave before the circuits close
        for task in (self._updater, self._server, *self._pending):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._updater, self._server) if t is not None), return_exceptions=True
        )
        self._server = self._updater = None
        logging.getLogger("caproto.circ").removeFilter(_REFUSALS)

    def describe(self) -> dict[str, Any]:
        """Where clients find the PVs and who may write PAUSE (``triggerctl status``).

        ``ca_addr_list`` is what a client adds to ``EPICS_CA_ADDR_LIST``: this host's name
        when the server listens on every interface, else the interfaces' addresses.
        """
        hosts = [socket.gethostname() if i == _ANY_INTERFACE else i for i in self._interfaces]
        view: dict[str, Any] = {
            "prefix": self._prefix,
            "port": self._port,
            "interfaces": list(self._interfaces),
            "ca_addr_list": " ".join(f"{host}:{self._port}" for host in hosts),
            "writers": list(self._writers),
        }
        if self._server is not None and self._server.done() and not self._server.cancelled():
            view["error"] = f"stopped: {self._server.exception()}"
        return view

    def _bind(self) -> dict[str, socket.socket]:
        """TCP sockets on ``port``, one per interface, or a ConfigError that names the setting.

        caproto would try a random port when the configured one is taken, where no client
        configured for this one would look; binding here makes that a clear error instead.
        """
        sockets: dict[str, socket.socket] = {}
        for interface in self._interfaces:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                # as caproto: no wait for TIME_WAIT
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setblocking(False)
                sock.bind((interface, self._port))
            except OSError as exc:
                sock.close()
                for bound in sockets.values():
                    bound.close()
                taken = exc.errno == errno.EADDRINUSE
                hint = (
                    "; another triggerd or Channel Access server has it: "
                    "set [status_pvs] port to a free one"
                )
                raise ConfigError(
                    f"port {self._port} on {interface}: {exc.strerror}{hint if taken else ''}",
                    key="status_pvs.port",
                ) from None
            sockets[interface] = sock
        return sockets

    def _define_channels(self) -> None:
        """caproto's channel classes: read-only for clients, except PAUSE (for ``writers``)."""
        from caproto import AccessRights, ChannelEnum, ChannelInteger, ChannelString

        status = self

        class ReadOnly:
            """Clients may read; a write that comes anyway is refused, logged and recorded.

            The daemon itself posts with ``write()``, which asks no access rights.
            """

            pvname = ""
            rule: str | None = None

            def check_access(self, hostname: str | None, username: str | None) -> Any:
                return AccessRights.READ

            async def auth_write(
                self, hostname: str | None, username: str | None, *args: Any, **kwargs: Any
            ) -> Any:
                if AccessRights.WRITE not in self.check_access(hostname, username):
                    raise status._refuse(self.pvname, self.rule, hostname, username)
                return await super().auth_write(hostname, username, *args, **kwargs)  # type: ignore[misc]

        class Integer(ReadOnly, ChannelInteger):  # type: ignore[misc]
            pass

        class String(ReadOnly, ChannelString):  # type: ignore[misc]
            pass

        class Pause(ReadOnly, ChannelEnum):  # type: ignore[misc]
            """A rule's pause switch: a write from a client ``writers`` allows pauses or
            resumes it."""

            client = "a Channel Access client"

            def check_access(self, hostname: str | None, username: str | None) -> Any:
                if may_write(status._writers, hostname, username):
                    return AccessRights.READ | AccessRights.WRITE
                return AccessRights.READ

            async def auth_write(
                self, hostname: str | None, username: str | None, *args: Any, **kwargs: Any
            ) -> Any:
                self.client = f"Channel Access client {username}@{hostname}"
                return await super().auth_write(hostname, username, *args, **kwargs)

            async def verify_value(self, value: Any) -> Any:
                paused = value == "paused" if isinstance(value, str) else bool(value)
                try:
                    paused = status._daemon.set_paused(self.rule or "", paused, by=self.client)
                except RuleNotFound:
                    raise ValueError(f"rule {self.rule!r} is gone (reloaded)") from None
                return PAUSE_STATES[paused]

        self._integer, self._string, self._pause = Integer, String, Pause

    def _add(self, name: str, channel: Any, rule: str | None = None) -> None:
        channel.pvname, channel.rule = self._prefix + name, rule
        self._pvdb[self._prefix + name] = channel

    def _refuse(
        self, pvname: str, rule: str | None, hostname: str | None, username: str | None
    ) -> Exception:
        """Log and record a refused write; the exception caproto turns into the client's CA
        error."""
        from caproto import Forbidden

        client = f"{username}@{hostname}"
        why = "not listed in [status_pvs] writers" if rule is not None else "read-only"
        self._daemon.record_event(
            "daemon.status_pv_refused",
            f"write to {pvname} by Channel Access client {client} refused: {why}",
            level="warning",
            rule=rule,
            data={"pv": pvname, "by": client, "reason": why},
        )
        return Forbidden(f"{pvname}: {why} (client {client})")

    def _server_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._daemon.record_event(
                "daemon.status_pvs_failed",
                f"status PVs under {self._prefix} stopped: {task.exception()}",
                level="error",
            )

    def rules_changed(self) -> None:
        """Add the PVs of new rules and drop those of removed ones (after a reload)."""
        d = self._daemon.dispatcher
        assert d is not None
        names = {r.name for r in d.rules.rules}
        for gone in self._rules - names:
            self._pvdb.pop(f"{self._prefix}{gone}:PAUSE", None)
            self._pvdb.pop(f"{self._prefix}{gone}:FIRED", None)
        for new in names - self._rules:
            self._add(
                f"{new}:PAUSE",
                self._pause(value=PAUSE_STATES[new in d.paused], enum_strings=PAUSE_STATES),
                rule=new,
            )
            self._add(f"{new}:FIRED", self._integer(value=0))
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
        await self._post(
            "OUTBOX", d.queued() + (daemon.pv.waiting() if daemon.pv is not None else 0)
        )
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
