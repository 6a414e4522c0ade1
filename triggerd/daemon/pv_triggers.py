"""PV rules in the running daemon: the PV source, its events into the dispatcher, and the
runs of ``wait_for_file`` rules waiting for their file.

Everything here runs on the daemon's event loop, but for the PV source's own thread,
which hands events, skips and connection changes over with ``call_soon_threadsafe``.
A fire the rule's ``debounce`` drops is a ``trigger.skipped`` event (reason "debounce"),
like any other match that does not become a run, and so is a fire whose parameters or
``wait_for_file`` would take an empty snapshot value ("snapshot-empty": an IOC restarted,
the file name PV is empty); an ``increment`` fire that jumped over
counter values is preceded by a ``pv.missed_values`` warning naming them. A run that
waits for its file is a row of the outbox in state ``waiting`` (see the dispatcher), so a
wait survives a restart: :meth:`PvTriggers.resume_waits` takes them up again at start.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from triggerd.sources.pv import PvEvent, PvSource, PvWatch

from .dispatcher import Dispatcher, RecordEvent
from .rules import Rule, RuleSet
from .state import StateDB

__all__ = ["PvTriggers", "pv_watches_for"]

_FILE_POLL = 0.1  # seconds between two looks at a file a run waits for


def pv_watches_for(rules: RuleSet) -> list[PvWatch]:
    """One watch per PV rule: its PV, its condition and the PVs it snapshots."""
    return [
        PvWatch(r.name, r.pv.name, r.pv.condition, r.pv.snapshot)
        for r in rules.rules
        if r.pv is not None
    ]


class PvTriggers:
    """The daemon's PV side. ``queued()`` is called whenever a run joined the outbox queue
    (the daemon then arms its timers for the limits)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        dispatcher: Dispatcher,
        state: StateDB,
        *,
        record_event: RecordEvent,
        queued: Callable[[], None],
        durably: Callable[[str, Callable[[], None]], None] | None = None,
    ) -> None:
        self._loop = loop
        # StateWrites.run: waits while the disk is full
        self._durably = durably or (lambda what, action: action())
        self._dispatcher = dispatcher
        self._state = state
        self._record_event = record_event
        self._queued = queued
        self._source: PvSource | None = None
        self._watches: list[PvWatch] = []
        self._waits: dict[str, asyncio.Task[None]] = {}  # run id -> its wait for a file

    # -- the source ---------------------------------------------------------------------------

    def start(self, rules: RuleSet) -> None:
        """Monitor the PVs of the PV rules (no PV rule: pyepics is never imported)."""
        self._watches = pv_watches_for(rules)
        if self._watches:
            self._source = PvSource(
                self._watches,
                self._from_source,
                on_health=self._from_health,
                on_skipped=self._from_skip,
            )
            self._source.start()

    def update(self, rules: RuleSet) -> None:
        """After a reload: a new source when the watches changed (conditions start afresh:
        the first value is a baseline again), the running one otherwise."""
        if pv_watches_for(rules) != self._watches:
            self.stop()
            self.start(rules)

    def stop(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.stop()

    def health(self) -> list[dict[str, Any]]:
        return self._source.health() if self._source is not None else []

    def backlog(self) -> int:
        """PV updates received and not yet evaluated (a growing number: the source lags)."""
        return self._source.backlog() if self._source is not None else 0

    def _from_source(self, event: PvEvent) -> None:
        """Called on the PV source's thread: hop to the loop."""
        self._loop.call_soon_threadsafe(self._on_event, event)

    def _from_skip(self, event: PvEvent, reason: str) -> None:
        """Called on the PV source's thread: hop to the loop."""
        self._loop.call_soon_threadsafe(self._on_skip, event, reason)

    def _on_skip(self, event: PvEvent, reason: str) -> None:
        workflow = next(
            (r.workflow for r in self._dispatcher.rules.rules if r.name == event.rule), None
        )
        self._dispatcher.skip(
            event.rule,
            reason,
            f"{event.pv} = {event.value!r} ({event.reason})",
            workflow=workflow,
            source=event.to_dict(),
        )

    def _on_event(self, event: PvEvent) -> None:
        if event.missed_count:
            shown = ", ".join(map(str, event.missed)) + (
                ", ..." if event.missed_count > len(event.missed) else ""
            )
            self._record_event(
                "pv.missed_values",
                f"{event.rule}: {event.pv} went from {event.old_value!r} to {event.value!r}: "
                f"{event.missed_count} value(s) no update showed ({shown})",
                level="warning",
                rule=event.rule,
                data={
                    "pv": event.pv,
                    "missed": list(event.missed),
                    "count": event.missed_count,
                    "value": event.value,
                    "old_value": event.old_value,
                },
            )
        match = self._dispatcher.on_pv(event)  # the snapshot is taken now, whatever waits
        if match is None:
            return
        empty = match.rule.empty_inputs(match)
        if empty:  # an IOC restarted, a detector that wrote no file: no run on an empty name
            why = (
                f"snapshot PV {', '.join(empty)} is empty "
                "(give it a default in snapshot_defaults to start the run anyway)"
            )
            self._dispatcher.skip(
                match.rule.name,
                "snapshot-empty",
                f"{event.pv} = {event.value!r}",
                why=why,
                level="warning",
                workflow=match.rule.workflow,
                data={"pvs": empty},
                source=event.to_dict(),
            )
            return
        now = time.time()

        def fire() -> None:
            run_id = self._dispatcher.fire_pv(match, now)
            if run_id is not None and match.wait_for_file is not None:
                self._wait(run_id, match.rule, match.wait_for_file, started=now)
            self._queued()

        self._durably(f"queuing the run of {match.rule.name}", fire)

    def _from_health(self, pv: str, state: str, message: str) -> None:
        self._loop.call_soon_threadsafe(self._health_changed, pv, state, message)

    def _health_changed(self, pv: str, state: str, message: str) -> None:
        level = "info" if state == "connected" else "error" if state == "error" else "warning"
        self._record_event(
            "source." + state.replace(" ", "_"),
            f"{pv}: {message or state}",
            level=level,
            data={"pv": pv},
        )

    # -- runs waiting for their file ------------------------------------------------------------

    def waiting(self) -> int:
        """Runs waiting for their file now."""
        return len(self._waits)

    def resume_waits(self) -> None:
        """At start: runs that were waiting for their file when the daemon stopped wait on,
        the time they already waited counted."""
        for row in self._state.waiting():
            path = (row.trigger[0] if row.trigger else {}).get("wait_for_file")
            try:
                rule = self._dispatcher.rules.by_name(row.rule or "")
            except KeyError:
                self._dispatcher.file_failed(
                    row.run_id,
                    f"its rule '{row.rule}' is gone (rules changed while the daemon was down)",
                )
                continue
            if not isinstance(path, str) or rule.pv is None:
                self._dispatcher.file_failed(
                    row.run_id, f"rule '{rule.name}' no longer waits for a file"
                )
                continue
            self._wait(row.run_id, rule, path, started=row.queued_at)

    def cancel_wait(self, run_id: str) -> None:
        """An operator stopped a waiting run (the caller records it)."""
        wait = self._waits.get(run_id)
        if wait is not None:
            wait.cancel()

    def cancel_waits(self) -> None:
        """At shutdown: the runs stay ``waiting`` in the state file; the next start waits on."""
        for wait in list(self._waits.values()):
            wait.cancel()

    def _wait(self, run_id: str, rule: Rule, path: str, *, started: float) -> None:
        wait = self._loop.create_task(self._wait_for_file(run_id, rule, path, started))
        self._waits[run_id] = wait
        wait.add_done_callback(lambda _: self._waits.pop(run_id, None))

    async def _wait_for_file(self, run_id: str, rule: Rule, path: str, started: float) -> None:
        """Release run ``run_id`` once ``path`` exists and has not changed for the rule's
        ``file_settle`` seconds; after ``file_timeout`` (since ``started``, wall clock, so a
        restart does not extend it) the run is rejected, saying what was seen."""
        assert rule.pv is not None
        settle, timeout = rule.pv.file_settle, rule.pv.file_timeout
        if not os.path.isabs(path):
            self._dispatcher.file_failed(
                run_id, f"wait_for_file must name an absolute path, got {path!r}"
            )
            return
        seen: tuple[int, int, int] | None = None
        seen_since = self._loop.time()
        problem = "it does not exist"
        while True:
            try:
                st = await asyncio.to_thread(os.stat, path)  # a network file system may block
                now_seen: tuple[int, int, int] | None = (st.st_size, st.st_mtime_ns, st.st_ino)
                problem = "it was still changing"
            except FileNotFoundError:
                now_seen, problem = None, "it does not exist"
            except OSError as exc:
                now_seen, problem = None, f"it cannot be read: {exc.strerror}"
            now = self._loop.time()
            if now_seen != seen:
                seen, seen_since = now_seen, now
            if seen is not None and now - seen_since >= settle:
                size, mtime_ns, inode = seen
                file = {
                    "path": path,
                    "size": size,
                    "mtime_ns": mtime_ns,
                    "inode": inode,
                    "waited": round(time.time() - started, 3),
                }
                self._dispatcher.file_ready(run_id, file, time.time())
                self._queued()
                return
            if time.time() - started >= timeout:
                self._dispatcher.file_failed(
                    run_id, f"file {path} not complete after {timeout:g} s: {problem}"
                )
                return
            await asyncio.sleep(min(_FILE_POLL, max(settle, 0.01)))
