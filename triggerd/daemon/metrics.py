"""Prometheus metrics of the daemon, served as text on the control API's ``/metrics``.

Counters grow from the events the daemon records (runs by outcome, task durations,
triggers skipped by rule and reason);
gauges are read from the daemon when scraped (queue depths, source health, the event
log's backlog). The text exposition format is simple enough to write directly.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from triggerd.eventlog.schema import LogEvent
from triggerd.runstate import END_KINDS

if TYPE_CHECKING:
    from triggerd.health import Reading

    from .control import DaemonView
    from .dispatcher import Dispatcher

__all__ = ["Metrics"]

# Seconds: from quick Python tasks to long beamline processing.
_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0)


class Metrics:
    """Fed every recorded event (:meth:`observe`); :meth:`render` gives the exposition text."""

    def __init__(self) -> None:
        # (rule, reason) of every trigger.skipped since the daemon started: triggerctl
        # rules and status show them too.
        self.skipped: Counter[tuple[str, str]] = Counter()
        self.runs_ended: Counter[tuple[str, str]] = Counter()  # (workflow, outcome)
        self.tasks_ended: Counter[tuple[str, str]] = Counter()  # (workflow, outcome)
        self._task_buckets: Counter[tuple[str, float]] = Counter()  # (workflow, le)
        self._task_sum: Counter[str] = Counter()
        self._task_count: Counter[str] = Counter()

    def observe(self, event: LogEvent) -> None:
        kind = event.kind
        if kind == "trigger.skipped":
            reason = event.data.get("reason") if isinstance(event.data, dict) else None
            self.skipped[(event.rule or "", str(reason or "unknown"))] += 1
        elif kind in END_KINDS:
            self.runs_ended[(event.workflow or "", kind.split(".", 1)[1])] += 1
        elif kind.startswith("task.") and kind not in ("task.started", "task.retried"):
            workflow = event.workflow or ""
            self.tasks_ended[(workflow, kind.split(".", 1)[1])] += 1
            duration = event.data.get("duration") if isinstance(event.data, dict) else None
            if isinstance(duration, (int, float)):
                self._task_sum[workflow] += duration
                self._task_count[workflow] += 1
                for le in _BUCKETS:
                    if duration <= le:
                        self._task_buckets[(workflow, le)] += 1

    def skipped_by_reason(self, rule: str | None = None) -> dict[str, int]:
        """Reason -> triggers skipped since the daemon started, of ``rule`` or of all rules."""
        counts: Counter[str] = Counter()
        for (name, reason), n in self.skipped.items():
            if rule is None or name == rule:
                counts[reason] += n
        return dict(sorted(counts.items()))

    def render(self, daemon: DaemonView) -> str:
        out = _Writer()
        out.metric(
            "triggerd_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            [({}, time.time() - daemon.started)],
        )
        if daemon.dispatcher is not None:
            self._triggers_and_runs(out, daemon, daemon.dispatcher)
        self._outcomes(out)
        _sources(out, daemon)
        _dependencies(out, daemon.readings())
        if daemon.eventlog is not None:
            _eventlog(out, daemon.eventlog.status())
        return out.text()

    def _triggers_and_runs(self, out: _Writer, daemon: DaemonView, d: Dispatcher) -> None:
        stats = daemon.state.rule_stats()
        out.metric(
            "triggerd_triggers_fired_total",
            "counter",
            "Runs each rule has fired (all time, from the state file).",
            [({"rule": r.name}, stats.get(r.name, {}).get("fired", 0)) for r in d.rules.rules],
        )
        out.metric(
            "triggerd_triggers_skipped_total",
            "counter",
            "Triggers that did not become a run, by rule and reason, since the daemon started.",
            [
                ({"rule": rule, "reason": reason}, n)
                for (rule, reason), n in sorted(self.skipped.items())
            ],
        )
        out.metric(
            "triggerd_outbox_depth",
            "gauge",
            "Runs queued in the outbox, not yet handed to the executor.",
            [({}, d.queued())],
        )
        out.metric(
            "triggerd_runs_running",
            "gauge",
            "Runs handed to the executor and not ended: running, or waiting for a worker "
            "(triggerd_runs by state tells them apart).",
            [({}, d.running())],
        )
        out.metric(
            "triggerd_files_held",
            "gauge",
            "Files held back by debounce or batching.",
            [({}, d.held())],
        )
        out.metric(
            "triggerd_runs",
            "gauge",
            "Runs in the state file by state.",
            [({"state": state}, n) for state, n in sorted(daemon.state.counts().items())],
        )

    def _outcomes(self, out: _Writer) -> None:
        """Runs and tasks ended since the daemon started, and the task durations."""
        out.metric(
            "triggerd_runs_ended_total",
            "counter",
            "Runs ended since the daemon started, by outcome.",
            [({"workflow": w, "outcome": o}, n) for (w, o), n in sorted(self.runs_ended.items())],
        )
        out.metric(
            "triggerd_tasks_ended_total",
            "counter",
            "Tasks ended since the daemon started, by outcome.",
            [({"workflow": w, "outcome": o}, n) for (w, o), n in sorted(self.tasks_ended.items())],
        )
        histogram = []
        for workflow in sorted(self._task_count):
            for le in _BUCKETS:
                histogram.append(
                    (
                        "_bucket",
                        {"workflow": workflow, "le": f"{le:g}"},
                        self._task_buckets[(workflow, le)],
                    )
                )
            histogram.append(
                ("_bucket", {"workflow": workflow, "le": "+Inf"}, self._task_count[workflow])
            )
            histogram.append(("_sum", {"workflow": workflow}, self._task_sum[workflow]))
            histogram.append(("_count", {"workflow": workflow}, self._task_count[workflow]))
        out.histogram("triggerd_task_duration_seconds", "Task run times by workflow.", histogram)


def _sources(out: _Writer, daemon: DaemonView) -> None:
    out.metric(
        "triggerd_source_up",
        "gauge",
        "1 if a watched root is being watched, 0 if waiting or in error.",
        [
            ({"root": h["root"], "state": h["state"]}, 1 if h["state"] == "watching" else 0)
            for h in daemon.file_health()
        ],
    )
    pvs = daemon.pv.health() if daemon.pv is not None else []
    if pvs:
        out.metric(
            "triggerd_pv_connected",
            "gauge",
            "1 if a monitored PV is connected.",
            [
                ({"pv": p["name"], "state": p["state"]}, 1 if p["state"] == "connected" else 0)
                for p in pvs
            ],
        )
        out.metric(
            "triggerd_pv_updates_total",
            "counter",
            "Values received per monitored PV since it was monitored.",
            [({"pv": p["name"]}, p["updates"]) for p in pvs],
        )
        out.metric(
            "triggerd_pv_backlog",
            "gauge",
            "PV updates received and not yet evaluated.",
            [({}, daemon.pv.backlog() if daemon.pv is not None else 0)],
        )


def _dependencies(out: _Writer, readings: list[Reading]) -> None:
    if readings:
        out.metric(
            "triggerd_dependency_up",
            "gauge",
            "1 if a service the daemon needs answered when last used, 0 if not (-1: not used yet).",
            [
                ({"name": r.name, "target": r.target}, {True: 1, False: 0, None: -1}[r.ok])
                for r in readings
            ],
        )
        out.metric(
            "triggerd_dependency_state_since_seconds",
            "gauge",
            "Unix time of the last change of a dependency's state.",
            [({"name": r.name}, r.since) for r in readings],
        )


def _eventlog(out: _Writer, status: dict[str, Any]) -> None:
    writer, forwarder = status["writer"], status.get("forwarder") or {}
    backlog = writer["queued"] + writer["spooled"] + (forwarder.get("spooled") or 0)
    backlog += (forwarder.get("stream_lag") or 0) + (forwarder.get("stream_pending") or 0)
    out.metric(
        "triggerd_eventlog_backlog",
        "gauge",
        "Events not yet in the event store (queue, stream, spool files).",
        [({}, backlog)],
    )
    out.metric(
        "triggerd_eventlog_store_up",
        "gauge",
        "1 if the event store took the last batch.",
        [({}, 1 if writer["store_ok"] and forwarder.get("store_ok", True) else 0)],
    )
    out.metric(
        "triggerd_eventlog_events_total",
        "counter",
        "Events stored since the daemon started.",
        [
            ({"path": "daemon"}, writer["written"]),
            ({"path": "stream"}, forwarder.get("forwarded", 0)),
        ],
    )


class _Writer:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, Any], float]]
    ) -> None:
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self._lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]

    def histogram(
        self, name: str, help_text: str, samples: list[tuple[str, dict[str, Any], float]]
    ) -> None:
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        self._lines += [
            f"{name}{suffix}{_labels(labels)} {_number(value)}" for suffix, labels, value in samples
        ]

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escaped(v)}"' for k, v in labels.items()) + "}"


def _escaped(value: Any) -> str:
    """A label value as the Prometheus text format writes it: backslash, double quote
    and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
