"""The Celery worker of triggerd: it runs ``triggerd.execute_task`` jobs.

A job names the workflow, DAG and task (:mod:`triggerd.engine.protocol`: its format, and
the check of its seal before anything of it is read); the worker resolves the code from
its own workflows directory and runs :func:`~triggerd.engine.job.execute_task`, the very
function the local pool runs, so "works locally" means "works on the cluster". Task
data inside a job stays the codec's signed bytes until ``execute_task`` verifies it.

Jobs are acknowledged late and rejected when their worker is lost, so Celery delivers
them again after ``celery.visibility_timeout``; the runner ignores the second completion.
The runner learns how a task ended from Redis, never from Celery's result; Celery's
state (result backend, ``celery events``, Flower) still says it: SUCCESS, FAILURE
(:class:`~triggerd.engine.protocol.TaskFailed`) or REVOKED
(:class:`~triggerd.engine.protocol.TaskStopped`), under the job's shadow name
``workflow/dag/task``.

What a task prints and logs becomes its events (:mod:`triggerd.engine.capture`),
appended in batches to the Redis events stream, the last of them before the task's
``done`` message, so a reader of the stream sees a task's output before its end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import redis
from celery import Celery
from celery.exceptions import Ignore

from triggerd.config import Settings
from triggerd.eventlog.schema import LogEvent
from triggerd.health import patiently
from triggerd.log import get_logger
from triggerd.store.factory import store_spec

from .capture import EventBatcher, let_task_records_through
from .codec import Codec, PayloadRejected
from .job import (
    TaskJob,
    TaskOutcome,
    WorkflowCache,
    document_for,
    execute_task,
    outcome_without_document,
    worker_hostname,
)
from .keys import wait_for_hmac_key
from .protocol import TASK_NAME, TaskFailed, TaskStopped, celery_app, parse_job
from .redis_channel import (
    EVENTS_MAXLEN,
    EventStream,
    Heartbeats,
    RedisChannel,
    claim,
    connect,
    delivery_done,
    finish,
    start,
    still_running,
)

__all__ = ["WorkerSide", "run_worker", "worker_app", "worker_argv"]

_log = get_logger(__name__)
_T = TypeVar("_T")


class _Opened(NamedTuple):
    """What a worker process opens once and all its tasks share."""

    workflows: WorkflowCache
    store: Any
    client: redis.Redis
    heartbeats: Heartbeats
    events: EventBatcher


class WorkerSide:
    """What a worker process keeps between tasks, opened on its first task.

    Lazily and per process id: prefork children are forked from the main worker process,
    and no SQLite connection, MongoClient or Redis socket may cross a fork.
    ``events_maxlen`` bounds the Redis events stream (see :class:`EventStream`).
    """

    def __init__(self, settings: Settings, *, events_maxlen: int = EVENTS_MAXLEN):
        self._settings = settings
        self._events_maxlen = events_maxlen
        self._store_spec = store_spec(settings)
        self._lock = threading.Lock()
        self._pid = -1
        self._codec = Codec(wait_for_hmac_key(settings))
        self._opened: _Opened | None = None

    def _open(self) -> _Opened:
        with self._lock:
            if self._pid != os.getpid():
                workflows = WorkflowCache(self._settings.paths.workflows, validate=False)
                # Not opened here: a store that is down is waited for by each task.
                store = self._store_spec.create(self._codec)
                client = connect(self._settings.celery.broker_url)
                stream = EventStream(client, codec=self._codec, maxlen=self._events_maxlen)
                self._opened = _Opened(
                    workflows, store, client, Heartbeats(client), EventBatcher(stream.append)
                )
                let_task_records_through()
                self._pid = os.getpid()
            assert self._opened is not None
            return self._opened

    def execute(self, message: Any, hostname: str, delivery_id: str) -> str:
        """Run one job, push its outcome to the runner, then end as Celery should record it:
        returns ``"succeeded"``; raises :class:`TaskFailed` (failed, or the job was refused),
        :class:`TaskStopped` (stopped or aborted), or ``Ignore`` for a delivery that was
        dropped (the job's state is its other delivery's, not this one's).

        ``delivery_id`` is Celery's task id, the same for every delivery of one job: a
        second delivery means the worker that had it was lost mid-task. While Redis is
        unreachable, the job's messages to the runner wait and are sent again (up to
        ``executor.give_up_after``): an outage delays a completion, it does not lose it.
        """
        opened = self._open()
        job, inbox = self._accept(message, hostname, delivery_id, opened.events)
        now = time.time()
        redelivered, stopped = self._claim(opened.client, job, delivery_id)
        if stopped:
            # Stopped while queued, or a redelivery of a job whose run has ended.
            outcome = TaskOutcome(
                "stopped", (), None, "stopped before it started", started=now, ended=now
            )
        elif redelivered and not _idempotent(opened.workflows, job):
            reason = (
                f"the worker running task '{job.task}' was lost mid-task, and the task is not "
                "idempotent (idempotent=False), so it was not run again"
            )
            outcome = TaskOutcome("failed", message=reason, started=now, ended=now)
        else:
            outcome = self._start_and_run(
                job, inbox, opened, hostname, delivery_id, redelivered=redelivered, now=now
            )
        self._until_sent(
            "telling the runner how the task ended",
            lambda: finish(opened.client, self._codec, inbox, job, outcome, hostname, delivery_id),
        )
        _log.debug(
            "task ended", run=job.run_id, dag=job.dag, task=job.task, outcome=outcome.outcome
        )
        return _as_celery_records_it(job, outcome)

    def _accept(
        self, message: Any, hostname: str, delivery_id: str, events: EventBatcher
    ) -> tuple[TaskJob, str]:
        """The job and its runner's inbox, if the message is a job of ours to run; else the
        refusal is reported and :class:`TaskFailed` raised."""
        try:
            return parse_job(message, self._codec, delivery_id)
        except PayloadRejected as exc:
            self._refuse(message, exc, hostname, delivery_id, events)
            raise TaskFailed(f"the job was refused and nothing of it ran: {exc}") from None

    def _claim(self, client: redis.Redis, job: TaskJob, delivery_id: str) -> tuple[bool, bool]:
        """Take the job: whether it was delivered before (its worker was lost mid-task) and
        whether its run was stopped; ``Ignore`` if another worker runs it or has run it."""
        status, stopped = self._until_sent(
            "claiming the job", lambda: claim(client, self._codec, delivery_id, job)
        )
        if status == "again" and self._until_sent(
            "asking who runs the job",
            lambda: still_running(client, delivery_id) or delivery_done(client, delivery_id),
        ):
            status = "done"  # another worker is at it, or finished while we watched
        if status == "done":
            # Celery gives a job out again once it is unacknowledged for
            # celery.visibility_timeout, even while its worker is busy with it, and when a
            # worker's connection to Redis broke. Running it twice would be wrong; the
            # worker that has it reports it.
            _log.warning(
                "a job already finished or still running elsewhere was delivered again: "
                "dropped (does the task run longer than celery.visibility_timeout?)",
                run=job.run_id,
                dag=job.dag,
                task=job.task,
            )
            raise Ignore()
        return status == "again", stopped

    def _start_and_run(
        self,
        job: TaskJob,
        inbox: str,
        opened: _Opened,
        hostname: str,
        delivery_id: str,
        *,
        redelivered: bool,
        now: float,
    ) -> TaskOutcome:
        """Tell the runner the task started, run it with a heartbeat, and send what it
        printed; its outcome, a failure saying so if triggerd itself failed running it."""
        self._until_sent(
            "telling the runner the task started",
            lambda: start(
                opened.client,
                self._codec,
                inbox,
                job,
                hostname,
                delivery_id,
                redelivered=redelivered,
            ),
        )
        with opened.heartbeats.running(delivery_id):
            try:
                outcome = self._run(job, inbox, opened, hostname)
            except Exception as exc:  # noqa: BLE001 - our bug: still say how the task ended
                _log.exception(
                    "triggerd failed running a task", run=job.run_id, dag=job.dag, task=job.task
                )
                outcome = TaskOutcome(
                    "failed",
                    message=f"internal error running the task: {type(exc).__name__}: {exc}",
                    started=now,
                    ended=time.time(),
                )
        # What the task printed before it ended, however it ended, and before its end.
        self._until_sent("sending the task's output", opened.events.flush)
        return outcome

    def _refuse(
        self,
        message: Any,
        exc: PayloadRejected,
        hostname: str,
        delivery_id: str,
        events: EventBatcher,
    ) -> None:
        """A job that is not ours to run: nothing of it runs; a log line and an event say so.
        What it claims to be is shown as claimed (unverified), shortened."""
        claims = (
            {k: str(message.get(k))[:200] for k in ("run_id", "workflow", "dag", "task")}
            if isinstance(message, dict)
            else {}
        )
        _log.error(
            "a job was refused and nothing of it ran",
            reason=str(exc),
            delivery=delivery_id,
            claims=claims,
        )
        events(
            LogEvent(
                "job.refused",
                f"a job was refused and nothing of it ran: {exc}",
                level="error",
                worker=hostname,
                data={"delivery": delivery_id, "claims": claims},
            )
        )
        self._until_sent("reporting a refused job", events.flush)

    def _until_sent(self, what: str, send: Callable[[], _T]) -> _T:
        """``send()``, again while Redis cannot be reached, for up to ``executor.give_up_after``."""
        return patiently(
            send,
            away=lambda exc: isinstance(exc, redis.RedisError),
            give_up_after=self._settings.executor.give_up_after,
            max_backoff=5.0,
            on_first=lambda exc: _log.warning(
                "Redis unreachable: the worker waits for it", doing=what, error=str(exc)
            ),
        )

    def _run(self, job: TaskJob, inbox: str, opened: _Opened, hostname: str) -> TaskOutcome:
        channel = RedisChannel(
            opened.client,
            run_id=job.run_id,
            dag=job.dag,
            inbox=inbox,
            codec=self._codec,
            timeout=self._settings.celery.signal_timeout,
            task=job.task,
            attempt=job.attempt,
        )
        give_up_after = self._settings.executor.give_up_after
        try:
            document = document_for(job, opened.store, give_up_after=give_up_after)
        except Exception as exc:  # noqa: BLE001 - reported as the task's failure, saying why
            return outcome_without_document(exc, self._store_spec.describe())
        return execute_task(
            job,
            workflows=opened.workflows,
            codec=self._codec,
            channel=channel,
            store=document,
            hostname=hostname,
            emit=opened.events,
        )


def _as_celery_records_it(job: TaskJob, outcome: TaskOutcome) -> str:
    """End as Celery should record the task, once the runner has been told how it ended.

    A task that ends in an exception is what Celery records as a failure. Nothing
    listens to Celery's result (the runner learns from Redis)."""
    if outcome.outcome == "failed":
        raise TaskFailed(outcome.message or f"task '{job.task}' failed")
    if outcome.outcome in ("stopped", "aborted"):
        raise TaskStopped(
            f"{outcome.outcome}: {outcome.message}" if outcome.message else outcome.outcome
        )
    return outcome.outcome


