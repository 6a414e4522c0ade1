"""The local executor: runs workflows in a pool of worker processes on this machine.

One thread turns the crank of every run: it waits (never sleeps) on the workers' pipes
and a wake-up pipe, feeds task completions and signals to each run's
:class:`~triggerd.engine.runner.Run`, and performs the commands it returns. Tasks run in
child processes, so a crashing task cannot take the runner down.
"""

from __future__ import annotations

import collections
import multiprocessing.connection as mpc
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triggerd.errors import InternalError
from triggerd.eventlog.schema import LogEvent, new_id
from triggerd.flow.workflow import Workflow

from . import runner as r
from .codec import Codec
from .job import TaskJob, TaskOutcome, WorkflowCache
from .pool import PoolWorker, WorkerConfig, context, spawn_worker

__all__ = ["LocalExecutor", "RunHandle", "RunResult"]

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
class _ActiveRun:
    handle: RunHandle
    workflow: Workflow
    run: r.Run
    keep_data: bool
    rule: str | None
    started: float = field(default_factory=time.time)
    dag_started: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)


class LocalExecutor:
    """Runs workflows from ``workflows`` directories in ``workers`` child processes."""

    def __init__(
        self,
        *,
        workflows: list[Path],
        codec_key: bytes,
        store: Any = None,
        store_path: Path | None = None,
        workers: int = 0,
        start_method: str = "forkserver",
        keep_data: bool = False,
        stop_grace: float | None = 10.0,
        on_event: EventSink | None = None,
    ):
        self._dirs = [Path(d) for d in workflows]
        self._codec = Codec(codec_key)
        self._store = store
        self._worker_config = WorkerConfig(codec_key, tuple(self._dirs), store_path)
        self._size = workers or os.cpu_count() or 2
        self._start_method = start_method
        self._keep_data = keep_data
        self._stop_grace = stop_grace
        self._sinks: list[EventSink] = [on_event] if on_event else []
        self._workflows = WorkflowCache(self._dirs)
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        self._runs: dict[str, _ActiveRun] = {}
        self._jobs: collections.deque[tuple[str, r.StartTask]] = collections.deque()
        self._idle: list[PoolWorker] = []
        self._busy: dict[int, PoolWorker] = {}  # by connection fileno
        self._requests: dict[str, PoolWorker] = {}
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._closing = False
        self._ctx: Any = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker processes and the executor thread."""
        self._ctx = context(self._start_method)
        self._idle = [spawn_worker(self._ctx, self._worker_config) for _ in range(self._size)]
        self._thread = threading.Thread(target=self._loop, name="triggerd-local-executor", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every run still going, then the workers; waits up to ``timeout`` seconds."""
        if self._thread is None:
            return
        for run_id in self.active_runs():
            self.stop_run(run_id, "executor shutting down")
        deadline = time.monotonic() + timeout
        for active in list(self._runs.values()):
            active.handle._done.wait(max(0.0, deadline - time.monotonic()))
        for timer in self._timers:
            timer.cancel()
        self._call(self._shutdown)
        self._thread.join(max(0.1, deadline - time.monotonic()))
        for worker in [*self._idle, *self._busy.values()]:
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        self._thread = None

    def __enter__(self) -> LocalExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    # -- API (any thread) -----------------------------------------------------------------

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
        active = _ActiveRun(handle, loaded, r.Run(shapes), keep, rule)
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

    def _terminate(self, run_id: str) -> None:
        for worker in list(self._busy.values()):
            if worker.run_id == run_id and not worker.terminated:
                worker.terminated = True
                worker.process.kill()

    def active_runs(self) -> list[str]:
        return list(self._runs.copy())  # dict.copy is atomic under the GIL; iteration is not

    # -- the executor thread ----------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        with self._wake_lock:
            if self._wake_w < 0:
                return  # closed (e.g. a stop timer firing after close): nothing left to do
            self._inbox.put(fn)
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        while not self._closing:
            conns: list[Any] = [self._wake_r, *(w.conn for w in self._busy.values())]
            conns += [w.process.sentinel for w in self._busy.values()]
            for ready in mpc.wait(conns):
                if ready == self._wake_r:
                    os.read(self._wake_r, 4096)
                    while not self._inbox.empty():
                        self._inbox.get()()
                elif isinstance(ready, int):
                    self._reap_dead(ready)
                else:
                    self._receive(ready)
            self._dispatch()

    def _shutdown(self) -> None:
        self._closing = True
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass

    def _begin(self, active: _ActiveRun, params: Mapping[str, Any]) -> None:
        run_id = active.handle.run_id
        self._runs[run_id] = active
        self._emit(active, "run.started", f"run of '{active.workflow.name}' started", data={"params": _jsonable(params)})
        self._perform(active, active.run.start())

    def _feed(self, run_id: str, event: r.Event) -> None:
        active = self._runs.get(run_id)
        if active is not None:
            self._perform(active, active.run.handle(event))

    def _receive(self, conn: Any) -> None:
        worker = self._busy.get(conn.fileno())
        if worker is None:
            return
        try:
            message = conn.recv()
        except (EOFError, OSError):
            self._lost(worker)
            return
        if message[0] == "signal":
            _, request_id, action, payload = message
            worker.waiting.add(request_id)
            worker.joining = action == "join_dags"
            self._requests[request_id] = worker
            assert worker.job is not None and worker.run_id is not None
            self._feed(worker.run_id, r.SignalReceived(request_id, worker.job.dag, action, payload))
        elif message[0] == "done":
            self._task_done(worker, message[1])
        else:
            raise InternalError(f"unknown message from worker {worker.name}: {message[0]!r}")

    def _task_done(self, worker: PoolWorker, outcome: TaskOutcome) -> None:
        job, run_id = worker.job, worker.run_id
        assert job is not None and run_id is not None
        self._release(worker)
        active = self._runs.get(run_id)
        if active is None:
            return
        duration = outcome.ended - outcome.started
        if outcome.outcome == "failed":
            active.failures.append({"dag": job.dag, "task": job.task, "error": outcome.message, "traceback": outcome.traceback})
            self._emit(active, "task.failed", f"{job.task} failed: {outcome.message}", dag=job.dag, task=job.task, level="error", data={"duration": duration, "traceback": outcome.traceback})
            self._feed(run_id, r.TaskFailed(job.dag, job.task, outcome.message, outcome.traceback))
        else:
            level = {"aborted": "error", "stopped": "warning"}.get(outcome.outcome, "info")
            text = f"{job.task} {outcome.outcome} in {duration:.3f} s" + (f": {outcome.message}" if outcome.message else "")
            self._emit(active, f"task.{outcome.outcome}", text, dag=job.dag, task=job.task, level=level, data={"duration": duration})
            self._feed(run_id, r.TaskFinished(job.dag, job.task, outcome.outcome, outcome.limit, outcome.data, outcome.message))

    def _release(self, worker: PoolWorker) -> None:
        self._busy.pop(worker.conn.fileno(), None)
        for request_id in worker.waiting:
            self._requests.pop(request_id, None)
        worker.job = worker.run_id = None
        worker.waiting.clear()
        worker.joining = False
        if not self._closing:
            self._idle.append(worker)
        else:
            worker.conn.send(None)

    def _reap_dead(self, sentinel: int) -> None:
        for worker in list(self._busy.values()):
            if worker.process.sentinel == sentinel:
                self._lost(worker)

    def _lost(self, worker: PoolWorker) -> None:
        """A worker died mid-task: the task failed; the process is not reused."""
        self._busy.pop(worker.conn.fileno(), None)
        worker.process.join(1.0)
        code = worker.process.exitcode
        for request_id in worker.waiting:
            self._requests.pop(request_id, None)
        worker.conn.close()
        job, run_id = worker.job, worker.run_id
        if job is None or run_id is None or run_id not in self._runs:
            return
        active = self._runs[run_id]
        if worker.terminated:
            message = f"terminated: still running {self._stop_grace:g} s after its run was stopped"
            self._emit(active, "task.stopped", f"{job.task} {message}", dag=job.dag, task=job.task, level="warning")
            self._feed(run_id, r.TaskFinished(job.dag, job.task, "stopped", (), None, message))
            return
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        message = f"the worker process running the task died ({how})"
        active.failures.append({"dag": job.dag, "task": job.task, "error": message, "traceback": ""})
        self._emit(active, "task.failed", f"{job.task} failed: {message}", dag=job.dag, task=job.task, level="error")
        self._feed(run_id, r.TaskFailed(job.dag, job.task, message))

    def _dispatch(self) -> None:
        while self._jobs and not self._closing:
            run_id, command = self._jobs[0]
            active = self._runs.get(run_id)
            if active is None:
                self._jobs.popleft()
                continue
            if active.run.is_stopped(command.dag):
                self._jobs.popleft()
                self._feed(run_id, r.TaskFinished(command.dag, command.task, "stopped", (), None, "stopped before it started"))
                continue
            worker = self._free_worker()
            if worker is None:
                return
            self._jobs.popleft()
            self._start_on(worker, active, command)

    def _free_worker(self) -> PoolWorker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
        working = sum(1 for w in self._busy.values() if not w.joining)
        if working < self._size:
            return spawn_worker(self._ctx, self._worker_config)
        return None

    def _start_on(self, worker: PoolWorker, active: _ActiveRun, command: r.StartTask) -> None:
        inputs = None
        if command.inputs is not None:
            inputs = tuple((i.name, i.aliases, i.data) for i in command.inputs)
        job = TaskJob(
            active.handle.run_id, active.workflow.name, active.workflow.content_hash,
            command.dag, command.blueprint, command.task, command.queue, inputs, command.dag_data,
        )
        worker.stop_flag.value = 0
        worker.job, worker.run_id = job, active.handle.run_id
        self._busy[worker.conn.fileno()] = worker
        self._emit(active, "task.started", f"{command.task} started on {worker.name}", dag=command.dag, task=command.task, data={"worker": worker.name})
        try:
            worker.conn.send(job)
        except OSError:
            self._lost(worker)

    # -- performing the runner's commands ---------------------------------------------------

    def _perform(self, active: _ActiveRun, commands: list[r.Command]) -> None:
        for command in commands:
            match command:
                case r.StartTask():
                    self._jobs.append((active.handle.run_id, command))
                case r.Reply(request_id=request_id, payload=payload):
                    worker = self._requests.pop(request_id, None)
                    if worker is not None:
                        worker.waiting.discard(request_id)
                        worker.joining = False
                        worker.conn.send(("reply", request_id, dict(payload)))
                case r.StopTasks(dags=dags):
                    for worker in self._busy.values():
                        if worker.run_id == active.handle.run_id and worker.job and worker.job.dag in dags:
                            worker.stop_flag.value = 1
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

    def _finish(self, active: _ActiveRun, command: r.RunFinished) -> None:
        run_id = active.handle.run_id
        ended = time.time()
        if active.keep_data:  # a document about to be removed needs no end time
            self._meta(active, {"end_time": ended, "duration": ended - active.started})
        level = "info" if command.status == "succeeded" else "error"
        message = f"run of '{active.workflow.name}' {command.status} in {ended - active.started:.3f} s"
        self._emit(active, f"run.{command.status}", message + (f": {command.error}" if command.error else ""), level=level, data={"duration": ended - active.started, "error": command.error})
        if self._store is not None and not active.keep_data:
            self._store.remove(run_id)
        tasks = {dag: {t: s.value for t, s in states.items()} for dag, states in active.run.dags.items()}
        del self._runs[run_id]
        active.handle._finish(RunResult(run_id, active.workflow.name, command.status, command.error, tasks, active.failures, active.started, ended))

    def _meta(self, active: _ActiveRun, values: Mapping[str, Any]) -> None:
        if self._store is not None:
            self._store.get(active.handle.run_id).set_many(values, section="meta")

    def _emit(self, active: _ActiveRun, kind: str, message: str, **fields: Any) -> None:
        event = LogEvent(kind, message, run=active.handle.run_id, workflow=active.workflow.name, rule=active.rule, **fields)
        for sink in self._sinks:
            sink(event)


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in params.items()}
