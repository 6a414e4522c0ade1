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
- ``_run_ended(run_id)``: optional clean-up when a run has finished;
- ``_with_workers(run_id)``: how many of the run's tasks are sent to workers.

The data store is written on a thread of its own (:class:`StoreKeeper`), so an
unreachable store delays runs without holding up the executor thread. With a
:class:`~triggerd.engine.journal.Journal`, every event fed to a run's runner is journaled
first, and a run submitted again after a crash resumes from it (:mod:`.resume`); a
subclass then also supplies ``_adopt``, which takes back a job a worker may still have.
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

from triggerd.config import mask_url_password
from triggerd.errors import InternalError
from triggerd.eventlog.schema import LogEvent, new_id
from triggerd.flow.workflow import Workflow
from triggerd.health import Reading

from . import runner as r
from .job import TaskJob, TaskOutcome, WorkflowCache
from .journal import Begun, Ended, Entry, Journal, Sent
from .resume import replay
from .store_keeper import StoreKeeper

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
            raise TimeoutError(
                f"run {self.run_id} of '{self.workflow}' did not end within {timeout} s"
            )
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
    params: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1  # how many times the run has been handed to an executor
    records: list[Any] = field(default_factory=list)  # its journal, when it resumes
    attempts: set[int] = field(default_factory=set)  # attempts whose jobs may still run
    prepared: bool = False  # its data store document exists: tasks may start
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
            self.run_id,
            self.workflow.name,
            self.workflow.content_hash,
            command.dag,
            command.blueprint,
            command.task,
            command.queue,
            inputs,
            command.dag_data,
            self.rule,
            self.attempt,
        )


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
        give_up_after: float = 43_200.0,
        journal: Journal | None = None,
    ):
        self._dirs = [Path(d) for d in workflows]
        self._journal = journal
        self._journaling = journal is not None  # off while closing: what ends then is not an end
        self._give_up_after = give_up_after
        self._keeper = (
            StoreKeeper(store, target=_describe(store), give_up_after=give_up_after)
            if store is not None
            else None
        )
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

    @abstractmethod
    def _with_workers(self, run_id: str) -> int:
        """How many tasks of the run are sent to workers (and not yet back)."""

    def _in_flight(self, run_id: str) -> int:
        """How many tasks of the run are sent to workers, or waiting to be."""
        return self._with_workers(run_id) + sum(1 for job_run, _ in self._jobs if job_run == run_id)

    # -- lifecycle and API (any thread) ---------------------------------------------------------

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def dependencies(self) -> list[Reading]:
        """The services this executor needs, as last seen (the data store; Celery adds Redis)."""
        return [self._keeper.health.reading] if self._keeper is not None else []

    def _start_keeper(self) -> None:
        if self._keeper is not None:
            self._keeper.start()

    def _close_keeper(self, timeout: float) -> None:
        if self._keeper is not None:
            self._keeper.close(timeout)

    def submit(
        self,
        workflow: str,
        args: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        keep_data: bool | None = None,
        rule: str | None = None,
        attempt: int = 1,
    ) -> RunHandle:
        """Validate and start a run. Bad names or arguments raise here, before anything
        runs; nothing here waits on a backend (the data store is written by the keeper).

        A run id with journal entries resumes: ``attempt`` counts how often it was handed
        to an executor (the daemon's outbox knows)."""
        loaded = self._workflows.get(workflow)
        params = loaded.parameters.validate(args or {})
        shapes = loaded.shapes()
        handle = RunHandle(run_id or new_id(), workflow)
        keep = self._keep_data if keep_data is None else keep_data
        active = ActiveRun(
            handle, loaded, r.Run(shapes), keep, rule, params, attempt, attempts={attempt}
        )
        self._call(lambda: self._begin(active))
        return handle

    def validate(self, workflow: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Load ``workflow`` and check ``args``; raises what ``submit`` would raise."""
        return self._workflows.get(workflow).parameters.validate(args or {})

    def stop_run(self, run_id: str, reason: str = "stop requested") -> None:
        """Stop a run: no new tasks start, running ones are told (``signal.is_stopped``);
        tasks still running ``stop_grace`` seconds later are terminated."""
        self._call(lambda: self._stop(run_id, reason))
        if self._stop_grace is not None:
            timer = threading.Timer(
                self._stop_grace, lambda: self._call(lambda: self._terminate(run_id))
            )
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def active_runs(self) -> list[str]:
        return list(self._runs.copy())  # dict.copy is atomic under the GIL; iteration is not

    def forget(self, run_id: str) -> None:
        """The run's end is recorded where it will be found after a restart: its journal
        may go (the daemon calls this once its outbox says the run has ended)."""
        if self._journal is not None:
            journal = self._journal
            self._call(lambda: journal.forget(run_id))

    def _stop_all(self, deadline: float) -> None:
        """For ``close``: stop every run, wait for them until ``deadline``, cancel timers.

        With a journal, the stop is not journaled (nor is anything after it): the runs
        resume where they were at the next start."""
        self._journaling = False
        for run_id in self.active_runs():
            self.stop_run(run_id, "executor shutting down")
        for active in list(self._runs.values()):
            active.handle._done.wait(max(0.0, deadline - time.monotonic()))
        for timer in self._timers:
            timer.cancel()

    # -- the executor thread ----------------------------------------------------------------

    def _begin(self, active: ActiveRun) -> None:
        """Register the run, then have its document written; it starts once that is done."""
        run_id = active.run_id
        self._runs[run_id] = active
        if self._journal is not None:
            active.records = self._journal.records(run_id)
            first = active.records[0].entry if active.records else None
            if active.records and not (
                isinstance(first, Begun) and first.content_hash == active.workflow.content_hash
            ):
                self._emit(
                    active,
                    "run.restarted",
                    f"the workflow file of '{active.workflow.name}' changed since the run began: "
                    "it starts over",
                    level="warning",
                )
                self._journal.forget(run_id)
                active.records = []
        if self._keeper is None:
            self._prepared(active, None)
            return
        if self._keeper.health.ok is False:
            reading = self._keeper.health.reading
            self._emit(
                active,
                "run.waiting",
                f"the data store ({reading.target}) is unreachable: the run starts when it answers",
                level="warning",
                data={"dependency": "store", "error": reading.error},
            )
        make = _document_maker(active, fresh=not active.records)
        self._keeper.submit(
            f"creating the document of run {run_id}",
            make,
            done=lambda exc: self._call(lambda: self._prepared(active, exc)),
        )

    def _prepared(self, active: ActiveRun, error: BaseException | None) -> None:
        """The run's document is written (or could not be): start its DAGs (or fail it)."""
        if self._runs.get(active.run_id) is not active:
            return  # stopped while it waited; the keeper removes the document after writing it
        if error is not None:
            self._finish(
                active,
                r.RunFinished("failed", f"its data store document could not be written: {error}"),
            )
            return
        active.prepared = True
        if active.records:
            self._resume(active)
            return
        self._journal_append(active, Begun(active.workflow.name, active.workflow.content_hash))
        data = {"params": jsonable(active.params), "attempt": active.attempt}
        self._emit(active, "run.started", f"run of '{active.workflow.name}' started", data=data)
        self._perform(active, active.run.start())

    def _resume(self, active: ActiveRun) -> None:
        """Rebuild the run from its journal: finished tasks stay finished, running ones are
        taken back or sent again, a run that had ended is recorded as such."""
        plan = replay(active.run, active.records)
        active.records = []
        active.attempts |= plan.attempts
        for document in plan.events:  # the same ids: the event log keeps one of each
            self._record(LogEvent.from_dict(document))
        self._restore_signals(plan.signals)
        message = (
            f"run of '{active.workflow.name}' resumed (attempt {active.attempt}): "
            f"{plan.finished_tasks} tasks had ended, {len(plan.outstanding)} were running or due"
        )
        data = {
            "params": jsonable(active.params),
            "attempt": active.attempt,
            "resumed": True,
            "tasks_ended": plan.finished_tasks,
            "tasks_running": len(plan.outstanding),
        }
        self._emit(active, "run.started", message, data=data)
        for command in plan.commands:
            match command:
                case r.Reply(request_id=request_id, payload=payload):
                    self._reply(request_id, dict(payload))
                case r.StopTasks(dags=dags):
                    self._stop_tasks(active.run_id, dags)
                case r.RunFinished():
                    end = LogEvent.from_dict(plan.end_event) if plan.end_event else None
                    self._finish(active, command, event=end)
                    return
        for command, sent in plan.outstanding:
            self._adopt(active, command, sent)

    def _adopt(self, active: ActiveRun, command: r.StartTask, sent: Sent | None) -> None:
        """A task running when the run was last left: here, its worker went with the
        process that left it (a local pool), so it runs again if it may."""
        if sent is not None:
            task = active.workflow.task(command.blueprint, command.task)
            if not task.idempotent:
                message = (
                    f"task '{command.task}' was running when the daemon stopped, and it is not "
                    "idempotent (idempotent=False), so it was not run again"
                )
                self._lost_task(active, command.dag, command.task, message)
                return
            self._emit(
                active,
                "task.retried",
                f"{command.task} runs again: it was running when the daemon stopped",
                dag=command.dag,
                task=command.task,
                level="warning",
            )
        self._jobs.append((active.run_id, command))

    def _restore_signals(self, signals: Mapping[str, Mapping[str, Any]]) -> None:  # noqa: B027 - optional hook
        """Signal requests of a resumed run, with what :meth:`_signal_detail` stored."""

    def _signal_detail(self, request_id: str) -> dict[str, Any]:
        """What to journal beside a signal request, to answer it after a restart."""
        return {}

    def _journal_append(
        self,
        active: ActiveRun,
        entry: Entry,
        event: LogEvent | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if self._journal is not None and self._journaling:
            self._journal.append(
                active.run_id,
                active.attempt,
                entry,
                {**(extra or {}), **({"event": event.to_dict()} if event else {})},
            )

    def _feed(
        self,
        run_id: str,
        event: r.Event,
        *,
        emitted: LogEvent | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Journal ``event``, record ``emitted`` (the event that reports it), then hand it
        to the run's runner and perform what it says."""
        active = self._runs.get(run_id)
        if active is None:
            return
        if not active.prepared:
            if isinstance(event, r.StopRequested):  # nothing runs yet: it ends at once
                self._finish(active, r.RunFinished("stopped", event.reason))
            return
        self._journal_append(active, event, emitted, extra)
        if emitted is not None:
            self._record(emitted)
        self._perform(active, active.run.handle(event))
        if (
            not active.run.finished
            and self._runs.get(run_id) is active
            and self._in_flight(run_id) == 0
            and not active.run.joining()
        ):
            # Our own bug: nothing of the run is running or queued, so nothing will ever
            # end it. Fail it rather than leave it "running" forever.
            self._perform(
                active,
                active.run.abandon(
                    "internal error: the run has no task running or queued (please report this)"
                ),
            )

    def _stop(self, run_id: str, reason: str) -> None:
        if run_id in self._runs:
            self._feed(run_id, r.StopRequested(reason))
            return
        # Not (or no longer) ours: say it ended, so that whoever asked does not wait on it.
        # A run that just ended has said so already; the daemon keeps the first end.
        self._record(
            LogEvent(
                "run.stopped",
                f"run {run_id} stopped ({reason}): the executor had no task of it",
                run=run_id,
                level="warning",
                data={"error": reason},
            )
        )

    def _signal(
        self,
        run_id: str,
        request_id: str,
        dag: str,
        action: str,
        payload: dict[str, Any],
        task: str | None = None,
    ) -> None:
        """A task's signal (start_dag, join_dags, stop_dag, stop_workflow): record it as a
        ``signal.<action>`` event, then hand it to the runner."""
        active = self._runs.get(run_id)
        if active is not None:
            data: dict[str, Any] = {k: v for k, v in payload.items() if k in ("name", "names")}
            if action == "start_dag":
                data["with_data"] = payload.get("data") is not None
            target = (
                payload.get("name")
                or ", ".join(payload.get("names") or [])
                or ("every other DAG" if action == "join_dags" else "")
            )
            message = f"{task or dag} asks to {action.replace('_', ' ')}" + (
                f" {target}" if target else ""
            )
            self._emit(active, f"signal.{action}", message, dag=dag, task=task, data=data)
        self._feed(
            run_id,
            r.SignalReceived(request_id, dag, action, payload),
            extra=self._signal_detail(request_id),
        )

    def _outcome(self, active: ActiveRun, dag: str, task: str, outcome: TaskOutcome) -> None:
        """A task came back from a worker: record it and feed it to the runner."""
        duration = outcome.ended - outcome.started
        if outcome.outcome == "failed":
            active.failures.append(
                {"dag": dag, "task": task, "error": outcome.message, "traceback": outcome.traceback}
            )
            event = self._event(
                active,
                "task.failed",
                f"{task} failed: {outcome.message}",
                dag=dag,
                task=task,
                level="error",
                data={"duration": duration, "traceback": outcome.traceback},
            )
            self._feed(
                active.run_id,
                r.TaskFailed(dag, task, outcome.message, outcome.traceback),
                emitted=event,
            )
        else:
            level = {"aborted": "error", "stopped": "warning"}.get(outcome.outcome, "info")
            text = f"{task} {outcome.outcome} in {duration:.3f} s" + (
                f": {outcome.message}" if outcome.message else ""
            )
            event = self._event(
                active,
                f"task.{outcome.outcome}",
                text,
                dag=dag,
                task=task,
                level=level,
                data={"duration": duration},
            )
            self._feed(
                active.run_id,
                r.TaskFinished(
                    dag, task, outcome.outcome, outcome.limit, outcome.data, outcome.message
                ),
                emitted=event,
            )

    def _lost_task(self, active: ActiveRun, dag: str, task: str, message: str) -> None:
        """A task that never came back (its worker died, the broker refused it): failed."""
        active.failures.append({"dag": dag, "task": task, "error": message, "traceback": ""})
        event = self._event(
            active, "task.failed", f"{task} failed: {message}", dag=dag, task=task, level="error"
        )
        self._feed(active.run_id, r.TaskFailed(dag, task, message), emitted=event)

    def _terminated_task(self, active: ActiveRun, dag: str, task: str) -> None:
        """A task ended by force after the stop grace: it counts as stopped."""
        message = f"terminated: still running {self._stop_grace:g} s after its run was stopped"
        event = self._event(
            active, "task.stopped", f"{task} {message}", dag=dag, task=task, level="warning"
        )
        self._feed(
            active.run_id, r.TaskFinished(dag, task, "stopped", (), None, message), emitted=event
        )

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
                self._feed(
                    run_id,
                    r.TaskFinished(
                        command.dag, command.task, "stopped", (), None, "stopped before it started"
                    ),
                )
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
                    self._emit(
                        active,
                        "task.cancelled",
                        f"{task} cancelled: its DAG was stopped",
                        dag=dag,
                        task=task,
                        level="warning",
                    )
                case r.DagStarted(dag=dag, queue=dag_queue):
                    active.dag_started[dag] = time.time()
                    self._meta(active, {f"log.{dag}.start_time": active.dag_started[dag]})
                    self._emit(
                        active,
                        "dag.started",
                        f"DAG {dag} started",
                        dag=dag,
                        data={"queue": dag_queue},
                    )
                case r.DagFinished(dag=dag, status=status):
                    end = time.time()
                    self._meta(
                        active,
                        {
                            f"log.{dag}.end_time": end,
                            f"log.{dag}.duration": end - active.dag_started.get(dag, end),
                        },
                    )
                    self._emit(
                        active,
                        f"dag.{status}",
                        f"DAG {dag} {status}",
                        dag=dag,
                        level="info" if status == "succeeded" else "warning",
                    )
                case r.RunFinished():
                    self._finish(active, command)
                case r.Ignored(reason=reason):
                    self._emit(active, "run.ignored", reason, level="warning")
                case _:
                    raise InternalError(f"unknown command {command!r}")

    def _finish(
        self, active: ActiveRun, command: r.RunFinished, *, event: LogEvent | None = None
    ) -> None:
        """The run has ended: journal and record its end (``event``: as recorded before a
        restart), remove its document, release whoever waits for it."""
        run_id = active.run_id
        ended = time.time()
        if active.keep_data:  # a document about to be removed needs no end time
            self._meta(active, {"end_time": ended, "duration": ended - active.started})
        if event is None:
            level = "info" if command.status == "succeeded" else "error"
            message = (
                f"run of '{active.workflow.name}' {command.status} "
                f"in {ended - active.started:.3f} s"
            )
            event = self._event(
                active,
                f"run.{command.status}",
                message + (f": {command.error}" if command.error else ""),
                level=level,
                data={"duration": ended - active.started, "error": command.error},
            )
        self._journal_append(active, Ended(command.status, command.error), event)
        self._record(event)
        if self._keeper is not None and not active.keep_data:
            self._keeper.submit(
                f"removing the document of run {run_id}", lambda store: store.remove(run_id)
            )
        tasks = {
            dag: {t: s.value for t, s in states.items()} for dag, states in active.run.dags.items()
        }
        self._run_ended(run_id)
        del self._runs[run_id]
        active.handle._finish(
            RunResult(
                run_id,
                active.workflow.name,
                command.status,
                command.error,
                tasks,
                active.failures,
                active.started,
                ended,
            )
        )

    def _meta(self, active: ActiveRun, values: Mapping[str, Any]) -> None:
        """Run times in the document's meta section, as Lightflow keeps them: written when
        the store answers, in order; a failure costs only the times."""
        if self._keeper is not None:
            run_id = active.run_id
            self._keeper.submit(
                f"writing times of run {run_id}",
                lambda store: store.get(run_id).set_many(values, section="meta"),
            )

    def _event(self, active: ActiveRun, kind: str, message: str, **fields: Any) -> LogEvent:
        return LogEvent(
            kind,
            message,
            run=active.run_id,
            workflow=active.workflow.name,
            rule=active.rule,
            **fields,
        )

    def _emit(self, active: ActiveRun, kind: str, message: str, **fields: Any) -> None:
        self._record(self._event(active, kind, message, **fields))

    def _record(self, event: LogEvent) -> None:
        for sink in self._sinks:
            sink(event)


def _document_maker(active: ActiveRun, *, fresh: bool) -> Callable[[Any], None]:
    """The keeper's operation that writes a run's document with its parameters: anew
    (``fresh``: a run that starts over after the daemon died), or only if it is missing
    (a run that resumes keeps what its tasks stored)."""
    run_id, name, params = active.run_id, active.workflow.name, dict(active.params)

    def make(store: Any) -> None:
        if store.exists(run_id):
            if not fresh:
                return
            store.remove(run_id)
        store.add(run_id, {"name": name, "queue": "workflow", "start_time": active.started})
        if params:
            store.get(run_id).set_many(params)

    return make


def _describe(store: Any) -> str:
    """Where a data store is, for people: its URL without the password, or its file."""
    url = getattr(store, "url", None)
    return mask_url_password(url) if url else str(getattr(store, "path", type(store).__name__))


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON-safe values for an event: anything else as its repr."""
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
        for k, v in params.items()
    }
