"""The Celery executor: the same runner as locally, its tasks run on Celery workers.

The runner stays in this process (the daemon or ``triggerctl run``), exactly as with
:class:`~triggerd.engine.local.LocalExecutor` (both are :class:`~triggerd.engine.base.Executor`). Only the
transport differs: a ``StartTask`` becomes a Celery job on the task's queue, and the
workers push ``started``/``done``/``signal`` messages onto this executor's Redis inbox.

Two threads: one blocks on ``BLPOP`` of the inbox and hands each message to the other,
the executor thread, which alone owns the runs and turns their cranks. Neither sleeps
in a polling loop; a completion reaches the runner one Redis round trip after the task
ended.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import OperationalError

from triggerd.config import CelerySettings, mask_url_password
from triggerd.errors import BackendUnavailable, InternalError
from triggerd.log import get_logger

from . import runner as r
from .base import ActiveRun, EventSink, Executor, RunHandle, RunResult
from .celery_worker import TASK_NAME, celery_app, job_message, restore_interval
from .job import TaskOutcome
from .redis_channel import (
    HEARTBEAT_TTL,
    KEY_TTL,
    RUN_WIDE,
    alive,
    connect,
    connect_once,
    decode_outcome,
    inbox_key,
    mark_stopped,
    presence_key,
    push,
    unb64,
)

__all__ = ["CeleryExecutor", "RunHandle", "RunResult"]

_log = get_logger(__name__)
_Key = tuple[str, str, str]  # run id, DAG running name, task
_BLPOP_TIMEOUT = 5.0  # only bounds how long a lost Redis connection goes unnoticed


class CeleryExecutor(Executor):
    """Runs workflows from ``workflows`` directories on the Celery workers of ``celery``.

    It takes no HMAC key: the runner never opens task data (it only passes the signed
    bytes from one task to the next); workers sign and verify with the shared key.
    """

    def __init__(
        self,
        *,
        workflows: list[Path],
        celery: CelerySettings,
        store: Any = None,
        keep_data: bool = False,
        stop_grace: float | None = 10.0,
        on_event: EventSink | None = None,
    ):
        super().__init__(workflows=workflows, store=store, keep_data=keep_data, stop_grace=stop_grace, on_event=on_event)
        self._settings = celery
        self._id = uuid.uuid4().hex
        self._inbox_key = inbox_key(self._id)
        self._presence_key = presence_key(self._id)
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._running: dict[_Key, str] = {}  # job -> Celery task id
        self._started: set[_Key] = set()  # jobs a worker said it started
        self._silent: dict[_Key, float] = {}  # started jobs without a heartbeat: since when
        # A lost worker's job comes back within the visibility timeout plus a sweep; a job
        # silent for longer than that will not come back: it has failed.
        self._lost_after = celery.visibility_timeout + restore_interval(celery.visibility_timeout) + HEARTBEAT_TTL + 5.0
        self._requests: dict[str, str] = {}  # signal request id -> reply key
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._app: Any = None
        self._redis: redis.Redis | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Redis (failing here if it is down) and start both threads."""
        self._app = celery_app(self._settings, name=f"triggerd-runner-{self._id[:8]}")
        self._redis = connect(self._settings.broker_url)
        try:
            self._redis.set(self._presence_key, "1", ex=KEY_TTL)
        except redis.RedisError as exc:
            raise BackendUnavailable(
                f"cannot reach Redis at {mask_url_password(self._settings.broker_url)} ({exc}): "
                "start it, or set celery.broker_url (or executor.kind = \"local\")"
            ) from exc
        self._threads = [
            threading.Thread(target=self._loop, name="triggerd-celery-executor", daemon=True),
            threading.Thread(target=self._listen, name="triggerd-celery-inbox", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every run still going, then both threads; waits up to ``timeout`` seconds."""
        if not self._threads:
            return
        deadline = time.monotonic() + timeout
        self._stop_all(deadline)
        self._closing.set()
        self._calls.put(None)
        assert self._redis is not None
        last_word = connect_once(self._settings.broker_url)  # Redis may be down: no retries now
        try:
            push(last_word, self._inbox_key, {"type": "wake"})  # ends the BLPOP at once
        except redis.RedisError:
            pass  # the listener notices the closing flag within _BLPOP_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        try:
            last_word.delete(self._inbox_key, self._presence_key)
        except redis.RedisError:
            pass
        last_word.close()
        self._redis.close()
        self._app.close()
        self._threads = []

    # -- the two threads ------------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        if not self._closing.is_set():
            self._calls.put(fn)

    def _loop(self) -> None:
        while (fn := self._calls.get()) is not None:
            try:
                fn()
                self._dispatch()
            except Exception:  # noqa: BLE001 - one bad message must not stop every run
                _log.exception("celery executor: error while handling a message")

    def _listen(self) -> None:
        """Block on the inbox; hand every message to the executor thread.

        Once a second at most (and whenever the inbox was quiet for ``_BLPOP_TIMEOUT``) it
        also renews this executor's presence key. Finding it gone means Redis restarted
        without its data (no persistence): queued jobs and unread completions are lost,
        so the tasks still outstanding fail instead of being waited for forever.
        """
        assert self._redis is not None
        next_check = 0.0
        while not self._closing.is_set():
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 1.0
                    if not self._redis.expire(self._presence_key, KEY_TTL):
                        self._redis.set(self._presence_key, "1", ex=KEY_TTL)
                        self._call(self._broker_lost)
                    self._call(self._check_workers)
                popped = self._redis.blpop([self._inbox_key], timeout=_BLPOP_TIMEOUT)
            except redis.RedisError as exc:
                _log.warning("celery executor: Redis unreachable, retrying", error=str(exc))
                self._closing.wait(1.0)  # back-off before reconnecting, not a poll
                continue
            if popped is None:
                continue
            try:
                message = json.loads(popped[1])
            except ValueError:
                _log.error("celery executor: a message on the inbox is not JSON", message=popped[1][:200])
                continue
            self._call(lambda m=message: self._on_message(m))

    # -- the executor thread ----------------------------------------------------------------

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "wake":
            return
        run_id, dag, task = message["run_id"], message["dag"], message.get("task", "")
        active = self._runs.get(run_id)
        if kind == "started":
            if active is not None and (run_id, dag, task) in self._running:
                self._started.add((run_id, dag, task))
                self._silent.pop((run_id, dag, task), None)
                worker = message["worker"]
                if message.get("redelivered"):
                    text = f"{task} started again on {worker}: the worker that had it was lost mid-task"
                    self._emit(active, "task.retried", text, dag=dag, task=task, level="warning", data={"worker": worker})
                else:
                    self._emit(active, "task.started", f"{task} started on {worker}", dag=dag, task=task, data={"worker": worker})
        elif kind == "done":
            self._task_done(run_id, dag, task, decode_outcome(message["outcome"]))
        elif kind == "signal":
            if active is None:  # the run has ended: answer now rather than let it time out
                error = {"error": f"run {run_id} has ended", "error_type": "RequestFailed"}
                self._redis_call(push, message["reply_to"], error)
                return
            payload = dict(message["payload"])
            if isinstance(payload.get("data"), str):
                payload["data"] = unb64(payload["data"])  # signed bytes, opaque to the runner
            self._requests[message["request_id"]] = message["reply_to"]
            self._signal(run_id, message["request_id"], dag, message["action"], payload, task=task or None)
        else:
            raise InternalError(f"unknown message on the executor's inbox: {kind!r}")

    def _task_done(self, run_id: str, dag: str, task: str, outcome: TaskOutcome) -> None:
        active = self._runs.get(run_id)
        if active is None:
            return  # a late completion of a run that has ended (e.g. a redelivery)
        if self._running.pop((run_id, dag, task), None) is None:
            # A job Celery delivered twice, or one given up on after the stop grace.
            self._emit(active, "run.ignored", f"late or duplicate completion of {dag}/{task}", level="warning")
            return
        self._outcome(active, dag, task, outcome)

    def _check_workers(self) -> None:
        """Fail started jobs whose worker has gone silent for longer than a redelivery takes."""
        self._started &= self._running.keys()
        for key in [k for k in self._silent if k not in self._started]:
            del self._silent[key]
        keys = list(self._started)
        try:
            flags = alive(self._redis, [self._running[k] for k in keys])  # type: ignore[arg-type]
        except redis.RedisError:
            return  # the listener reports the outage
        now = time.monotonic()
        for key, running in zip(keys, flags, strict=True):
            if running:
                self._silent.pop(key, None)
            elif now - self._silent.setdefault(key, now) > self._lost_after:
                del self._running[key]
                self._started.discard(key)
                del self._silent[key]
                active = self._runs.get(key[0])
                if active is not None:
                    message = f"its worker was lost and the job was not delivered again within {self._lost_after:g} s"
                    self._lost_task(active, key[1], key[2], message)

    def _broker_lost(self) -> None:
        """Redis came back empty: every job sent and not yet done may be gone."""
        message = (
            "Redis restarted without its data (no persistence) while the task was queued or "
            "running: its job or its completion is lost (run Redis with appendonly yes to "
            "keep queued work across a restart)"
        )
        lost = list(self._running)
        _log.error("celery executor: Redis lost its data", outstanding_tasks=len(lost))
        for key in lost:
            del self._running[key]
            active = self._runs.get(key[0])
            if active is not None:
                self._lost_task(active, key[1], key[2], message)

    def _terminate(self, run_id: str) -> None:
        """The stop grace is over: revoke the run's jobs and count them as stopped."""
        for key in [k for k in self._running if k[0] == run_id]:
            task_id = self._running.pop(key)
            try:
                self._app.control.revoke(task_id, terminate=True, signal="SIGKILL")
            except OperationalError as exc:
                _log.warning("celery executor: cannot revoke", task_id=task_id, error=str(exc))
            active = self._runs.get(run_id)
            if active is not None:
                self._terminated_task(active, key[1], key[2])

    def _dispatch(self) -> None:
        """Send the queued jobs (Celery queues them; a stopped DAG's jobs end at once)."""
        while (next_job := self._next_job()) is not None:
            self._jobs.popleft()
            self._send(*next_job)

    def _send(self, active: ActiveRun, command: r.StartTask) -> None:
        run_id = active.run_id
        task_id = uuid.uuid4().hex
        self._running[(run_id, command.dag, command.task)] = task_id
        try:
            self._app.send_task(
                TASK_NAME, args=[job_message(active.job(command), self._inbox_key)], task_id=task_id,
                queue=command.queue, routing_key=command.queue,
                # What Flower and worker logs show instead of a message full of base64.
                shadow=f"{active.workflow.name}/{command.dag}/{command.task}",
                argsrepr=repr({"run_id": run_id, "workflow": active.workflow.name, "dag": command.dag, "task": command.task}),
            )  # fmt: skip
        except OperationalError as exc:
            del self._running[(run_id, command.dag, command.task)]
            self._lost_task(active, command.dag, command.task, f"the Celery broker is unreachable ({exc}): the task was not sent")

    # -- the transport of the runner's commands -----------------------------------------------

    def _reply(self, request_id: str, payload: dict[str, Any]) -> None:
        reply_to = self._requests.pop(request_id, None)
        if reply_to is not None:
            self._redis_call(push, reply_to, payload)

    def _stop_tasks(self, run_id: str, dags: tuple[str, ...]) -> None:
        self._redis_call(mark_stopped, run_id, dags)

    def _run_ended(self, run_id: str) -> None:
        # A job of this run that Celery delivers again later finds the run stopped.
        self._redis_call(mark_stopped, run_id, (RUN_WIDE,))
        for key in [k for k in self._running if k[0] == run_id]:
            del self._running[key]

    def _redis_call(self, fn: Callable[..., None], *args: Any) -> None:
        """A write to Redis that must not take the executor thread down when Redis is away;
        the task waiting for it gets SignalTimeout (a reply) or sees no stop (a flag)."""
        assert self._redis is not None
        try:
            fn(self._redis, *args)
        except redis.RedisError as exc:
            _log.error("celery executor: Redis write failed", call=fn.__name__, error=str(exc))