def _idempotent(workflows: WorkflowCache, job: TaskJob) -> bool:
    """The task's ``idempotent`` flag; True if it cannot be looked up (running it reports why)."""
    try:
        return bool(
            workflows.get(job.workflow, job.content_hash).task(job.blueprint, job.task).idempotent
        )
    except Exception:  # noqa: BLE001 - execute_task reports the lookup's error properly
        return True


def worker_app(settings: Settings) -> Celery:
    """The app a worker runs: :func:`celery_app` plus the ``triggerd.execute_task`` task."""
    app = celery_app(settings.celery)
    side = WorkerSide(settings)

    # throws: expected endings, logged by Celery as one INFO line (the event log has the rest).
    @app.task(name=TASK_NAME, bind=True, throws=(TaskFailed, TaskStopped))
    def execute(self: Any, message: dict[str, Any]) -> str:
        return side.execute(message, self.request.hostname or worker_hostname(), self.request.id)

    return app


def worker_argv(
    queues: Sequence[str],
    *,
    concurrency: int | None = None,
    name: str | None = None,
    loglevel: str = "info",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``celery worker`` command line; ``extra`` goes through untouched (any Celery option)."""
    argv = ["worker", "-Q", ",".join(queues)]
    if concurrency is not None:
        argv += ["-c", str(concurrency)]
    if name is not None:
        argv += ["-n", name]
    if not any(arg in ("-l", "--loglevel") or arg.startswith("--loglevel=") for arg in extra):
        argv += ["--loglevel", loglevel.upper()]
    return [*argv, *extra]


def run_worker(settings: Settings, argv: Sequence[str]) -> int:
    """Run a Celery worker in this process until it is told to stop (SIGTERM, Ctrl-C);
    returns its exit status: 1 after an unrecoverable error, so systemd restarts it.

    What ``app.worker_main`` does, minus its loss of the status: ``celery worker`` ends
    with ``ctx.exit(worker.exitcode)``, which click (standalone_mode=False) returns from
    ``main``, and ``Celery.start`` drops.
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = worker_app(settings)  # the --app option
    try:
        return celery_command.main(args=list(argv), standalone_mode=False) or 0
    finally:
        celery_command.params[0].default = None
