"""Finding the files the live watches did not report: at start-up (``catch_up``: what arrived
while the daemon was down) and after a reload that changed a watch (what fell between the
old watch and the new).

Scans run on a thread of their own. Files the ledger has (after a restart, nearly all of
them) are counted there and never reach the event loop; the rest are handed over in
batches, at most two waiting, so the loop (the control API, live triggers) stays free.
The end of each scan is a ``source.caught_up`` event, a barrier a test or an operator
can wait on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from triggerd.sources import FileWatch
from triggerd.sources.events import FileEvent

from .dispatcher import RecordEvent
from .rules import RuleSet
from .state import StateDB

__all__ = ["CatchUp", "watches_for"]

_BATCH = 100  # new files handed from the scanning thread to the loop at once

#: Walks a watch's tree: the files that arrived since a time.time() (None: every file).
Scan = Callable[[FileWatch, float | None], Iterable[FileEvent]]
#: Takes found files on the loop: (rule, files, what found them).
Found = Callable[[str, list[FileEvent], str], None]


def watches_for(rules: RuleSet) -> list[FileWatch]:
    """One watch per (root, completion settings); rules sharing them share the watch."""
    seen: dict[FileWatch, None] = {}
    for rule in rules.rules:
        if rule.files is None:
            continue
        f = rule.files
        for root in f.roots:
            seen[
                FileWatch(
                    root,
                    f.recursive,
                    f.complete,
                    f.settle,
                    f.poll,
                    f.marker_suffix,
                    tuple(f.ignore),
                    follow_symlinks=f.follow_symlinks,
                    within=f.roots,
                )
            ] = None
    return list(seen)


@dataclass(frozen=True)
class _Job:
    rule: str
    watch: FileWatch
    # Only files that arrived since (a time.time(); by ctime, see _scan.arrival_ns), not
    # their mtime: a copy that keeps an old mtime arrives now. None: every file.
    since: float | None


class CatchUp:
    """Starts scans; ``found`` gets what the ledger does not have, on ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        state: StateDB,
        scan: Scan,
        found: Found,
        record_event: RecordEvent,
    ):
        self._loop = loop
        self._state = state
        self._walk = scan
        self._found = found
        self._record_event = record_event

    def missed(self, rules: RuleSet) -> None:
        """Scan for files that arrived while the daemon was down (each rule's ``catch_up``)."""
        now = time.time()
        jobs = []
        for rule in rules.rules:
            if rule.files is None or rule.files.catch_up == "none":
                continue
            since, first_start = self._state.watermark(rule.name, now)
            if rule.files.catch_up == "missed" and first_start:
                continue  # first time this rule watches: nothing was missed yet
            cutoff = since if rule.files.catch_up == "missed" else None
            jobs += [_Job(rule.name, w, cutoff) for w in watches_for(RuleSet((rule,), ()))]
        self._start(jobs, "catch-up scan")

    def changed(self, before: RuleSet, after: RuleSet, *, since: float) -> None:
        """After a reload: the new watches of rules that were there before (a changed
        ignore list, completion, roots) are scanned for files that arrived since
        ``since`` and are not in the ledger, in case one fell between the old watch
        and the new; whatever the rule's catch_up, since no file of the gap is old."""
        was = {rule.name: watches_for(RuleSet((rule,), ())) for rule in before.rules}
        jobs = []
        for rule in after.rules:
            if rule.files is None or rule.name not in was:
                continue
            jobs += [
                _Job(rule.name, w, since)
                for w in watches_for(RuleSet((rule,), ()))
                if w not in was[rule.name]
            ]
        self._start(jobs, "reload rescan")

    def _start(self, jobs: list[_Job], what: str) -> None:
        if jobs:
            threading.Thread(
                target=self._scan, args=(jobs, what), name="triggerd-catch-up", daemon=True
            ).start()

    def _scan(self, jobs: list[_Job], what: str) -> None:
        try:
            self._scan_jobs(jobs, what)
        except RuntimeError:
            if not self._loop.is_closed():
                raise
            # the daemon stopped during the scan: what was not handed over is caught up next start

    def _scan_jobs(self, jobs: list[_Job], what: str) -> None:
        """Walk, drop what the ledger has, hand the rest over in batches. The loop checks
        the ledger again (a live event may have raced the scan)."""
        found = known = 0
        # At most two batches wait for the loop: new files are read no faster than they
        # are dispatched, and other callbacks (the control API, live events) get turns.
        in_flight = threading.BoundedSemaphore(2)

        def hand_over(rule: str, batch: list[FileEvent]) -> None:
            in_flight.acquire()
            self._loop.call_soon_threadsafe(self._take, rule, batch, what, in_flight.release)

        with self._state.ledger_reader() as dispatched:
            for job in jobs:
                batch: list[FileEvent] = []
                for event in self._walk(job.watch, job.since):
                    found += 1
                    if dispatched(job.rule, event.identity):
                        known += 1
                        continue
                    batch.append(event)
                    if len(batch) >= _BATCH:
                        hand_over(job.rule, batch)
                        batch = []
                if batch:
                    hand_over(job.rule, batch)
        message = f"{what} found {found} files, {known} of them dispatched before"
        data = {
            "files": found,
            "dispatched_before": known,
            "rules": sorted({j.rule for j in jobs}),
            "scan": what,
        }
        self._loop.call_soon_threadsafe(
            lambda: self._record_event("source.caught_up", message, data=data)
        )

    def _take(
        self, rule: str, events: list[FileEvent], what: str, done: Callable[[], None]
    ) -> None:
        try:
            self._found(rule, events, what)
        finally:
            done()
