"""The local executor: runs workflows in a pool of worker processes on this machine.

One thread turns the crank of every run: it waits (never sleeps) on the workers' pipes
and a wake-up pipe, feeds task completions and signals to each run's
:class:`~triggerd.engine.runner.Run`, and performs the commands it returns. Tasks run in
child processes, so a crashing task cannot take the runner down. What tasks print and log
arrives as events (made in the worker) and goes to the executor's sinks as it comes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing.connection as mpc
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from triggerd.errors import InternalError
from triggerd.eventlog.schema import LogEvent
from triggerd.store.factory import StoreSpec

from . import runner as r
from .base import ActiveRun, EventSink, Executor, RunHandle, RunResult
from .job import TaskOutcome
from .journal import Journal, Sent
from .pool import PoolWorker, WorkerConfig, context, spawn_worker

__all__ = ["EventSink", "LocalExecutor", "RunHandle", "RunResult"]


class LocalExecutor(Executor):
    """Runs workflows from ``workflows`` directories in ``workers`` child processes."""

    def __init__(
        self,
        *,
        workflows: list[Path],
        codec_key: bytes,
        store: Any = None,
        store_path: Path | None = None,
        store_spec: StoreSpec | None = None,
        workers: int = 0,
        start_method: str = "forkserver",
        keep_data: bool = False,
        stop_grace: float | None = 10.0,
        on_event: EventSink | None = None,
        log_level: str | None = None,
        log_format: str = "auto",
        give_up_after: float = 43_200.0,
        journal: Journal | None = None,
    ):
        """``log_level``/``log_format``: how worker processes log (as ``log.level`` and
        ``log.format``); by default the level this process's root logger has."""
        super().__init__(
            workflows=workflows,
            store=store,
            keep_data=keep_data,
            stop_grace=stop_grace,
            on_event=on_event,
            give_up_after=give_up_after,
            journal=journal,
        )
        if store_spec is None and store_path is not None:
            store_spec = StoreSpec("sqlite", store_path)
        level = log_level or logging.getLogger().getEffectiveLevel()
        self._worker_config = WorkerConfig(
            codec_key, tuple(self._dirs), store_spec, level, log_format, give_up_after
        )
        self._size = workers or os.cpu_count() or 2
        self._start_method = start_method
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        self._idle: list[PoolWorker] = []
        self._busy: dict[int, PoolWorker] = {}  # by connection fileno
        self._requests: dict[str, PoolWorker] = {}
        self._thread: threading.Thread | None = None
        self._closing = False
        self._ctx: Any = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker processes and the executor thread."""
        self._ctx = context(self._start_method)
        self._start_keeper()
        self._idle = [spawn_worker(self._ctx, self._worker_config) for _ in range(self._size)]
        self._thread = threading.Thread(
            target=self._loop, name="triggerd-local-executor", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every run still going, then the workers; waits up to ``timeout`` seconds."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        self._stop_all(deadline)
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
        self._close_keeper(max(0.1, deadline - time.monotonic()))

    def _with_workers(self, run_id: str) -> int:
        return sum(1 for w in self._busy.values() if w.run_id == run_id)

    def _terminate(self, run_id: str) -> None:
        for worker in list(self._busy.values()):
            if worker.run_id == run_id and not worker.terminated:
                worker.terminated = True
                worker.process.kill()

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
            self._signal(
                worker.run_id, request_id, worker.job.dag, action, payload, task=worker.job.task
            )
        elif message[0] == "events":
            self._task_events(message[1])
        elif message[0] == "done":
            self._task_done(worker, message[1])
        else:
            raise InternalError(f"unknown message from worker {worker.name}: {message[0]!r}")

    def _task_events(self, docs: list[Mapping[str, Any]]) -> None:
        """What a task printed and logged: made in its worker, bound to it already; the
        executor adds only the rule that started the run."""
        for doc in docs:
            event = LogEvent.from_dict(doc)
            active = self._runs.get(event.run or "")
            if active is not None and active.rule is not None and event.rule is None:
                event = dataclasses.replace(event, rule=active.rule)
            for sink in self._sinks:
                sink(event)

    def _task_done(self, worker: PoolWorker, outcome: TaskOutcome) -> None:
        job, run_id = worker.job, worker.run_id
        assert job is not None and run_id is not None
        self._release(worker)
        active = self._runs.get(run_id)
        if active is not None:
            self._outcome(active, job.dag, job.task, outcome)

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
            self._terminated_task(active, job.dag, job.task)
            return
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._lost_task(
            active, job.dag, job.task, f"the worker process running the task died ({how})"
        )

    def _dispatch(self) -> None:
        while not self._closing and (next_job := self._next_job()) is not None:
            worker = self._free_worker()
            if worker is None:
                return
            self._jobs.popleft()
            self._start_on(worker, *next_job)

    def _free_worker(self) -> PoolWorker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
        working = sum(1 for w in self._busy.values() if not w.joining)
        if working < self._size:
            return spawn_worker(self._ctx, self._worker_config)
        return None

    def _start_on(self, worker: PoolWorker, active: ActiveRun, command: r.StartTask) -> None:
        worker.stop_flag.value = 0
        worker.job, worker.run_id = active.job(command), active.run_id
        self._busy[worker.conn.fileno()] = worker
        # After a crash the task counts as interrupted: run again only if idempotent.
        self._journal_append(active, Sent(command.dag, command.task, worker.name, active.attempt))
        self._emit(
            active,
            "task.started",
            f"{command.task} started on {worker.name}",
            dag=command.dag,
            task=command.task,
            data={"worker": worker.name},
        )
        try:
            worker.conn.send(worker.job)
        except OSError:
            self._lost(worker)

    # -- the transport of the runner's commands -----------------------------------------------

    def _reply(self, request_id: str, payload: dict[str, Any]) -> None:
        worker = self._requests.pop(request_id, None)
        if worker is not None:
            worker.waiting.discard(request_id)
            worker.joining = False
            worker.conn.send(("reply", request_id, payload))

    def _stop_tasks(self, run_id: str, dags: tuple[str, ...]) -> None:
        for worker in self._busy.values():
            if worker.run_id == run_id and worker.job and worker.job.dag in dags:
                worker.stop_flag.value = 1
