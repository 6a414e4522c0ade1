"""What every executor shares: runs, their runner state machines, events, the data store.

An executor turns the crank of each run's :class:`~triggerd.engine.runner.Run` on one
thread of its own and performs the commands it returns. Everything about that is the
same whether tasks run in local worker processes or on Celery workers, and lives here;
a subclass supplies only the transport:

- ``start``/``close`` and ``_call(fn)``: run ``fn`` on the executor thread;
- ``_dispatch()``: send the queued ``StartTask`` jobs (``self._jobs``) to workers;
- ``_reply(request_id, payload)``: answer a task's signal;
- ``_stop_tasks(run_id, dags)``: tell running tasks of those DAGs that they are stopped;
- ``_terminate(run_id)``: the stop grace is over, end the run's tasks by force;
- ``_run_ended(run_id)``: optional clean-up when a run has finished.
"""

from __future__ import annotations

import collections
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triggerd.errors import InternalError
from triggerd.eventlog.schema import LogEvent, new_id
from triggerd.flow.workflow import Workflow

from . import runner as r
from .job import TaskJob, TaskOutcome, WorkflowCache

__all__ = ["ActiveRun", "EventSink", "Executor", "RunHandle", "RunResult", "jsonable"]

EventSink = Callable[[LogEvent], None]


@dataclass(frozen=True)
class RunResult:
    """How a run ended, with every task's final state."""

    run_id: str
    workflow: str
    status: str
    error: str | None
    tasks: dict[str, dict[str, str]]  # dag running name -> task -> state
    failures: list[dict[str, str]]
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class RunHandle:
    """A submitted run: wait for it, or ask for its id."""

    def __init__(self, run_id: str, workflow: str):
        self.run_id = run_id
        self.workflow = workflow
        self._done = threading.Event()
        self._result: RunResult | None = None

    def _finish(self, result: RunResult) -> None:
        self._result = result
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> RunResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} of '{self.workflow}' did not end within {timeout} s")
        assert self._result is not None
        return self._result


@dataclass(eq=False)
class ActiveRun:
    """A run between submit and its end, owned by the executor thread."""

    handle: RunHandle
    workflow: Workflow
    run: r.Run
    keep_data: bool
    rule: str | None
    started: float = field(default_factory=time.time)
    dag_started: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.handle.run_id

    def job(self, command: r.StartTask) -> TaskJob:
        """What a worker needs to run ``command``'s task (no code: names and a hash)."""
        inputs = None
        if command.inputs is not None:
            inputs = tuple((i.name, i.aliases, i.data) for i in command.inputs)
        return TaskJob(
            self.run_id, self.workflow.name, self.workflow.content_hash, command.dag,
            command.blueprint, command.task, command.queue, inputs, command.dag_data, self.rule,
        )  # fmt: skip


