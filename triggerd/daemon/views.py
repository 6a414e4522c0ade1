"""What the control API shows: status, rules, runs, dry runs and explanations, as plain data.

Read-only views of a running daemon (:class:`~triggerd.daemon.control.DaemonView`); the
API turns them into JSON and triggerctl into tables.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from triggerd.errors import NotReady
from triggerd.sources import inside
from triggerd.sources.events import FileEvent

from .rules import Rule

if TYPE_CHECKING:
    from .control import DaemonView
    from .dispatcher import Dispatcher

__all__ = ["explain", "rules_view", "status", "test_trigger"]


def _dispatcher(daemon: DaemonView) -> Dispatcher:
    if daemon.dispatcher is None:
        raise NotReady()
    return daemon.dispatcher


def status(daemon: DaemonView) -> dict[str, Any]:
    d = _dispatcher(daemon)
    counts = daemon.state.counts()
    return {
        "pid": os.getpid(),
        "uptime": time.time() - daemon.started,
        "config": daemon.settings.source,
        "state_dir": str(daemon.settings.paths.state_dir),
        "executor": daemon.settings.executor.kind,
        "executor_waiting": d.holding,
        "reloads": daemon.reloads,
        "last_reload": daemon.last_reload,
        "draining": d.draining,
        "summary": daemon.summary(),
        "sources": daemon.file_health(),
        "pvs": daemon.pv.health() if daemon.pv else [],
        "pv_backlog": daemon.pv.backlog() if daemon.pv else 0,
        "waiting_for_files": daemon.pv.waiting() if daemon.pv else 0,
        "rules": rules_view(daemon),
        "skipped": _skipped(daemon, None),
        "runs": {
            "queued": d.queued(),
            # Started on a worker; "submitted": handed to the executor, waiting for a worker or
            # slot.
            "running": counts.get("running", 0),
            "submitted": counts.get("submitted", 0),
            "held": d.held(),
            "failed": counts.get("failed", 0),
            "succeeded": counts.get("succeeded", 0),
            "by_state": counts,
        },
        "outbox": d.queued(),
        "eventlog": daemon.eventlog.status() if daemon.eventlog is not None else None,
        "dependencies": [r.to_dict() for r in daemon.readings()],
        "state_writes_waiting": daemon.writes.waiting() if daemon.writes is not None else 0,
        "status_pvs": daemon.status_pvs_status(),
    }


def rules_view(daemon: DaemonView) -> list[dict[str, Any]]:
    d = _dispatcher(daemon)
    stats = daemon.state.rule_stats()
    out = []
    for rule in d.rules.rules:
        files = rule.files
        out.append(
            {
                "name": rule.name,
                "workflow": rule.workflow,
                "source": "files" if files else "pv" if rule.pv else "manual",
                "roots": list(files.roots) if files else [],
                "pv": rule.pv.name if rule.pv else None,
                "condition": rule.pv.condition.describe() if rule.pv else None,
                "complete": files.complete if files else None,
                "paused": rule.name in d.paused,
                "fired": stats.get(rule.name, {}).get("fired", 0),
                "last_fired": stats.get(rule.name, {}).get("last_fired"),
                "skipped": _skipped(daemon, rule.name),
                "file": rule.source,
                "description": rule.description,
            }
        )
    return out


def _skipped(daemon: DaemonView, rule: str | None) -> dict[str, Any]:
    """Triggers of ``rule`` (None: of every rule) that did not become a run, by reason,
    counted since the daemon started (``since``)."""
    by_reason = daemon.skipped_by_reason(rule)
    return {"total": sum(by_reason.values()), "by_reason": by_reason, "since": daemon.started}


def _candidate(rule: Rule, path: str) -> FileEvent | None:
    """The event the source would emit for ``path`` under one of ``rule``'s roots."""
    if rule.files is None:
        return None
    root = next((r for r in rule.files.roots if inside(path, (r,))), None)
    if root is None:
        root = rule.files.roots[0] if rule.files.roots else "/"
    # as the source reports a link
    link_to = os.path.realpath(path) if os.path.islink(path) else None
    try:
        st = os.stat(path)
        return FileEvent(
            path,
            root,
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
            "closed",
            time.time(),
            link_to=link_to,
        )
    except OSError:
        return FileEvent(path, root, 0, 0, 0, "closed", time.time(), link_to=link_to)


def test_trigger(daemon: DaemonView, path: str) -> dict[str, Any]:
    """A dry run: which rules match this file and what parameters they would render."""
    d = _dispatcher(daemon)
    path = os.path.abspath(path)
    own = daemon.own_file(path)
    results = []
    for rule in d.rules.rules:
        event = _candidate(rule, path)
        if event is None:
            continue
        match = rule.match(event)
        why = rule.explain(event)
        if match is not None and own:
            match, why = (
                None,
                "one of the daemon's own files (state, key, store, event log): never triggers",
            )
        results.append(
            {
                "rule": rule.name,
                "workflow": rule.workflow,
                "matches": match is not None,
                "why": why,
                "params": dict(match.params) if match else None,
                "paused": rule.name in d.paused,
            }
        )
    return {"path": path, "exists": os.path.exists(path), "rules": results}


def explain(daemon: DaemonView, path: str) -> dict[str, Any]:
    """Why this file did or did not trigger: rules, what the source saw, ledger, runs."""
    path = os.path.abspath(path)
    dry = test_trigger(daemon, path)
    ledger = []
    for entry in daemon.state.ledger_for(path):
        run = daemon.state.run(entry.run_id)
        ledger.append(
            {
                "rule": entry.rule,
                "inode": entry.inode,
                "size": entry.size,
                "mtime_ns": entry.mtime_ns,
                "at": entry.at,
                "run": entry.run_id,
                "run_state": run.state if run else None,
                "current_version": _is_current(path, entry.inode, entry.size, entry.mtime_ns),
            }
        )
    skipped = [
        {
            "at": e.time.timestamp(),
            "rule": e.rule,
            "reason": e.data.get("reason"),
            "message": e.message,
        }
        for e in daemon.recent
        if e.kind == "trigger.skipped" and e.data.get("event", {}).get("path") == path
    ]
    return {
        **dry,
        "observed": daemon.observed.get(path, []),
        "ledger": ledger,
        "skipped": skipped,
    }


def _is_current(path: str, inode: int, size: int, mtime_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_ino, st.st_size, st.st_mtime_ns) == (inode, size, mtime_ns)
