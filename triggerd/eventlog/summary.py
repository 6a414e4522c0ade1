"""Run summaries: what the event log knows of each run, kept up to date by every insert,
so ``triggerctl runs`` and ``triggerctl show`` read one document instead of the events.

A batch of events becomes one :class:`RunDelta` per run (:func:`deltas`); a backend
applies each delta atomically, MongoDB as one pipeline update, SQLite with :func:`apply`
inside its write transaction. Every part of a delta is idempotent and commutative, so
replays, out-of-order arrival and two forwarders writing at once all end in the same
summary:

- ``set``: values every event of the run agrees on (workflow, rule, the trigger, the
  parameters of run.started, the names of DAGs and tasks);
- ``min`` / ``max``: first and last times;
- ``guarded``: a state and the fields that go with it, written only when the event's
  key (``<rank>:<event id>``) is greater than the one stored. The rank comes from
  :data:`RUN_STATES`, :data:`DAG_STATES`, :data:`TASK_STATES`: a run that failed never
  goes back to running because run.started arrived last, and of two final states the
  later event wins.

The stored summary (``public`` turns it into what the queries return)::

    {run, workflow, rule, status, params, trigger: {event, time, rule, message, source,
     data}, host, queued, started, ended, duration, error, traceback, first, last,
     attempts: [{attempt, started, host, resumed, tasks_ended, tasks_running}],
     dags: {<dag>: {state, started, ended, duration,
                    tasks: {<task>: {state, host, worker, pid, started, ended, duration,
                                     error, traceback, exit_code}}}}}

Times are UTC ISO text (fixed width, so text order is time order); durations seconds.
Tracebacks keep their last :data:`TRACEBACK_TAIL` characters (the whole one is in the
task.failed event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from triggerd.eventlog.schema import LogEvent, format_time, parse_time
from triggerd.runstate import ENDED, FAILED

__all__ = [
    "DAG_STATES",
    "FAILED_STATUSES",
    "RUN_STATES",
    "TASK_STATES",
    "TRACEBACK_TAIL",
    "Guarded",
    "RunDelta",
    "apply",
    "deltas",
    "field_key",
    "public",
]

# kind -> (state, rank); a state is only replaced by one of a greater (rank, event id).
RUN_STATES: dict[str, tuple[str, int]] = {
    "trigger.fired": ("queued", 1),
    "run.queued": ("queued", 1),
    "run.started": ("running", 2),
    **{state.event_kind: (state.value, 3) for state in ENDED},
}
DAG_STATES: dict[str, tuple[str, int]] = {
    "dag.started": ("running", 1),
    **{f"dag.{s}": (s, 2) for s in ("succeeded", "failed", "stopped", "aborted")},
}
TASK_STATES: dict[str, tuple[str, int]] = {
    "task.started": ("running", 1),
    "task.retried": ("running", 1),
    **{
        f"task.{s}": (s, 2)
        for s in ("succeeded", "failed", "skipped", "stopped", "cancelled", "aborted")
    },
}
FAILED_STATUSES = tuple(state.value for state in FAILED)  # what ``runs(failed=True)`` lists
TRACEBACK_TAIL = 4000
ERROR_LIMIT = 2000
_INTERNAL = ("_id", "last_ts")


def field_key(name: str | None) -> str:
    """A DAG or task name as a MongoDB field name: ``%`` ``.`` NUL and a leading ``$``
    percent-escaped ("" is ``%``). Entries keep the real name in ``name``."""
    if not name:
        return "%"
    key = name.replace("%", "%25").replace(".", "%2E").replace("\x00", "%00")
    return "%24" + key[1:] if key.startswith("$") else key


@dataclass
class Guarded:
    key: str
    fields: dict[str, Any]


@dataclass
class RunDelta:
    """What one batch changes in one run's summary. Paths are dotted (MongoDB's)."""

    run: str
    set: dict[str, Any] = field(default_factory=dict)
    min: dict[str, Any] = field(default_factory=dict)
    max: dict[str, Any] = field(default_factory=dict)
    guarded: dict[str, Guarded] = field(default_factory=dict)  # path of the key -> candidate
    first_time: datetime | None = None
    last_time: datetime | None = None

    def lower(self, path: str, value: Any) -> None:
        if value is not None and (path not in self.min or value < self.min[path]):
            self.min[path] = value

    def raise_(self, path: str, value: Any) -> None:
        if value is not None and (path not in self.max or value > self.max[path]):
            self.max[path] = value

    def guard(self, key_path: str, rank: int, event: LogEvent, fields: dict[str, Any]) -> None:
        key = f"{rank}:{event.id}"
        held = self.guarded.get(key_path)
        if held is None or key > held.key:
            self.guarded[key_path] = Guarded(key, fields)


def _tail(text: Any, limit: int) -> str | None:
    if not text:
        return None
    text = str(text)
    return text if len(text) <= limit else f"[{len(text) - limit} chars before]\n{text[-limit:]}"


def _head(text: Any, limit: int = ERROR_LIMIT) -> str | None:
    if not text:
        return None
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]} [truncated {len(text) - limit} chars]"


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _run_event(delta: RunDelta, event: LogEvent, when: str) -> None:
    state, rank = RUN_STATES[event.kind]
    data = event.data
    if event.kind == "trigger.fired":
        delta.set["trigger"] = {
            "event": event.id,
            "time": when,
            "rule": event.rule,
            "message": event.message,
            "source": event.source,
            "host": event.host,
            "data": dict(data),
        }
    if rank == 1:
        delta.lower("queued", when)
        fields: dict[str, Any] = {"status": state}
    elif rank == 2:
        delta.lower("started", when)
        if isinstance(data.get("params"), Mapping):
            delta.set["params"] = dict(data["params"])
        if event.host is not None:
            delta.set["host"] = event.host
        attempt = _number(data.get("attempt"))
        if isinstance(attempt, int):  # each time the run was handed to an executor
            delta.set[f"attempts.{attempt}"] = {
                "attempt": attempt,
                "started": when,
                "host": event.host,
                "resumed": bool(data.get("resumed")),
                "tasks_ended": _number(data.get("tasks_ended")),
                "tasks_running": _number(data.get("tasks_running")),
            }
        fields = {"status": state}
    else:
        error = data.get("error") or (event.message if state in FAILED_STATUSES else None)
        fields = {
            "status": state,
            "ended": when,
            "duration": _number(data.get("duration")),
            "error": _head(error),
            "traceback": _tail(data.get("traceback"), TRACEBACK_TAIL),
        }
    delta.guard("status_key", rank, event, fields)


def _dag_event(delta: RunDelta, event: LogEvent, when: str, prefix: str) -> None:
    state, rank = DAG_STATES[event.kind]
    if rank == 1:
        delta.lower(f"{prefix}started", when)
        fields: dict[str, Any] = {"state": state}
    else:
        fields = {"state": state, "ended": when, "duration": _number(event.data.get("duration"))}
    delta.guard(f"{prefix}state_key", rank, event, {f"{prefix}{k}": v for k, v in fields.items()})


def _task_event(delta: RunDelta, event: LogEvent, when: str, prefix: str) -> None:
    state, rank = TASK_STATES[event.kind]
    data = event.data
    if rank == 1:
        worker = event.worker or data.get("worker")
        start = {
            "started": when,
            "host": event.host,
            "pid": event.pid,
            "worker": worker if worker is None else str(worker),
        }
        delta.guard(f"{prefix}start_key", 1, event, {f"{prefix}{k}": v for k, v in start.items()})
        fields: dict[str, Any] = {"state": state}
    else:
        error = data.get("error") or (event.message if state in ("failed", "aborted") else None)
        fields = {
            "state": state,
            "ended": when,
            "duration": _number(data.get("duration")),
            "error": _head(error),
            "traceback": _tail(data.get("traceback"), TRACEBACK_TAIL),
            "exit_code": _number(data.get("exit_code")),
        }
    delta.guard(f"{prefix}state_key", rank, event, {f"{prefix}{k}": v for k, v in fields.items()})


def deltas(events: Iterable[LogEvent]) -> list[RunDelta]:
    """One delta per run the events belong to (events without a run change nothing)."""
    runs: dict[str, RunDelta] = {}
    for event in events:
        if not event.run:
            continue
        delta = runs.get(event.run)
        if delta is None:
            delta = runs[event.run] = RunDelta(event.run, set={"run": event.run})
        moment = event.time
        if delta.first_time is None or moment < delta.first_time:
            delta.first_time = moment
        if delta.last_time is None or moment > delta.last_time:
            delta.last_time = moment
        if event.workflow is not None:
            delta.set["workflow"] = event.workflow
        if event.rule is not None:
            delta.set["rule"] = event.rule
        kind = event.kind
        if kind in RUN_STATES:
            _run_event(delta, event, format_time(moment))
        elif kind in DAG_STATES or kind in TASK_STATES:
            when = format_time(moment)
            prefix = f"dags.{field_key(event.dag)}."
            delta.set[f"{prefix}name"] = event.dag or ""
            if kind in DAG_STATES:
                _dag_event(delta, event, when, prefix)
            else:
                prefix = f"{prefix}tasks.{field_key(event.task)}."
                delta.set[f"{prefix}name"] = event.task or ""
                _task_event(delta, event, when, prefix)
    for delta in runs.values():
        delta.lower("first", format_time(delta.first_time))  # type: ignore[arg-type]
        delta.raise_("last", format_time(delta.last_time))  # type: ignore[arg-type]
    return list(runs.values())


def _get(doc: Mapping[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def apply(doc: dict[str, Any], delta: RunDelta) -> dict[str, Any]:
    """``doc`` (a stored summary, or ``{}``) changed as MongoDB would apply the delta's
    pipeline update; returns it."""
    for path, value in delta.set.items():
        _put(doc, path, value)
    for path, value in delta.min.items():
        current = _get(doc, path)
        if current is None or value < current:
            _put(doc, path, value)
    for path, value in delta.max.items():
        current = _get(doc, path)
        if current is None or value > current:
            _put(doc, path, value)
    for key_path, candidate in delta.guarded.items():
        current = _get(doc, key_path)
        if current is None or candidate.key > current:
            _put(doc, key_path, candidate.key)
            for path, value in candidate.fields.items():
                _put(doc, path, value)
    return doc


def _seconds(start: Any, end: Any) -> float | None:
    if not start or not end:
        return None
    try:
        return round((parse_time(end) - parse_time(start)).total_seconds(), 6)
    except (TypeError, ValueError):
        return None


def _entry(node: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if not k.endswith("_key") and k not in ("name", "tasks")}
    if out.get("duration") is None:
        out["duration"] = _seconds(out.get("started"), out.get("ended"))
    return out


def public(doc: Mapping[str, Any], *, with_dags: bool = True) -> dict[str, Any]:
    """A stored summary as the queries return it: no bookkeeping fields, DAGs and tasks
    keyed by their real names, durations computed from the times where no event said,
    ``params`` from the trigger when run.started has not been seen."""
    out = {
        k: v
        for k, v in doc.items()
        if k not in _INTERNAL and not k.endswith("_key") and k != "dags"
    }
    out["run"] = doc.get("run") or doc.get("_id")
    for name in (
        "workflow",
        "rule",
        "status",
        "params",
        "trigger",
        "host",
        "queued",
        "started",
        "ended",
        "duration",
        "error",
        "traceback",
        "first",
        "last",
    ):
        out.setdefault(name, None)
    if out["params"] is None and isinstance(out["trigger"], Mapping):
        params = (out["trigger"].get("data") or {}).get("params")
        out["params"] = params if isinstance(params, Mapping) else None
    if out["duration"] is None:
        out["duration"] = _seconds(out["started"], out["ended"])
    attempts = doc.get("attempts")
    out["attempts"] = (
        sorted(attempts.values(), key=lambda a: a.get("attempt") or 0)
        if isinstance(attempts, Mapping)
        else []
    )
    if with_dags:
        dags: dict[str, Any] = {}
        for dag_node in (doc.get("dags") or {}).values():
            dag = _entry(dag_node)
            dag.setdefault("state", None)
            dag["tasks"] = {
                task_node.get("name", ""): _entry(task_node)
                for task_node in (dag_node.get("tasks") or {}).values()
            }
            dags[dag_node.get("name", "")] = dag
        out["dags"] = dags
    return out
