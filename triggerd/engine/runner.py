"""The one DAG scheduler of triggerd, as a sans-I/O state machine.

A :class:`Run` takes events (a task finished, failed, a signal arrived, stop requested)
and returns commands (start this task, skip that one, reply to a signal, the run is over).
It never sleeps, never reads a clock, never touches a process, a pipe or Redis: executors
turn the crank, ``for cmd in run.handle(event): perform(cmd)``, locally and on Celery
alike. Task data is opaque here (whatever the executor passes in, usually signed bytes).

Task states move only along :data:`TRANSITIONS`; anything else is our own bug
(:class:`~triggerd.errors.InternalError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from triggerd.errors import InternalError
from triggerd.flow.dag import DagShape

__all__ = [
    "TRANSITIONS",
    "CancelTask",
    "Command",
    "DagFinished",
    "DagStarted",
    "Event",
    "Ignored",
    "Input",
    "Reply",
    "Run",
    "RunFinished",
    "SignalReceived",
    "SkipTask",
    "StartTask",
    "StopRequested",
    "StopTasks",
    "TaskFailed",
    "TaskFinished",
    "TaskState",
]


class TaskState(StrEnum):
    PENDING = "pending"  # waiting for its predecessors
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    STOPPED = "stopped"  # the task raised StopTask
    ABORTED = "aborted"  # the task raised AbortWorkflow
    FAILED = "failed"  # the task raised anything else, or its worker died
    SKIPPED = "skipped"  # branching (Action limit) left it out
    CANCELLED = "cancelled"  # never started: its DAG or the workflow was stopped


TRANSITIONS: dict[tuple[TaskState, str], TaskState] = {
    (TaskState.PENDING, "start"): TaskState.RUNNING,
    (TaskState.PENDING, "skip"): TaskState.SKIPPED,
    (TaskState.PENDING, "cancel"): TaskState.CANCELLED,
    (TaskState.RUNNING, "succeeded"): TaskState.SUCCEEDED,
    (TaskState.RUNNING, "stopped"): TaskState.STOPPED,
    (TaskState.RUNNING, "aborted"): TaskState.ABORTED,
    (TaskState.RUNNING, "failed"): TaskState.FAILED,
}

# States after which successors may be decided (run or skip).
_DONE = {TaskState.SUCCEEDED, TaskState.STOPPED, TaskState.SKIPPED}
_FINAL = _DONE | {TaskState.ABORTED, TaskState.FAILED, TaskState.CANCELLED}


# ---------------------------------------------------------------------------- events in


@dataclass(frozen=True)
class TaskFinished:
    """A task ended without error: ``outcome`` is succeeded, stopped or aborted."""

    dag: str
    task: str
    outcome: str = "succeeded"
    limit: tuple[str, ...] | None = None
    data: Any = None
    message: str = ""


@dataclass(frozen=True)
class TaskFailed:
    """A task raised, or the process running it died."""

    dag: str
    task: str
    error: str
    traceback: str = ""


@dataclass(frozen=True)
class SignalReceived:
    """A request from a task: start_dag, join_dags, stop_dag, stop_workflow, is_stopped."""

    request_id: str
    dag: str
    action: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StopRequested:
    """An operator (or the daemon) asks the whole run to stop."""

    reason: str = "stop requested"


Event = TaskFinished | TaskFailed | SignalReceived | StopRequested


# ------------------------------------------------------------------------- commands out


@dataclass(frozen=True)
class Input:
    """One predecessor's output for a task: its name, edge slot aliases and data."""

    name: str
    aliases: tuple[str, ...]
    data: Any


@dataclass(frozen=True)
class StartTask:
    """Run this task. ``inputs`` None: a start task, whose input is ``dag_data``."""

    dag: str
    blueprint: str
    task: str
    queue: str
    inputs: tuple[Input, ...] | None
    dag_data: Any = None


@dataclass(frozen=True)
class SkipTask:
    dag: str
    task: str


@dataclass(frozen=True)
class CancelTask:
    dag: str
    task: str


@dataclass(frozen=True)
class StopTasks:
    """Tell tasks running in these DAGs that they are stopped (BashTask terminates)."""

    dags: tuple[str, ...]


