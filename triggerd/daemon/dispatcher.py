"""From matched events to run requests in the outbox, and from the outbox to the executor.

Each stage is a small hook, called in order, that may let an event through, skip it
(a ``trigger.skipped`` event whose ``data.reason`` is one of :data:`SKIP_REASONS`) or
hold it back:

* before the outbox: paused/draining rules skip; the ledger skips file versions already
  dispatched; debounce and batching hold events back and release them as one run; a PV
  event whose snapshot or parameters cannot be rendered is skipped at error level;
* into the outbox: one transaction writes the run request and its files' ledger rows,
  keyed by an idempotency key, so a duplicate is impossible;
* out of the outbox: per-rule concurrency and rate limits hold runs in the queue (never
  drop them) until the executor may take them.

Everything here runs on the daemon's event loop thread; time is passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from triggerd.eventlog.schema import new_id
from triggerd.sources.events import FileEvent
from triggerd.sources.pv import PvEvent

from .rules import Match, PvMatch, Rule, RuleSet, TriggerFailed
from .state import RunRow, StateDB

__all__ = ["SKIP_REASONS", "Dispatcher", "idempotency_key", "pv_key"]

RecordEvent = Callable[..., None]  # record_event(kind, message, **fields): the event log

# Every match that does not become a run is one ``trigger.skipped`` event; its
# ``data.reason`` is one of these (the README's event log section lists them too), and
# its message says the same in words. Concurrency and rate limits never skip: they hold
# runs in the outbox.
SKIP_REASONS: dict[str, str] = {
    "paused": "the rule is paused",
    "draining": "the daemon is draining and takes no new triggers",
    "duplicate": "dispatched before (the same file version or PV event)",
    "reloaded-away": "the rule was reloaded away before the trigger became a run",
    "debounce": "inside the PV rule's debounce hold-off after its last fire",
    "snapshot-failed": "a snapshot PV has no value and no default",
    "snapshot-empty": "a snapshot value the run needs is empty",
    "params-failed": "the parameters cannot be rendered from the event",
}


def _debounce_key(match: Match) -> str:
    """Events rendering the same parameters are one debounce group; {files}/{count}
    differ per event until the group is released, so they do not count."""
    templates = match.rule.params
    kept = {
        k: v
        for k, v in match.params.items()
        if not (
            isinstance(templates.get(k), str)
            and ("{files}" in templates[k] or "{count}" in templates[k])
        )
    }
    return json.dumps(kept, sort_keys=True, default=str)


def idempotency_key(rule: str, events: Sequence[FileEvent]) -> str:
    """The same rule and the same file versions always give the same key."""
    digest = hashlib.sha256(rule.encode())
    for identity in sorted(e.identity for e in events):
        digest.update(b"\0" + json.dumps(identity, ensure_ascii=True).encode())
    return "file:" + digest.hexdigest()[:40]


def pv_key(rule: str, event: PvEvent) -> str:
    """The same rule, PV, IOC time stamp and value (and counter index: an ``each`` increment
    rule fires once per counter value for one update) always give the same key."""
    fields = [rule, event.pv, repr(event.timestamp), event.value] + (
        [event.index] if event.index is not None else []
    )
    what = json.dumps(fields, default=repr, ensure_ascii=True)
    return "pv:" + hashlib.sha256(what.encode()).hexdigest()[:40]


@dataclass
class _Group:
    """Events held back by debounce or batching, released together as one run."""

    rule: Rule
    events: list[FileEvent] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0

    def due(self) -> float:
        limits = self.rule.limits
        if limits.batch or limits.batch_window:
            return self.first + (limits.batch_window or float("inf"))
        return self.last + (limits.debounce or 0.0)


class Dispatcher:
    def __init__(
        self,
        state: StateDB,
        rules: RuleSet,
        *,
        submit: Callable[[RunRow], None],
        record_event: RecordEvent,
        resuming: Collection[str] = (),
    ):
        self._state = state
        self._rules = rules
        self._submit = submit
        self._record_event = record_event
        self._groups: dict[tuple[str, str], _Group] = {}
        self._active: dict[str, int] = defaultdict(int)  # rule -> runs submitted, not ended
        self._recent: dict[str, deque[float]] = defaultdict(deque)  # rule -> submit times (rate)
        self._active_runs: dict[str, str | None] = {}  # run_id -> rule
        # The outbox in memory, per rule (None: manual runs): a rule at its concurrency
        # limit never holds up the runs of another. Loaded from the state file at start.
        self._queues: dict[str | None, deque[RunRow]] = defaultdict(deque)
        # Runs that were running when the daemon stopped go first and past the limits:
        # they held their slots already, and their tasks may still be running on workers.
        self._resuming = set(resuming)
        for row in sorted(state.queued(), key=lambda row: row.run_id not in self._resuming):
            self._queues[row.rule].append(row)
        # enabled = false in its file
        self._disabled = {r.name for r in rules.rules if not r.enabled}
        self.paused: set[str] = set(self._disabled)
        self.draining = False
        # Why runs may not be handed to the executor now (it cannot reach its backend yet):
        # they wait in the outbox, nothing is dropped.
        self.holding: str | None = None

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def replace_rules(self, rules: RuleSet) -> None:
        """Swap in reloaded rules. Held-back files stay held under their rule's new version
        if it still matches them; the others are skipped (``reloaded-away``)."""
        names = {r.name for r in rules.rules}
        for key, group in list(self._groups.items()):
            new = rules.by_name(group.rule.name) if group.rule.name in names else None
            kept = [e for e in group.events if new is not None and new.match(e) is not None]
            for event in group.events:
                if event not in kept:
                    self._skip_file(group.rule, event, "reloaded-away")
            if new is None or not kept:
                del self._groups[key]
            else:
                group.rule, group.events = new, kept
        disabled = {r.name for r in rules.rules if not r.enabled}
        # An operator's pause survives a reload; a rule's own 'enabled' setting follows its file.
        self.paused = ({n for n in self.paused if n in names} - (self._disabled - disabled)) | (
            disabled - self._disabled
        )
        self._disabled = disabled
        self._rules = rules

    def held(self) -> int:
        return sum(len(g.events) for g in self._groups.values())

    # -- events in ------------------------------------------------------------------------

    def on_file(
        self, event: FileEvent, now: float, *, rules: Collection[str] | None = None
    ) -> list[str]:
        """Dispatch a complete file to every rule that matches (of ``rules``, if given:
        a catch-up scan is for the rules that asked for it); returns queued run ids."""
        queued = []
        for match in self._rules.match(event):
            if rules is not None and match.rule.name not in rules:
                continue
            run_id = self._admit(match, now)
            if run_id:
                queued.append(run_id)
        return queued

    def _admit(self, match: Match, now: float) -> str | None:
        rule, event = match.rule, match.event
        reason = self._closed(rule) or (
            "duplicate" if self._state.dispatched(rule.name, event.identity) else None
        )
        if reason:
            self._skip_file(rule, event, reason)
            return None
        limits = rule.limits
        if limits.batch or limits.batch_window or limits.debounce:
            group_key = "" if (limits.batch or limits.batch_window) else _debounce_key(match)
            group = self._groups.setdefault((rule.name, group_key), _Group(rule, first=now))
            if any(e.identity == event.identity for e in group.events):
                self._skip_file(
                    rule,
                    event,
                    "duplicate",
                    "this version of the file is held for the next run already",
                )
            else:
                group.events.append(event)
            group.last = now
            if limits.batch and len(group.events) >= limits.batch:
                return self._release((rule.name, group_key), now)
            return None
        return self._fire(rule, [event], dict(match.params), now)

    def _closed(self, rule: Rule) -> str | None:
        """Why ``rule`` takes no trigger now (``draining``, ``paused``), or None."""
        if self.draining:
            return "draining"
        if rule.name in self.paused:
            return "paused"
        return None

    # -- skipped triggers -----------------------------------------------------------------

    def skip(
        self,
        rule: str,
        reason: str,
        what: str,
        *,
        why: str | None = None,
        level: str = "info",
        workflow: str | None = None,
        data: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        """Record one match that does not become a run: a ``trigger.skipped`` event with
        ``data.reason`` (a key of :data:`SKIP_REASONS`) and a message saying ``what`` was
        skipped and ``why`` (by default, the reason in words). The daemon counts these
        per rule and reason where it records events."""
        why = why or SKIP_REASONS.get(reason, reason)
        self._record_event(
            "trigger.skipped",
            f"{rule}: {what} skipped: {why}",
            level=level,
            rule=rule,
            workflow=workflow,
            data={"reason": reason, **(data or {})},
            source=source,
        )

    def _skip_file(self, rule: Rule, event: FileEvent, reason: str, why: str | None = None) -> None:
        """A file version the rule matched does not become (part of) a run."""
        if reason == "duplicate" and why is None:
            why = "this version of the file was dispatched before"
        self.skip(
            rule.name,
            reason,
            event.path,
            why=why,
            workflow=rule.workflow,
            data={"event": event.to_dict()},
        )

    def tick(self, now: float) -> float | None:
        """Release held-back groups that are due; returns when the next one is due."""
        for key in [k for k, g in self._groups.items() if g.due() <= now]:
            self._release(key, now)
        return min((g.due() for g in self._groups.values()), default=None)

    def _release(self, key: tuple[str, str], now: float) -> str | None:
        """One run for a held-back group; each file that cannot be in it is skipped
        (dispatched meanwhile, or the rule paused or draining since it was held)."""
        group = self._groups.pop(key)
        events = []
        for event in group.events:
            reason = self._closed(group.rule) or (
                "duplicate" if self._state.dispatched(group.rule.name, event.identity) else None
            )
            if reason:
                self._skip_file(group.rule, event, reason)
            else:
                events.append(event)
        if not events:
            return None
        return self._fire(group.rule, events, group.rule.render(events), now)

    def _fire(
        self, rule: Rule, events: list[FileEvent], params: dict[str, Any], now: float
    ) -> str | None:
        what = events[0].path if len(events) == 1 else f"{len(events)} files"
        source = (
            events[0].to_dict() if len(events) == 1 else {"files": [e.to_dict() for e in events]}
        )
        return self._enqueue(
            rule,
            idempotency_key(rule.name, events),
            params,
            now,
            what=what,
            source=source,
            trigger=[e.to_dict() for e in events],
            files=[e.identity for e in events],
            data={"files": len(events)},
        )

    def _enqueue(
        self,
        rule: Rule,
        key: str,
        params: dict[str, Any],
        now: float,
        *,
        what: str,
        source: dict[str, Any],
        trigger: list[dict[str, Any]],
        files: Iterable[tuple[str, int, int, int]] = (),
        data: dict[str, Any] | None = None,
        waiting: bool = False,
    ) -> str | None:
        """One run request into the outbox (with its files' ledger rows); None for a
        duplicate. ``waiting``: it waits for its file (:meth:`file_ready`) before the queue."""
        run_id = new_id()
        added = self._state.enqueue(
            run_id=run_id,
            key=key,
            rule=rule.name,
            workflow=rule.workflow,
            params=params,
            trigger=trigger,
            files=list(files),
            waiting=waiting,
        )
        if not added:
            self.skip(
                rule.name,
                "duplicate",
                what,
                why=f"a run with its key {key} was queued before",
                workflow=rule.workflow,
                data={"key": key},
                source=source,
            )
            return None
        if waiting:
            self._record_waiting(rule, run_id, key, trigger[0]["wait_for_file"], what, source)
            return run_id
        self._queue(run_id)
        self._record_event(
            "trigger.fired",
            f"{rule.name}: {what} -> {rule.workflow}",
            rule=rule.name,
            run=run_id,
            workflow=rule.workflow,
            data={"key": key, "params": params, **(data or {})},
            source=source,
        )
        self.pump(now)
        return run_id

    def _record_waiting(
        self, rule: Rule, run_id: str, key: str, file: str, what: str, source: dict[str, Any]
    ) -> None:
        self._record_event(
            "trigger.waiting",
            f"{rule.name}: {what}: run {run_id} waits for {file} to be complete",
            rule=rule.name,
            run=run_id,
            workflow=rule.workflow,
            data={"key": key, "file": file},
            source=source,
        )

    # -- PV events ------------------------------------------------------------------------

    def on_pv(self, event: PvEvent) -> PvMatch | None:
        """A PV rule fired: its params and snapshot rendered, or None when the event is
        skipped (paused, draining, a rule reloaded away, a snapshot or parameters that
        cannot be had: these at error level). The caller passes the match on to
        :meth:`fire_pv` in the same loop turn."""
        what, source = f"{event.pv} = {event.value!r}", event.to_dict()
        rule = self._rule_or_none(event.rule)
        # removed (or no longer a PV rule) by a reload meanwhile
        if rule is None or rule.pv is None:
            self.skip(event.rule, "reloaded-away", what, source=source)
            return None
        if reason := self._closed(rule):
            self.skip(rule.name, reason, what, workflow=rule.workflow, source=source)
            return None
        try:
            rule.pv.resolve(event.snapshot)  # checked apart to tell the two failures apart
        except TriggerFailed as exc:  # a snapshot PV without value or default
            self.skip(
                rule.name,
                "snapshot-failed",
                what,
                why=str(exc),
                level="error",
                workflow=rule.workflow,
                source=source,
            )
            return None
        try:
            return rule.render_pv(event)
        except TriggerFailed as exc:  # a value the format spec of a parameter cannot take
            self.skip(
                rule.name,
                "params-failed",
                what,
                why=str(exc),
                level="error",
                workflow=rule.workflow,
                source=source,
            )
            return None

    def fire_pv(self, match: PvMatch, now: float) -> str | None:
        """Queue the run of a PV match; with ``wait_for_file`` it is written to the outbox
        as ``waiting`` (it survives a restart) until :meth:`file_ready` or :meth:`file_failed`."""
        rule, event = match.rule, match.event  # paused and draining: checked by on_pv
        source = {**event.to_dict(), "snapshot": {k: dict(v) for k, v in match.snapshot.items()}}
        if match.wait_for_file is not None:
            source["wait_for_file"] = match.wait_for_file
        return self._enqueue(
            rule,
            pv_key(rule.name, event),
            dict(match.params),
            now,
            what=f"{event.pv} = {event.value!r} ({event.reason})",
            source=source,
            trigger=[source],
            waiting=match.wait_for_file is not None,
        )

    def file_ready(self, run_id: str, file: dict[str, Any], now: float) -> None:
        """A waiting run's file is complete: it joins the queue (``file`` goes into its trigger)."""
        row = self._state.run(run_id)
        if row is None or row.state != "waiting":
            return  # stopped by an operator meanwhile
        trigger = [{**row.trigger[0], "file": file}, *row.trigger[1:]]
        if not self._state.release(run_id, trigger):
            return
        self._queue(run_id)
        self._record_event(
            "trigger.fired",
            f"{row.rule}: {file['path']} complete -> {row.workflow}",
            rule=row.rule,
            run=run_id,
            workflow=row.workflow,
            data={"key": row.key, "params": row.params, "file": file},
            source=trigger[0],
        )
        self.pump(now)

    def file_failed(self, run_id: str, reason: str) -> None:
        """A waiting run's file never became complete: the run is rejected, the trigger failed."""
        row = self._state.run(run_id)
        if row is None or row.state != "waiting":
            return
        self._state.set_state(run_id, "rejected", error=reason)
        source = row.trigger[0] if row.trigger else None
        self._record_event(
            "trigger.failed",
            f"{row.rule}: run {run_id}: {reason}",
            level="error",
            rule=row.rule,
            run=run_id,
            workflow=row.workflow,
            data={"reason": reason, "file": (source or {}).get("wait_for_file")},
            source=source,
        )

    def start_manual(
        self,
        workflow: str,
        params: dict[str, Any],
        *,
        rule: str | None = None,
        replay_of: str | None = None,
        trigger: list[dict[str, Any]] | None = None,
        now: float = 0.0,
    ) -> str:
        """A run asked for by an operator; it goes through the outbox like any other."""
        run_id = new_id()
        prefix = "replay" if replay_of else "manual"
        self._state.enqueue(
            run_id=run_id,
            key=f"{prefix}:{run_id}",
            rule=rule,
            workflow=workflow,
            params=params,
            trigger=trigger or [{"type": "manual"}],
            replay_of=replay_of,
        )
        self._queue(run_id)
        self._record_event(
            "trigger.fired",
            f"{prefix} start of {workflow}",
            rule=rule,
            run=run_id,
            workflow=workflow,
            data={"params": params, "replay_of": replay_of},
        )
        self.pump(now=now)
        return run_id

    # -- outbox to executor ---------------------------------------------------------------------

    def _queue(self, run_id: str) -> None:
        row = self._state.run(run_id)
        assert row is not None
        self._queues[row.rule].append(row)

    def drop(self, run_id: str) -> bool:
        """Take a queued run out of the queue (an operator stopped it before it started)."""
        for queue in self._queues.values():
            for row in queue:
                if row.run_id == run_id:
                    queue.remove(row)
                    return True
        return False

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def pump(self, now: float) -> None:
        """Submit queued runs, oldest first per rule, as far as the limits allow (none
        while ``holding``)."""
        if self.holding is not None:
            return
        for name, queue in self._queues.items():
            rule = self._rule_or_none(name)
            while queue and (
                rule is None or queue[0].run_id in self._resuming or self._may_start(rule, now)
            ):
                row = queue.popleft()
                self._resuming.discard(row.run_id)
                self._active_runs[row.run_id] = row.rule
                if row.rule:
                    self._active[row.rule] += 1
                    self._recent[row.rule].append(now)
                self._submit(row)

    def _may_start(self, rule: Rule, now: float) -> bool:
        limits = rule.limits
        if limits.concurrent is not None and self._active[rule.name] >= limits.concurrent:
            return False
        if limits.rate is not None:
            count, per = limits.rate
            recent = self._recent[rule.name]
            while recent and recent[0] <= now - per:
                recent.popleft()
            if len(recent) >= count:
                return False
        return True

    def next_rate_slot(self, now: float) -> float | None:
        """When a rate-limited queued run may start (so the loop can wake up then)."""
        slots = []
        for rule in self._rules.rules:
            if rule.limits.rate and self._queues.get(rule.name) and self._recent[rule.name]:
                count, per = rule.limits.rate
                recent = self._recent[rule.name]
                while recent and recent[0] <= now - per:
                    recent.popleft()
                if len(recent) >= count:
                    slots.append(recent[0] + per)
        return min(slots, default=None)

    def finished(self, run_id: str, now: float) -> None:
        """A run ended (or was rejected): its slot frees up for the next queued one."""
        rule = self._active_runs.pop(run_id, None)
        if rule:
            self._active[rule] = max(0, self._active[rule] - 1)
        self.pump(now)

    def running(self) -> int:
        return len(self._active_runs)

    def active_run_ids(self) -> list[str]:
        return list(self._active_runs)

    def _rule_or_none(self, name: str | None) -> Rule | None:
        if name is None:
            return None
        try:
            return self._rules.by_name(name)
        except KeyError:
            return None
