"""Rebuilding a run from its journal, as a pure function: records in, a plan out.

:func:`replay` feeds a fresh :class:`~triggerd.engine.runner.Run` the journaled events in
order and says what the executor has to do now that it has the run back:

- ``outstanding``: tasks the runner considers running, each with the job that starts it
  and, if the job was handed to a worker before, how (:class:`~triggerd.engine.journal.Sent`):
  the executor adopts it (the worker still has it) or sends it again;
- ``commands``: what must be done again because a lost process may not have done it
  (answers to signals, stop flags, the run's end);
- ``events``: the events journaled with task ends, to be recorded again (the event log
  keeps one copy of an event id, so one written before the crash is not doubled), and
  ``end_event``, the run's end if the executor had recorded it;
- ``signals``: the signal requests seen, with what the executor stored beside them.

No I/O, no clock: tests feed hand-made records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import runner as r
from .journal import Begun, Ended, Record, Sent

__all__ = ["Replayed", "replay"]


@dataclass
class Replayed:
    outstanding: list[tuple[r.StartTask, Sent | None]] = field(default_factory=list)
    commands: list[r.Command] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished_tasks: int = 0
    attempts: set[int] = field(default_factory=set)
    end_event: dict[str, Any] | None = None  # the run's end, if it was journaled


def replay(run: r.Run, records: list[Record]) -> Replayed:
    """Bring ``run`` (new, not started) to the state its journal describes."""
    plan = Replayed()
    commands = run.start()
    sent: dict[tuple[str, str], Sent] = {}
    for record in records:
        entry = record.entry
        plan.attempts.add(record.attempt)
        if isinstance(entry, Begun):
            continue
        if isinstance(entry, Ended):
            plan.end_event = record.body.get("event")
            continue
        if isinstance(entry, Sent):
            sent[(entry.dag, entry.task)] = entry
            continue
        if isinstance(entry, r.SignalReceived):
            plan.signals[entry.request_id] = record.body
        elif isinstance(entry, (r.TaskFinished, r.TaskFailed)):
            plan.finished_tasks += 1
        if "event" in record.body:
            plan.events.append(record.body["event"])
        commands += run.handle(entry)
    starts: dict[tuple[str, str], r.StartTask] = {}
    for command in commands:
        if isinstance(command, r.StartTask):
            starts[(command.dag, command.task)] = command
        elif isinstance(command, (r.Reply, r.StopTasks, r.RunFinished)):
            plan.commands.append(command)
    for dag, states in run.dags.items():
        for task, state in states.items():
            if state is r.TaskState.RUNNING:
                plan.outstanding.append((starts[(dag, task)], sent.get((dag, task))))
    return plan