@dataclass(frozen=True)
class Reply:
    request_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class DagStarted:
    dag: str
    blueprint: str
    queue: str


@dataclass(frozen=True)
class DagFinished:
    dag: str
    status: str


@dataclass(frozen=True)
class RunFinished:
    status: str  # succeeded | failed | aborted | stopped
    error: str | None = None


@dataclass(frozen=True)
class Ignored:
    """An event that changes nothing (late or duplicate completion); worth a log line."""

    reason: str


Command = (
    StartTask
    | SkipTask
    | CancelTask
    | StopTasks
    | Reply
    | DagStarted
    | DagFinished
    | RunFinished
    | Ignored
)


# ---------------------------------------------------------------------------- the machine


class _DagRun:
    """One running copy of a DAG blueprint."""

    def __init__(self, name: str, shape: DagShape, data: Any):
        self.name = name
        self.shape = shape
        self.data = data
        self.stopped = False
        self.finished = False
        self.status = "running"
        self.states = dict.fromkeys(shape.tasks, TaskState.PENDING)
        self.preds: dict[str, list[tuple[str, str | None]]] = {t: [] for t in shape.tasks}
        self.succs: dict[str, list[str]] = {t: [] for t in shape.tasks}
        for parent, child, slot in shape.edges:
            self.preds[child].append((parent, slot))
            self.succs[parent].append(child)
        self.outputs: dict[str, tuple[tuple[str, ...] | None, Any]] = {}

    def move(self, task: str, action: str) -> TaskState:
        state = self.states[task]
        try:
            new = TRANSITIONS[(state, action)]
        except KeyError:
            raise InternalError(
                f"invalid transition of task '{task}' in DAG '{self.name}': "
                f"{state.value} --{action}-->"
            ) from None
        self.states[task] = new
        return new

    def running(self) -> bool:
        return any(s is TaskState.RUNNING for s in self.states.values())


