"""The daemon: sources in, dispatcher, outbox, executor out, and the control API beside.

One asyncio loop owns the dispatcher and the state file. Sources (watchdog threads, the
PV source's thread) and the executor (its own thread) hand their events to the loop with
``call_soon_threadsafe``; nothing else crosses threads (the PV side: pv_triggers.py).
Signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads config and rules (keeping the old
ones if the new are invalid).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from triggerd.config import Settings, load_settings
from triggerd.engine.base import Executor
from triggerd.engine.factory import make_executor
from triggerd.engine.journal import Journal
from triggerd.errors import (
    BackendUnavailable,
    ConfigError,
    NotReady,
    RuleNotFound,
    RunEnded,
    RunNotFound,
    TriggerdError,
)
from triggerd.eventlog.schema import LogEvent
from triggerd.health import Reading
from triggerd.log import get_logger
from triggerd.private import make_private_dir
from triggerd.runstate import END_KINDS, RunState
from triggerd.sources import FileSource

from .api import ControlServer
from .catch_up import CatchUp, watches_for
from .checks import check_everything, setup_warnings
from .deferred import StateWrites
from .dependencies import DependencyWatch
from .dispatcher import Dispatcher
from .events import DaemonEventLog
from .intake import FileIntake
from .metrics import Metrics
from .notify import SystemdNotifier
from .pv_triggers import PvTriggers
from .rules import RuleSet, load_rules_for
from .state import StateDB
from .status_pvs import StatusPvs, status_view

__all__ = ["Daemon", "watches_for"]

log = get_logger("triggerd.daemon")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# How far before a reload began its rescan looks: past the events watchdog had queued and
# not yet handed out, and the tick by which a ctime (the kernel's coarse clock) may lag
# time.time(). Files found that were dispatched already cost a ledger lookup each.
_RELOAD_LOOKBACK = 5.0


@contextlib.contextmanager
def _single_instance(state_dir: Path, mode: int) -> Iterator[None]:
    """One daemon per state directory: two would share an outbox and run files twice.
    The directory is created here, with ``mode`` (paths.state_dir_mode), if missing."""
    make_private_dir(state_dir, mode)
    fd = os.open(state_dir / "triggerd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "?"
            raise BackendUnavailable(
                f"another triggerd (pid {owner}) is running with the state directory {state_dir}: "
                "stop it first, or give this one its own paths.state_dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


class Daemon:
    """The running service. ``await run()`` until a stop signal; the API calls the rest."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        systemd: SystemdNotifier | None = None,
    ):
        self.settings = settings
        self.config_path = config_path
        self.systemd = systemd or SystemdNotifier()
        self.started = time.time()
        self.state = StateDB(settings.state_db_path)
        # Every event of every run, so a run resumes where it was after a crash.
        self.journal = Journal(settings.paths.state_dir / "journal.sqlite")
        self.recent: collections.deque[LogEvent] = collections.deque(maxlen=2000)
        self.health: dict[str, dict[str, Any]] = {}
        self.reloads = 0
        self.last_reload: dict[str, Any] | None = None  # {"at", "ok", "error"}: shown by status
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._executor: Executor | None = None
        self.eventlog: DaemonEventLog | None = None
        self.metrics = Metrics()
        self._source: FileSource | None = None
        self._catch_up: CatchUp | None = None
        self.pv: PvTriggers | None = None
        self.status_pvs: StatusPvs | None = None
        self.dispatcher: Dispatcher | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._sinks: list[Callable[[LogEvent], None]] = []
        # Set at shutdown: runs the executor stops while closing are not recorded as
        # stopped, so they stay unfinished in the outbox and run again at the next start.
        self._detached = False
        self._executor_retry: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # set whenever no run is active (for draining)
        self._intake: FileIntake | None = None
        # state writes, in order, waiting while the disk is full
        self.writes: StateWrites | None = None
        celery = settings.celery if settings.executor.kind == "celery" else None
        self.dependencies = DependencyWatch(
            self.record_event, give_up_after=settings.executor.give_up_after, celery=celery
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, serve until SIGTERM/SIGINT, then drain and stop. Returns 0."""
        self._loop = asyncio.get_running_loop()
        rules = load_rules_for(self.settings)  # invalid rules at start-up: refuse to start
        with _single_instance(self.settings.paths.state_dir, self.settings.paths.state_dir_mode):
            return await self._run(rules)

    async def _run(self, rules: RuleSet) -> int:
        assert self._loop is not None
        requeued = self._open_state()
        self.eventlog = DaemonEventLog(self.settings, self._loop)
        self.eventlog.start()
        self.add_sink(self.eventlog.record)
        self._executor = make_executor(
            self.settings, on_event=self._from_executor, journal=self.journal
        )
        self.dispatcher = Dispatcher(
            self.state,
            rules,
            submit=self._submit,
            record_event=self.record_event,
            resuming=requeued,
        )
        self._start_executor()
        catch_up = self._start_sources(rules)
        server = ControlServer(self, self.settings)
        await server.start()
        await self._start_status_pvs()
        for sig, handler in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload),
        ):
            self._loop.add_signal_handler(sig, handler)
        self.record_event(
            "daemon.started",
            f"triggerd started: {len(rules.rules)} rules, "
            f"{len(requeued)} runs resume where they were",
            data={"pid": os.getpid(), "config": self.settings.source},
        )
        # valid, but most likely not what was meant
        for warning in setup_warnings(self.settings, rules):
            self.record_event("daemon.warning", warning, level="warning")
        catch_up.missed(rules)
        self.dispatcher.pump(time.time())
        self.systemd.ready(self.summary())
        await self._serve_until_stopped(server)
        return 0

    def _open_state(self) -> list[str]:
        """Open the state file and the journal; the runs that were going on, queued again."""
        assert self._loop is not None
        self.state.open()
        self.writes = StateWrites(self._loop, self.settings.state_db_path)
        requeued = self.state.requeue_unfinished()
        self.journal.open()
        finished = set(self.journal.runs()) - self.state.unfinished(self.journal.runs())
        for run_id in finished:  # ended, and the daemon died before their journal went
            self.journal.forget(run_id)
        return requeued

    def _start_executor(self) -> None:
        assert self._executor is not None and self.dispatcher is not None
        assert self._loop is not None
        try:
            self._executor.start()
        except BackendUnavailable as exc:
            # Redis not up yet (boot order): wait for it, take triggers
            self.dispatcher.holding = str(exc)
            self.record_event(
                "executor.waiting",
                f"the executor waits for its backend; runs wait in the outbox: {exc}",
                level="warning",
            )
            self._executor_retry = self._loop.create_task(self._start_executor_later())

    def _start_sources(self, rules: RuleSet) -> CatchUp:
        """Watch the files and PVs of ``rules``; what finds the files the watches missed."""
        assert self._loop is not None and self.dispatcher is not None
        assert self.writes is not None
        own_dirs, own_files = self.settings.own_files()
        intake = self._intake = FileIntake(
            self._loop, self.dispatcher, self.writes, dispatched=self._arm_tick
        )
        source = self._source = FileSource(
            watches_for(rules),
            intake.from_source,
            on_health=self._on_health,
            own_dirs=own_dirs,
            own_files=own_files,
        )
        source.start()
        self._catch_up = CatchUp(
            self._loop,
            self.state,
            lambda watch, since: source.scan(watch, arrived_since=since),
            intake.found,
            self.record_event,
        )
        self.pv = PvTriggers(
            self._loop,
            self.dispatcher,
            self.state,
            record_event=self.record_event,
            queued=self._arm_tick,
            durably=self.writes.run,
        )
        self.pv.start(rules)
        self.pv.resume_waits()
        return self._catch_up

    async def _serve_until_stopped(self, server: ControlServer) -> None:
        heartbeat = asyncio.create_task(self._heartbeat()) if self.systemd.enabled else None
        # Celery: jobs no worker took, by queue
        waiting = getattr(self._executor, "waiting_queues", dict)
        watch = asyncio.create_task(self.dependencies.watch(self.readings, waiting))
        try:
            await self._stop.wait()
        finally:
            watch.cancel()
            await self._shutdown(server)
            if heartbeat:
                heartbeat.cancel()

    # -- dependencies ---------------------------------------------------------------------------

    def readings(self) -> list[Reading]:
        """Every service the daemon needs, as last seen (no I/O: what their users saw)."""
        found = list(self._executor.dependencies()) if self._executor is not None else []
        if self.eventlog is not None:
            found.append(self.eventlog.writer.health.reading)
        if self.writes is not None:
            found.append(self.writes.health.reading)
        found.append(self.journal.health.reading)
        return found + self.dependencies.queue_readings()

    async def _start_executor_later(self) -> None:
        """Try the executor again (1 s, 2 s, ... up to 30 s apart) until it starts; then the
        runs queued meanwhile go out."""
        assert self._executor is not None and self.dispatcher is not None
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(self._executor.start)
            except BackendUnavailable as exc:
                self.dispatcher.holding = str(exc)
                delay = min(delay * 2, 30.0)
                continue
            self.dispatcher.holding = None
            self.record_event(
                "executor.ready", "the executor reached its backend: queued runs go out"
            )
            self.dispatcher.pump(time.time())
            self._arm_tick()
            return

    def request_stop(self) -> None:
        self._stop.set()

    async def _shutdown(self, server: Any) -> None:
        self.systemd.stopping()
        assert self.dispatcher is not None and self._executor is not None
        self.dispatcher.draining = True
        if self._source:
            self._source.stop()
        if self.pv is not None:
            self.pv.stop()
            self.pv.cancel_waits()
        if self.dispatcher.running():
            self.systemd.status(f"draining: {self.dispatcher.running()} runs still running")
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), self.settings.daemon.drain_timeout)
            except TimeoutError:
                pass
        if self._executor_retry is not None:
            self._executor_retry.cancel()
        unfinished = self.dispatcher.active_run_ids()
        self._detached = True
        self.record_event(
            "daemon.stopped",
            f"triggerd stopped; {len(unfinished)} unfinished runs resume at the next start",
            data={"unfinished": unfinished},
        )
        self._executor.close(timeout=5)
        self.journal.close()
        if self.status_pvs is not None:
            await self.status_pvs.stop()
        await server.stop()
        if self.eventlog is not None:
            await asyncio.to_thread(self.eventlog.close)  # writes what is queued
        self.state.close()

    async def _heartbeat(self) -> None:
        """Under systemd: WATCHDOG pings (a hung loop gets restarted) and a fresh STATUS line."""
        interval = min(self.systemd.watchdog_interval or 5.0, 5.0)
        last = ""
        while True:
            if self.systemd.watchdog_interval:
                self.systemd.watchdog()
            summary = self.summary()
            if summary != last:
                self.systemd.status(summary)
                last = summary
            await asyncio.sleep(interval)

    def summary(self) -> str:
        d = self.dispatcher
        if d is None:
            return "starting"
        counts = self.state.counts()
        waiting = "; executor waiting for its backend" if d.holding else ""
        down = self.dependencies.down()
        if down:
            waiting += "; waiting for " + ", ".join(f"{r.name} (down)" for r in down)
        return (
            f"{len(d.rules.rules)} rules, {d.running()} running, {d.queued()} queued, "
            f"{counts.get('failed', 0)} failed{waiting}"
        )

    def own_file(self, path: str) -> bool:
        """Whether ``path`` leads to one of the daemon's own files, which never trigger."""
        return self._source is not None and self._source.own(path)

    # -- reload ---------------------------------------------------------------------------------

    def request_reload(self) -> None:
        assert self._loop is not None
        self._loop.create_task(self.reload())

    async def reload(self) -> dict[str, Any]:
        """Re-read config and rules; on any error keep the running ones and say why."""
        self.systemd.reloading()
        try:
            settings = load_settings(self.config_path)
            # As `triggerd check` does, off the loop (it imports every workflow).
            checked = await asyncio.to_thread(check_everything, settings)
            if checked.problems or checked.rules is None:
                raise ConfigError("; ".join(checked.problems))
            rules = checked.rules
        except TriggerdError as exc:
            self.record_event(
                "daemon.reload_failed",
                f"reload failed, keeping the running config and rules: {exc}",
                level="error",
            )
            self.last_reload = {"at": time.time(), "ok": False, "error": str(exc)}
            self.systemd.ready(self.summary())
            return {"ok": False, "error": str(exc)}
        assert self.dispatcher is not None and self._source is not None
        began = time.time()
        before = self.dispatcher.rules
        old = {r.name for r in before.rules}
        self.dispatcher.replace_rules(rules)
        # Off the loop: starting a watch walks its tree, stopping one waits for its thread.
        # A changed watch starts before the old one stops (FileSource.update).
        await asyncio.to_thread(self._source.update, watches_for(rules))
        if self.pv is not None:
            self.pv.update(rules)
        if self.status_pvs is not None:
            self.status_pvs.rules_changed()
        self.settings = (
            settings if settings.paths.state_dir == self.settings.paths.state_dir else self.settings
        )
        self.reloads += 1
        self.last_reload = {"at": time.time(), "ok": True, "error": None}
        new = {r.name for r in rules.rules}
        self.record_event(
            "daemon.reloaded",
            f"reloaded: {len(new)} rules ({len(new - old)} added, {len(old - new)} removed)",
        )
        assert self._catch_up is not None
        self._catch_up.missed(
            RuleSet(tuple(r for r in rules.rules if r.name in new - old), rules.files)
        )
        self._catch_up.changed(before, rules, since=began - _RELOAD_LOOKBACK)
        self.dispatcher.pump(time.time())
        self.systemd.ready(self.summary())
        return {"ok": True, "rules": sorted(new)}

    # -- events in ---------------------------------------------------------------------------------

    def _arm_tick(self) -> None:
        """Wake up exactly when the next debounce/batch group or rate slot is due."""
        assert self.dispatcher is not None and self._loop is not None
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        due = [
            t
            for t in (
                self.dispatcher.tick(time.time()),
                self.dispatcher.next_rate_slot(time.time()),
            )
            if t is not None
        ]
        if due:
            delay = max(0.0, min(due) - time.time())
            self._tick_handle = self._loop.call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        assert self.dispatcher is not None
        self._tick_handle = None
        self.dispatcher.pump(time.time())
        self._arm_tick()

    def _on_health(self, root: str, state: str, message: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._health_changed, root, state, message)

    def _health_changed(self, root: str, state: str, message: str) -> None:
        self.health[root] = {"state": state, "message": message, "since": time.time()}
        level = (
            "error"
            if state == "error"
            else "warning"
            if state in ("overflow", "waiting")
            else "info"
        )
        self.record_event(
            f"source.{state}", f"{root}: {message or state}", level=level, data={"root": root}
        )

    # -- status PVs ---------------------------------------------------------------------------

    async def _start_status_pvs(self) -> None:
        """Serve the status PVs when ``status_pvs.prefix`` is set; a failure is logged, not
        fatal."""
        cfg = self.settings.status_pvs
        if cfg.prefix is None:
            return
        status = StatusPvs(
            self, cfg.prefix, port=cfg.port, interval=cfg.interval, writers=cfg.writers
        )
        try:
            await status.start()
        except Exception as exc:  # a port in use, caproto missing: the daemon's job goes on
            self.record_event(
                "daemon.status_pvs_failed",
                f"status PVs under {cfg.prefix} not served: {exc}",
                level="error",
            )
            return
        self.status_pvs = status

    # -- runs ---------------------------------------------------------------------------------

    def _submit(self, row: Any) -> None:
        assert self._executor is not None and self._loop is not None and self.dispatcher is not None
        assert self.writes is not None
        run_id = row.run_id
        try:
            self._executor.submit(
                row.workflow, row.params, run_id=run_id, rule=row.rule, attempt=row.attempts + 1
            )
        except TriggerdError as exc:
            why = str(exc)
            self.writes.run(
                f"rejecting run {run_id}",
                lambda: self.state.set_state(run_id, "rejected", error=why),
            )
            self.record_event(
                "run.rejected",
                f"run {run_id} of {row.workflow} refused: {why}",
                level="error",
                run=run_id,
                workflow=row.workflow,
                rule=row.rule,
            )
            self._loop.call_soon(self.dispatcher.finished, run_id, time.time())
            return
        self.writes.run(
            f"submitting run {run_id}",
            lambda: self.state.set_state(run_id, "submitted", attempt=True),
        )

    def _from_executor(self, event: LogEvent) -> None:
        """Called on the executor's thread: hop to the loop."""
        if self._loop is not None and not self._detached:
            self._loop.call_soon_threadsafe(self._on_executor_event, event)

    def _on_executor_event(self, event: LogEvent) -> None:
        self._record(event)
        if self._detached or event.run is None:
            return
        assert self.writes is not None
        run_id = event.run
        if event.kind == "run.started":
            self.writes.run(
                f"recording run {run_id} running", lambda: self.state.set_state(run_id, "running")
            )
        elif event.kind in END_KINDS:
            state, error = event.kind.split(".")[1], event.data.get("error")
            self.writes.run(
                f"recording the end of run {run_id}",
                lambda: self._record_end(run_id, state, error, recorded=True),
            )

    def _record_end(
        self, run_id: str, state: str, error: str | None, *, recorded: bool = False
    ) -> None:
        """A run has ended: its state, its slot freed for the next queued run."""
        assert self.dispatcher is not None
        row = self.state.run(run_id)
        if row is None or row.state not in ("queued", "submitted", "running"):
            return  # ended already (an operator's stop crossing the run's own end)
        self.state.set_state(run_id, state, error=error)
        if self._executor is not None:
            self._executor.forget(run_id)  # its end is in the outbox now: the journal may go
        if not recorded:  # the executor recorded it itself
            self.record_event(
                f"run.{state}",
                f"run {run_id} {state}: {error}",
                level="warning",
                run=run_id,
                workflow=row.workflow,
                rule=row.rule,
                data={"error": error},
            )
        self.dispatcher.finished(run_id, time.time())
        if not self.dispatcher.running():
            self._idle.set()
        self._arm_tick()

    def _running_dispatcher(self) -> Dispatcher:
        if self.dispatcher is None or self._executor is None:
            raise NotReady()
        return self.dispatcher

    def start_run(self, workflow: str, params: dict[str, Any]) -> str:
        """Queue a run now; an unknown workflow or bad parameters are refused before."""
        dispatcher = self._running_dispatcher()
        assert self._executor is not None
        self._executor.validate(workflow, params)
        return dispatcher.start_manual(workflow, params, now=time.time())

    def replay(self, run_id: str) -> str:
        row = self.state.run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        dispatcher = self._running_dispatcher()
        assert self._executor is not None
        self._executor.validate(row.workflow, row.params)
        return dispatcher.start_manual(
            row.workflow,
            row.params,
            rule=row.rule,
            replay_of=run_id,
            trigger=row.trigger,
            now=time.time(),
        )

    def set_paused(self, rule: str, paused: bool, *, by: str) -> bool:
        """Pause or resume a rule (RuleNotFound); returns whether it is paused."""
        dispatcher = self._running_dispatcher()
        try:
            dispatcher.rules.by_name(rule)
        except KeyError:
            raise RuleNotFound(rule) from None
        if paused != (rule in dispatcher.paused):
            (dispatcher.paused.add if paused else dispatcher.paused.discard)(rule)
            action = "paused" if paused else "resumed"
            self.record_event(
                f"rule.{action}", f"rule {rule} {action} by {by}", rule=rule, data={"by": by}
            )
        return rule in dispatcher.paused

    def stop_run(self, run_id: str) -> str:
        """Stop a run: "stopped" (it had not started, or nothing of it ran) or "stopping"."""
        row = self.state.run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        dispatcher = self._running_dispatcher()
        if row.state == RunState.WAITING and self.pv is not None:
            self.pv.cancel_wait(run_id)
        if row.state in (RunState.QUEUED, RunState.WAITING):
            dispatcher.drop(run_id)
            self.state.set_state(run_id, RunState.STOPPED, error="stopped before it started")
            self.record_event(
                "run.stopped",
                f"run {run_id} of '{row.workflow}' stopped before it started",
                level="warning",
                run=run_id,
                workflow=row.workflow,
                rule=row.rule,
                data={"error": "stopped before it started"},
            )
            return RunState.STOPPED
        if row.state not in (RunState.SUBMITTED, RunState.RUNNING):
            raise RunEnded(run_id, row.state)
        assert self._executor is not None
        if run_id not in dispatcher.active_run_ids():
            # Marked running, yet never handed to the executor (a daemon bug, or a state
            # file edited by hand): nothing would ever end it but this. A run the executor
            # has but lost track of is ended by the executor itself (run.stopped).
            self._record_end(run_id, "stopped", "stopped by an operator; no task of it was running")
            return RunState.STOPPED
        self._executor.stop_run(run_id, "stopped by an operator")
        return "stopping"

    def drain(self) -> dict[str, Any]:
        dispatcher = self._running_dispatcher()
        dispatcher.draining = True
        self.record_event(
            "daemon.draining", "draining: no new triggers are taken; running runs finish"
        )
        return {"draining": True, "running": dispatcher.running(), "queued": dispatcher.queued()}

    # -- what readers see (DaemonView) -------------------------------------------------------

    @property
    def observed(self) -> Mapping[str, list[dict[str, Any]]]:
        """What the daemon saw of each path lately (``triggerctl explain``)."""
        return self._intake.observed if self._intake is not None else {}

    def file_health(self) -> list[dict[str, Any]]:
        return self._source.health() if self._source is not None else []

    def skipped_by_reason(self, rule: str | None) -> dict[str, int]:
        return self.metrics.skipped_by_reason(rule)

    def status_pvs_status(self) -> dict[str, Any] | None:
        return status_view(self.settings.status_pvs, self.status_pvs, self.recent)

    def metrics_text(self) -> str:
        return self.metrics.render(self)

    # -- the event log (issue 6 sends these to MongoDB; here: log and memory) ----------------

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
        self._record(
            LogEvent(
                kind,
                message,
                run=run,
                workflow=workflow,
                rule=rule,
                dag=dag,
                level=level,
                data=data or {},
                source=source,
            )
        )

    def _record(self, event: LogEvent) -> None:
        self.recent.append(event)
        self.metrics.observe(event)
        level = _LEVELS.get(event.level, 20)
        if event.kind.startswith(("task.", "dag.")) and level <= 20:
            level = 10  # per-task progress is the event log's; the daemon log keeps to runs
        elif event.kind in ("log", "output"):
            level = 10  # what tasks print and log: the event log has it (triggerctl logs)
        if log.isEnabledFor(level):
            log.log(level, event.message, kind=event.kind, run=event.run, rule=event.rule)
        for sink in self._sinks:
            sink(event)

    def add_sink(self, sink: Callable[[LogEvent], None]) -> None:
        self._sinks.append(sink)