class Executor(ABC):
    """Runs workflows from ``workflows`` directories; see the module docstring."""

    def __init__(
        self,
        *,
        workflows: list[Path],
        store: Any = None,
        keep_data: bool = False,
        stop_grace: float | None = 10.0,
        on_event: EventSink | None = None,
    ):
        self._dirs = [Path(d) for d in workflows]
        self._store = store
        self._keep_data = keep_data
        self._stop_grace = stop_grace
        self._sinks: list[EventSink] = [on_event] if on_event else []
        self._workflows = WorkflowCache(self._dirs)
        self._runs: dict[str, ActiveRun] = {}
        self._jobs: collections.deque[tuple[str, r.StartTask]] = collections.deque()
        self._timers: list[threading.Timer] = []

    # -- the transport (subclasses) -------------------------------------------------------

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def close(self, timeout: float = 10.0) -> None: ...

    @abstractmethod
    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the executor thread (from any thread); a no-op once closed."""

    @abstractmethod
    def _dispatch(self) -> None: ...

    @abstractmethod
    def _reply(self, request_id: str, payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def _stop_tasks(self, run_id: str, dags: tuple[str, ...]) -> None: ...

    @abstractmethod
    def _terminate(self, run_id: str) -> None: ...

    def _run_ended(self, run_id: str) -> None:  # noqa: B027 - optional hook
        """Called on the executor thread once a run has finished, before its handle is."""

    # -- lifecycle and API (any thread) ---------------------------------------------------------

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def submit(
        self,
        workflow: str,
        args: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        keep_data: bool | None = None,
        rule: str | None = None,
    ) -> RunHandle:
        """Validate and start a run. Bad names or arguments raise here, before anything runs."""
        loaded = self._workflows.get(workflow)
        params = loaded.parameters.validate(args or {})
        shapes = loaded.shapes()
        handle = RunHandle(run_id or new_id(), workflow)
        keep = self._keep_data if keep_data is None else keep_data
        if self._store is not None:
            if self._store.exists(handle.run_id):
                # The same run submitted again (the daemon died while it ran): it starts over.
                self._store.remove(handle.run_id)
            self._store.add(handle.run_id, {"name": workflow, "queue": "workflow", "start_time": time.time()})
            if params:
                self._store.get(handle.run_id).set_many(params)
        active = ActiveRun(handle, loaded, r.Run(shapes), keep, rule)
        self._call(lambda: self._begin(active, params))
        return handle

    def validate(self, workflow: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Load ``workflow`` and check ``args``; raises what ``submit`` would raise."""
        return self._workflows.get(workflow).parameters.validate(args or {})

    def stop_run(self, run_id: str, reason: str = "stop requested") -> None:
        """Stop a run: no new tasks start, running ones are told (``signal.is_stopped``);
        tasks still running ``stop_grace`` seconds later are terminated."""
        self._call(lambda: self._feed(run_id, r.StopRequested(reason)))
        if self._stop_grace is not None:
            timer = threading.Timer(self._stop_grace, lambda: self._call(lambda: self._terminate(run_id)))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def active_runs(self) -> list[str]:
        return list(self._runs.copy())  # dict.copy is atomic under the GIL; iteration is not

    def _stop_all(self, deadline: float) -> None:
        """For ``close``: stop every run, wait for them until ``deadline``, cancel timers."""
        for run_id in self.active_runs():
            self.stop_run(run_id, "executor shutting down")
        for active in list(self._runs.values()):
            active.handle._done.wait(max(0.0, deadline - time.monotonic()))
        for timer in self._timers:
            timer.cancel()

    # -- the executor thread ----------------------------------------------------------------

    def _begin(self, active: ActiveRun, params: Mapping[str, Any]) -> None:
        self._runs[active.run_id] = active
        self._emit(active, "run.started", f"run of '{active.workflow.name}' started", data={"params": jsonable(params)})
        self._perform(active, active.run.start())

    def _feed(self, run_id: str, event: r.Event) -> None:
        active = self._runs.get(run_id)
        if active is not None:
            self._perform(active, active.run.handle(event))

    def _signal(self, run_id: str, request_id: str, dag: str, action: str, payload: dict[str, Any], task: str | None = None) -> None:
        """A task's signal (start_dag, join_dags, stop_dag, stop_workflow): record it as a
        ``signal.<action>`` event, then hand it to the runner."""
        active = self._runs.get(run_id)
        if active is not None:
            data: dict[str, Any] = {k: v for k, v in payload.items() if k in ("name", "names")}
            if action == "start_dag":
                data["with_data"] = payload.get("data") is not None
            target = payload.get("name") or ", ".join(payload.get("names") or []) or ("every other DAG" if action == "join_dags" else "")
            message = f"{task or dag} asks to {action.replace('_', ' ')}" + (f" {target}" if target else "")
            self._emit(active, f"signal.{action}", message, dag=dag, task=task, data=data)
        self._feed(run_id, r.SignalReceived(request_id, dag, action, payload))

    def _outcome(self, active: ActiveRun, dag: str, task: str, outcome: TaskOutcome) -> None:
        """A task came back from a worker: record it and feed it to the runner."""
        duration = outcome.ended - outcome.started
        if outcome.outcome == "failed":
            active.failures.append({"dag": dag, "task": task, "error": outcome.message, "traceback": outcome.traceback})
            self._emit(active, "task.failed", f"{task} failed: {outcome.message}", dag=dag, task=task, level="error", data={"duration": duration, "traceback": outcome.traceback})
            self._feed(active.run_id, r.TaskFailed(dag, task, outcome.message, outcome.traceback))
        else:
            level = {"aborted": "error", "stopped": "warning"}.get(outcome.outcome, "info")
            text = f"{task} {outcome.outcome} in {duration:.3f} s" + (f": {outcome.message}" if outcome.message else "")
            self._emit(active, f"task.{outcome.outcome}", text, dag=dag, task=task, level=level, data={"duration": duration})
            self._feed(active.run_id, r.TaskFinished(dag, task, outcome.outcome, outcome.limit, outcome.data, outcome.message))

    def _lost_task(self, active: ActiveRun, dag: str, task: str, message: str) -> None:
        """A task that never came back (its worker died, the broker refused it): failed."""
        active.failures.append({"dag": dag, "task": task, "error": message, "traceback": ""})
        self._emit(active, "task.failed", f"{task} failed: {message}", dag=dag, task=task, level="error")
        self._feed(active.run_id, r.TaskFailed(dag, task, message))

    def _terminated_task(self, active: ActiveRun, dag: str, task: str) -> None:
        """A task ended by force after the stop grace: it counts as stopped."""
        message = f"terminated: still running {self._stop_grace:g} s after its run was stopped"
        self._emit(active, "task.stopped", f"{task} {message}", dag=dag, task=task, level="warning")
        self._feed(active.run_id, r.TaskFinished(dag, task, "stopped", (), None, message))

    def _next_job(self) -> tuple[ActiveRun, r.StartTask] | None:
        """The first queued job still to be sent, dropping those of ended runs and ending
        those of stopped DAGs at once; None when the queue is empty. It stays queued:
        ``self._jobs.popleft()`` once a worker takes it."""
        while self._jobs:
            run_id, command = self._jobs[0]
            active = self._runs.get(run_id)
            if active is None:
                self._jobs.popleft()
            elif active.run.is_stopped(command.dag):
                self._jobs.popleft()
                self._feed(run_id, r.TaskFinished(command.dag, command.task, "stopped", (), None, "stopped before it started"))
            else:
                return active, command
        return None

    def _perform(self, active: ActiveRun, commands: list[r.Command]) -> None:
        for command in commands:
            match command:
                case r.StartTask():
                    self._jobs.append((active.run_id, command))
                case r.Reply(request_id=request_id, payload=payload):
                    self._reply(request_id, dict(payload))
                case r.StopTasks(dags=dags):
                    self._stop_tasks(active.run_id, dags)
                case r.SkipTask(dag=dag, task=task):
                    self._emit(active, "task.skipped", f"{task} skipped", dag=dag, task=task)
                case r.CancelTask(dag=dag, task=task):
                    self._emit(active, "task.cancelled", f"{task} cancelled: its DAG was stopped", dag=dag, task=task, level="warning")
                case r.DagStarted(dag=dag, queue=dag_queue):
                    active.dag_started[dag] = time.time()
                    self._meta(active, {f"log.{dag}.start_time": active.dag_started[dag]})
                    self._emit(active, "dag.started", f"DAG {dag} started", dag=dag, data={"queue": dag_queue})
                case r.DagFinished(dag=dag, status=status):
                    end = time.time()
                    self._meta(active, {f"log.{dag}.end_time": end, f"log.{dag}.duration": end - active.dag_started.get(dag, end)})
                    self._emit(active, f"dag.{status}", f"DAG {dag} {status}", dag=dag, level="info" if status == "succeeded" else "warning")
                case r.RunFinished():
                    self._finish(active, command)
                case r.Ignored(reason=reason):
                    self._emit(active, "run.ignored", reason, level="warning")
                case _:
                    raise InternalError(f"unknown command {command!r}")

    def _finish(self, active: ActiveRun, command: r.RunFinished) -> None:
        run_id = active.run_id
        ended = time.time()
        if active.keep_data:  # a document about to be removed needs no end time
            self._meta(active, {"end_time": ended, "duration": ended - active.started})
        level = "info" if command.status == "succeeded" else "error"
        message = f"run of '{active.workflow.name}' {command.status} in {ended - active.started:.3f} s"
        self._emit(active, f"run.{command.status}", message + (f": {command.error}" if command.error else ""), level=level, data={"duration": ended - active.started, "error": command.error})
        if self._store is not None and not active.keep_data:
            self._store.remove(run_id)
        tasks = {dag: {t: s.value for t, s in states.items()} for dag, states in active.run.dags.items()}
        self._run_ended(run_id)
        del self._runs[run_id]
        active.handle._finish(RunResult(run_id, active.workflow.name, command.status, command.error, tasks, active.failures, active.started, ended))

    def _meta(self, active: ActiveRun, values: Mapping[str, Any]) -> None:
        if self._store is not None:
            self._store.get(active.run_id).set_many(values, section="meta")

    def _emit(self, active: ActiveRun, kind: str, message: str, **fields: Any) -> None:
        event = LogEvent(kind, message, run=active.run_id, workflow=active.workflow.name, rule=active.rule, **fields)
        for sink in self._sinks:
            sink(event)


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON-safe values for an event: anything else as its repr."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in params.items()}