class Run:
    """The state of one workflow run: its DAG copies and their tasks."""

    def __init__(self, shapes: Mapping[str, DagShape]):
        self._shapes = dict(shapes)
        self._dags: dict[str, _DagRun] = {}
        self._copies: dict[str, int] = dict.fromkeys(self._shapes, 0)
        self._joins: list[tuple[str, str, tuple[str, ...] | None]] = []
        self._stopping = False
        self._outcome: str | None = None  # failed | aborted | stopped, the worst wins
        self._error: str | None = None
        self._started = False
        self.finished = False
        self.status = "pending"

    # -- public ---------------------------------------------------------------------

    @property
    def dags(self) -> dict[str, dict[str, TaskState]]:
        """Task states per running DAG name (a copy, for status displays and tests)."""
        return {name: dict(dag.states) for name, dag in self._dags.items()}

    def dag_status(self, name: str) -> str:
        return self._dags[name].status

    def is_stopped(self, dag: str) -> bool:
        known = self._dags.get(dag)
        return self._stopping or (known is not None and known.stopped)

    def start(self) -> list[Command]:
        """Start every autostart DAG; a workflow without one finishes at once."""
        if self._started:
            raise InternalError("run started twice")
        self._started = True
        self.status = "running"
        commands: list[Command] = []
        for blueprint, shape in self._shapes.items():
            if shape.autostart:
                commands += self._start_dag(blueprint, None)
        commands += self._check_finished()
        return commands

    def handle(self, event: Event) -> list[Command]:
        if self.finished:
            return [Ignored(f"run already finished: {event!r}")]
        if isinstance(event, TaskFinished):
            return self._on_finished(event)
        if isinstance(event, TaskFailed):
            return self._on_failed(event)
        if isinstance(event, SignalReceived):
            return self._on_signal(event)
        if isinstance(event, StopRequested):
            return self._stop_all("stopped", event.reason)
        raise InternalError(f"unknown event {event!r}")

    def joining(self) -> bool:
        """Whether a task waits in ``join_dags`` for an answer."""
        return bool(self._joins)

    def abandon(self, reason: str) -> list[Command]:
        """End the run as failed because nothing will ever report its running tasks (the
        executor lost track of them): they fail, the rest is cancelled."""
        if self.finished:
            return []
        for dag in self._dags.values():
            for task, state in dag.states.items():
                if state is TaskState.RUNNING:
                    dag.move(task, "failed")
        return self._stop_all("failed", reason) + self._check_finished()

    # -- task completions -------------------------------------------------------------

    def _running_task(self, dag_name: str, task: str) -> _DagRun | None:
        dag = self._dags.get(dag_name)
        if dag is None or task not in dag.states or dag.states[task] is not TaskState.RUNNING:
            return None
        return dag

    def _on_finished(self, event: TaskFinished) -> list[Command]:
        dag = self._running_task(event.dag, event.task)
        if dag is None:
            return [Ignored(f"late or duplicate completion of {event.dag}/{event.task}")]
        if event.outcome not in ("succeeded", "stopped", "aborted"):
            raise InternalError(f"unknown task outcome {event.outcome!r}")
        dag.move(event.task, event.outcome)
        dag.outputs[event.task] = (event.limit, event.data)
        commands: list[Command] = []
        if event.outcome == "aborted":
            message = event.message or f"task '{event.task}' aborted the workflow"
            commands += self._stop_all("aborted", message)
        commands += self._advance(dag, dag.succs[event.task])
        return commands + self._check_finished()

    def _on_failed(self, event: TaskFailed) -> list[Command]:
        dag = self._running_task(event.dag, event.task)
        if dag is None:
            return [Ignored(f"late or duplicate failure of {event.dag}/{event.task}")]
        dag.move(event.task, "failed")
        commands = self._stop_all("failed", f"task '{event.task}' failed: {event.error}")
        return commands + self._check_finished()

    # -- scheduling -------------------------------------------------------------------

    def _start_dag(self, blueprint: str, data: Any) -> list[Command]:
        self._copies[blueprint] += 1
        name = f"{blueprint}:{self._copies[blueprint]}"
        shape = self._shapes[blueprint]
        dag = _DagRun(name, shape, data)
        self._dags[name] = dag
        roots = [t for t in shape.tasks if not dag.preds[t]]
        return [DagStarted(name, blueprint, shape.queue), *self._advance(dag, roots)]

    def _advance(self, dag: _DagRun, candidates: Iterable[str]) -> list[Command]:
        """Decide every candidate whose predecessors are all done; skips cascade."""
        commands: list[Command] = []
        work = list(candidates)
        while work:
            task = work.pop(0)
            if dag.states[task] is not TaskState.PENDING:
                continue
            if not all(dag.states[p] in _DONE for p, _ in dag.preds[task]):
                continue
            if dag.stopped or self._stopping:
                dag.move(task, "cancel")
                commands.append(CancelTask(dag.name, task))
            elif self._should_run(dag, task):
                dag.move(task, "start")
                commands.append(self._start_command(dag, task))
            else:
                dag.move(task, "skip")
                commands.append(SkipTask(dag.name, task))
                work.extend(dag.succs[task])
        return commands

    def _should_run(self, dag: _DagRun, task: str) -> bool:
        shape = dag.shape.tasks[task]
        if shape.force_run or not dag.preds[task]:
            return True
        for pred, _slot in dag.preds[task]:
            if dag.states[pred] is TaskState.SKIPPED:
                if not dag.shape.tasks[pred].propagate_skip:
                    return True
                continue
            limit = dag.outputs[pred][0]
            if limit is None or task in limit:
                return True
        return False

    def _start_command(self, dag: _DagRun, task: str) -> StartTask:
        shape = dag.shape.tasks[task]
        blueprint = dag.shape.name
        if not dag.preds[task]:
            return StartTask(dag.name, blueprint, task, shape.queue, None, dag.data)
        inputs = tuple(
            Input(pred, (slot,) if slot else (), dag.outputs[pred][1])
            for pred, slot in dag.preds[task]
            if dag.states[pred] is not TaskState.SKIPPED
        )
        return StartTask(dag.name, blueprint, task, shape.queue, inputs)

    # -- stopping and finishing ---------------------------------------------------------

    def _stop_all(self, outcome: str, message: str) -> list[Command]:
        rank = {"stopped": 1, "aborted": 2, "failed": 3}
        if self._outcome is None or rank[outcome] > rank[self._outcome]:
            self._outcome, self._error = outcome, message
        if self._stopping:
            return []
        self._stopping = True
        running = [name for name, dag in self._dags.items() if not dag.finished]
        for name in running:
            self._dags[name].stopped = True
        return [StopTasks(tuple(running))] if running else []

    def _check_finished(self) -> list[Command]:
        commands: list[Command] = []
        for dag in self._dags.values():
            if dag.finished or dag.running():
                continue
            ready = [t for t, s in dag.states.items() if s is TaskState.PENDING]
            commands += self._advance(dag, ready)
            if dag.running():
                continue
            for task, state in dag.states.items():
                if state is TaskState.PENDING:  # behind a cancelled, failed or aborted task
                    dag.move(task, "cancel")
                    commands.append(CancelTask(dag.name, task))
            dag.finished = True
            dag.status = self._dag_status(dag)
            commands.append(DagFinished(dag.name, dag.status))
        commands += self._answer_joins()
        if self._started and all(d.finished for d in self._dags.values()):
            self.finished = True
            self.status = self._outcome or "succeeded"
            commands.append(RunFinished(self.status, self._error))
        return commands

    @staticmethod
    def _dag_status(dag: _DagRun) -> str:
        states = set(dag.states.values())
        if TaskState.FAILED in states:
            return "failed"
        if TaskState.ABORTED in states:
            return "aborted"
        return "stopped" if dag.stopped else "succeeded"

    # -- signals ------------------------------------------------------------------------

    def _on_signal(self, event: SignalReceived) -> list[Command]:
        action, payload = event.action, event.payload
        if action == "is_stopped":
            return [Reply(event.request_id, {"stopped": self.is_stopped(event.dag)})]
        if action == "stop_workflow":
            # StopTasks before the Reply: once stop_workflow() returns, is_stopped is true.
            return [
                *self._stop_all("stopped", f"DAG '{event.dag}' stopped the workflow"),
                Reply(event.request_id, {"ok": True}),
            ]
        if action == "stop_dag":
            return [
                *self._stop_dag(payload.get("name") or event.dag),
                Reply(event.request_id, {"ok": True}),
            ]
        if action == "start_dag":
            return self._signal_start_dag(event)
        if action == "join_dags":
            names = payload.get("names")
            targets = tuple(names) if names is not None else None
            if targets is not None and event.dag in targets:
                return [
                    _refuse(
                        event.request_id,
                        f"DAG '{event.dag}' cannot join itself: it would wait forever",
                    )
                ]
            self._joins.append((event.request_id, event.dag, targets))
            return self._answer_joins()
        return [_refuse(event.request_id, f"unknown signal action '{action}'")]

    def _signal_start_dag(self, event: SignalReceived) -> list[Command]:
        blueprint = event.payload.get("name")
        if blueprint not in self._shapes:
            known = ", ".join(sorted(self._shapes)) or "none"
            return [
                _refuse(
                    event.request_id,
                    f"the workflow has no DAG '{blueprint}' (it has: {known})",
                    "DagNameUnknown",
                )
            ]
        if self._stopping:
            return [Reply(event.request_id, {"dag_name": None})]
        commands = self._start_dag(blueprint, event.payload.get("data"))
        started = commands[0]
        assert isinstance(started, DagStarted)
        return [
            Reply(event.request_id, {"dag_name": started.dag}),
            *commands,
            *self._check_finished(),
        ]

    def _stop_dag(self, name: str) -> list[Command]:
        dag = self._dags.get(name)
        if dag is None or dag.finished or dag.stopped:
            return []
        dag.stopped = True
        return [StopTasks((name,)), *self._check_finished()]

    def _answer_joins(self) -> list[Command]:
        commands: list[Command] = []
        waiting = []
        for request_id, caller, targets in self._joins:
            names = targets if targets is not None else [n for n in self._dags if n != caller]
            if all(self._dags[n].finished for n in names if n in self._dags):
                commands.append(Reply(request_id, {"ok": True}))
            else:
                waiting.append((request_id, caller, targets))
        self._joins = waiting
        return commands


def _refuse(request_id: str, message: str, error_type: str = "RequestFailed") -> Reply:
    return Reply(request_id, {"error": message, "error_type": error_type})
