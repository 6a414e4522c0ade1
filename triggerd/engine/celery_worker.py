"""The Celery app of triggerd and the one task its workers run: ``triggerd.execute_task``.

The submitter (daemon or ``triggerctl run``) and the workers build the same app from
settings. A job message is JSON (never pickle: a broker writer must not reach an
unpickler) naming the workflow, DAG and task, sealed with the HMAC key over every field
and its Celery task id (a forged, altered or replayed job is refused before anything is
read from it, :func:`parse_job`); the worker resolves the code from its own
workflows directory and runs :func:`~triggerd.engine.job.execute_task`, the very
function the local pool runs, so "works locally" means "works on the cluster". Task
data inside a job stays the codec's signed bytes until ``execute_task`` verifies it.

Jobs are acknowledged late and rejected when their worker is lost, so Celery delivers
them again after ``celery.visibility_timeout``; the runner ignores the second completion.
The runner learns how a task ended from Redis, never from Celery's result; Celery's
state (result backend, ``celery events``, Flower) still says it: SUCCESS, FAILURE
(:class:`TaskFailed`) or REVOKED (:class:`TaskStopped`), under the job's shadow name
``workflow/dag/task``.

What a task prints and logs becomes its events (:mod:`triggerd.engine.capture`),
appended in batches to the Redis events stream, the last of them before the task's
``done`` message, so a reader of the stream sees a task's output before its end.
"""

from __future__ import annotations

import inspect
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from celery import Celery
from celery.app.amqp import AMQP
from celery.exceptions import Ignore, Terminated
from kombu.transport import redis as kombu_redis

from triggerd.config import CelerySettings, Settings
from triggerd.errors import TriggerdError
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
from .redis_channel import (
    EVENTS_MAXLEN,
    EventStream,
    Heartbeats,
    RedisChannel,
    b64,
    claim,
    connect,
    delivery_done,
    finish,
    start,
    still_running,
    unb64,
)

__all__ = [
    "DEFAULT_QUEUES",
    "MESSAGE_VERSION",
    "TASK_NAME",
    "TaskFailed",
    "TaskStopped",
    "WorkerSide",
    "celery_app",
    "job_message",
    "parse_job",
    "restore_interval",
    "run_worker",
    "worker_app",
    "worker_argv",
]

TASK_NAME = "triggerd.execute_task"
# Lightflow's queues. The runner lives in the submitting process, so only 'task' (and
# the queues tasks name themselves) carry jobs; a worker still consumes all three, so a
# deployment written for Lightflow keeps working unchanged.
DEFAULT_QUEUES = ("task", "dag", "workflow")
MESSAGE_VERSION = 3  # 3: sealed, and names its Celery task id; 2: the run's attempt
JOB = "job"  # what a job message is sealed as (Codec.seal's kind)
_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")

_log = get_logger(__name__)
_T = TypeVar("_T")
_KEY_WAIT_REMINDER = 30.0  # seconds between two log lines of a worker waiting for the key


class TaskFailed(TriggerdError):
    """Raised by ``triggerd.execute_task`` once the runner knows that its task failed (or
    that its job was refused), so that Celery records FAILURE: in its result backend,
    ``celery events`` and Flower. Expected (the task's ``throws``): Celery logs it as one
    INFO line without a traceback, acknowledges the job and does not retry it."""


class TaskStopped(TriggerdError, Terminated):
    """Raised by ``triggerd.execute_task`` once the runner knows that its task was stopped
    or aborted. A worker announces a task that ended with ``Terminated`` as revoked: Celery
    records REVOKED (a ``task-revoked`` event) and acknowledges the job, as for a task
    that ``celery control revoke --terminate`` ended."""


_AS_TASK_V2 = inspect.signature(AMQP.as_task_v2)


class _ShadowNamedAmqp(AMQP):
    """Celery, except that a job's ``task-sent`` event names it by its shadow name, as the
    worker's events do: otherwise Flower shows a job no worker has taken yet (and any job
    whose ``task-sent`` event arrives after the worker's) as ``triggerd.execute_task``."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(*args, **kwargs)
        shadow = _AS_TASK_V2.bind(self, *args, **kwargs).arguments.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


def celery_app(celery: CelerySettings, *, name: str = "triggerd") -> Celery:
    """An app configured for triggerd; connects to nothing until used."""
    _closed_channel_raises_connection_error()
    app = Celery(name, set_as_current=False, amqp=_ShadowNamedAmqp)
    app.conf.update(
        broker_url=celery.broker_url,
        result_backend=celery.result_backend,
        task_ignore_result=celery.result_backend is None,
        # JSON only: the worker must never unpickle what a broker writer put there.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A job is acknowledged when it has ended, and given back if its worker dies, so
        # a lost worker means a repeated task, never a lost one.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": celery.visibility_timeout,
            # How often workers look for jobs of lost workers to deliver again. Kombu's
            # default sweeps every 10 s x 10 (throttle) = 100 s; this makes a lost job come
            # back within visibility_timeout plus at most 10 s.
            "unacked_restore_interval": restore_interval(celery.visibility_timeout),
            "unacked_restore_throttle": 1,
        },
        task_time_limit=celery.task_timeout,
        task_default_queue=DEFAULT_QUEUES[0],
        # Flower and `celery events` need these.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        # Reconnect for as long as Redis is away. Celery's default, 100 tries, gives up
        # after about 46 minutes and the worker exits.
        broker_connection_max_retries=None,
        # triggerd's logging (structlog, JSON or console) formats Celery's records too,
        # and a task's print() is information, not a warning.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts_level="INFO",
    )
    return app


def _closed_channel_raises_connection_error() -> None:
    """Make kombu's Redis channel raise a connection error, not AttributeError, when it
    is used after its connection was closed.

    When Redis goes away while a job runs (acks_late: its message is unacknowledged),
    Celery 5.6.3+ (celery/celery#10242) collects the broken connection, which detaches its
    transport (``transport.client = None``), then closes it; closing the channel gives the
    unacknowledged message back (kombu ``virtual.Channel.close`` ->
    ``QoS.restore_unacked_once``), which opens a new pool from
    ``transport.client.hostname``: AttributeError, which Celery does not expect there, so
    the worker stopped ("Unrecoverable error") instead of reconnecting. The ack of that
    job, when it ends, took the same path. As a connection error both are what they are:
    the message cannot be given back or acknowledged on that connection; it stays in
    Redis's unacked index and comes back after visibility_timeout, which a worker
    recognises (see WorkerSide.execute).

    Not fixed upstream as of kombu 5.7.0 / celery 5.7.0 (the same trace: kombu#970,
    kombu#582); celery 5.6.2 did not close twice but hangs on reconnect (celery#9705).
    tests/faults/test_outages.py stops Redis under workers with jobs in flight.
    """
    connparams = kombu_redis.Channel._connparams
    if getattr(connparams, "triggerd_patch", False):
        return  # done once per process, by the first app made

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError("this broker channel's connection was closed")
        return connparams(self, asynchronous=asynchronous)

    _connparams.triggerd_patch = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams


def restore_interval(visibility_timeout: float) -> int:
    """Seconds between sweeps for lost jobs: a fraction of the timeout, 1 to 10 s."""
    return max(1, min(10, int(visibility_timeout / 2)))


def job_message(job: TaskJob, inbox: str, job_id: str, codec: Codec) -> dict[str, Any]:
    """The JSON body of a job: names, not code; data as signed bytes in base64; sealed,
    with ``job_id`` (the Celery task id it is sent under) among the sealed fields."""
    inputs = None
    if job.inputs is not None:
        inputs = [[name, list(aliases), b64(blob)] for name, aliases, blob in job.inputs]
    body = {
        "v": MESSAGE_VERSION,
        "run_id": job.run_id,
        "workflow": job.workflow,
        "content_hash": job.content_hash,
        "dag": job.dag,
        "blueprint": job.blueprint,
        "task": job.task,
        "queue": job.queue,
        "inputs": inputs,
        "dag_data": b64(job.dag_data),
        "reply_to": inbox,
        "rule": job.rule,
        "attempt": job.attempt,
        "job_id": job_id,
    }
    return codec.seal(JOB, body)


def parse_job(message: Any, codec: Codec, delivery_id: str) -> tuple[TaskJob, str]:
    """The job and the runner's inbox of a message delivered under Celery task id
    ``delivery_id``; :class:`PayloadRejected` if it is not sealed with our key (unsigned,
    forged, any field altered), was sealed for another task id (a replay), names no
    workflow content hash, or is malformed."""
    try:
        message = codec.unseal(JOB, message)
    except PayloadRejected as exc:
        version = message.get("v") if isinstance(message, dict) else None
        if version != MESSAGE_VERSION:
            raise PayloadRejected(
                f"{exc} (message version {version!r}; this worker reads {MESSAGE_VERSION}: are all triggerd installs the same version?)"
            ) from None
        raise
    try:
        if message.get("v") != MESSAGE_VERSION:
            raise ValueError(
                f"unknown message version {message.get('v')!r} (this worker reads {MESSAGE_VERSION})"
            )
        inputs = None
        if message["inputs"] is not None:
            inputs = tuple(
                (str(name), tuple(str(a) for a in aliases), unb64(blob) or b"")
                for name, aliases, blob in message["inputs"]
            )
        job = TaskJob(
            str(message["run_id"]),
            str(message["workflow"]),
            str(message["content_hash"]),
            str(message["dag"]),
            str(message["blueprint"]),
            str(message["task"]),
            str(message["queue"]),
            inputs,
            unb64(message.get("dag_data")),
            str(message["rule"]) if message.get("rule") is not None else None,
            int(message["attempt"]),
        )
        inbox = str(message["reply_to"])
        job_id = message["job_id"]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PayloadRejected(
            f"malformed triggerd job message, refused: {type(exc).__name__}: {exc}"
        ) from None
    if job_id != delivery_id:
        raise PayloadRejected(
            f"a job signed for task id {job_id!r} arrived as {delivery_id!r} (replayed?): refused"
        )
    if not _CONTENT_HASH.fullmatch(job.content_hash):
        raise PayloadRejected("a job without its workflow file's content hash (sha256): refused")
    return job, inbox


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
        self._codec = Codec(_hmac_key(settings))
        self._workflows: WorkflowCache | None = None
        self._store: Any = None
        self._redis: redis.Redis | None = None
        self._heartbeats: Heartbeats | None = None
        self._events: EventBatcher | None = None

    def _open(self) -> tuple[WorkflowCache, Any, redis.Redis, Heartbeats, EventBatcher]:
        with self._lock:
            if self._pid != os.getpid():
                self._workflows = WorkflowCache(self._settings.paths.workflows, validate=False)
                # Not opened here: a store that is down is waited for by each task.
                self._store = self._store_spec.create(self._codec)
                self._redis = connect(self._settings.celery.broker_url)
                self._heartbeats = Heartbeats(self._redis)
                self._events = EventBatcher(
                    EventStream(self._redis, codec=self._codec, maxlen=self._events_maxlen).append
                )
                let_task_records_through()
                self._pid = os.getpid()
            assert self._workflows is not None and self._redis is not None
            assert self._heartbeats is not None and self._events is not None
            return self._workflows, self._store, self._redis, self._heartbeats, self._events

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
        workflows, store, client, heartbeats, events = self._open()
        try:
            job, inbox = parse_job(message, self._codec, delivery_id)
        except PayloadRejected as exc:
            self._refuse(message, exc, hostname, delivery_id, events)
            raise TaskFailed(f"the job was refused and nothing of it ran: {exc}") from None
        channel = RedisChannel(
            client,
            run_id=job.run_id,
            dag=job.dag,
            inbox=inbox,
            codec=self._codec,
            timeout=self._settings.celery.signal_timeout,
            task=job.task,
            attempt=job.attempt,
        )
        now = time.time()
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
        if stopped:
            # Stopped while queued, or a redelivery of a job whose run has ended.
            outcome = TaskOutcome(
                "stopped", (), None, "stopped before it started", started=now, ended=now
            )
        elif status == "again" and not _idempotent(workflows, job):
            message = (
                f"the worker running task '{job.task}' was lost mid-task, and the task is not "
                "idempotent (idempotent=False), so it was not run again"
            )
            outcome = TaskOutcome("failed", message=message, started=now, ended=now)
        else:
            self._until_sent(
                "telling the runner the task started",
                lambda: start(
                    client,
                    self._codec,
                    inbox,
                    job,
                    hostname,
                    delivery_id,
                    redelivered=status == "again",
                ),
            )
            with heartbeats.running(delivery_id):
                try:
                    outcome = self._run(job, workflows, store, channel, hostname, events)
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
            self._until_sent("sending the task's output", events.flush)
        self._until_sent(
            "telling the runner how the task ended",
            lambda: finish(client, self._codec, inbox, job, outcome, hostname, delivery_id),
        )
        _log.debug(
            "task ended", run=job.run_id, dag=job.dag, task=job.task, outcome=outcome.outcome
        )
        # Only now, the runner told: a task that ends in an exception is what Celery records
        # as a failure. Nothing listens to Celery's result (the runner learns from Redis).
        if outcome.outcome == "failed":
            raise TaskFailed(outcome.message or f"task '{job.task}' failed")
        if outcome.outcome in ("stopped", "aborted"):
            raise TaskStopped(
                f"{outcome.outcome}: {outcome.message}" if outcome.message else outcome.outcome
            )
        return outcome.outcome

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

    def _run(
        self,
        job: TaskJob,
        workflows: WorkflowCache,
        store: Any,
        channel: RedisChannel,
        hostname: str,
        events: EventBatcher,
    ) -> TaskOutcome:
        try:
            document = document_for(job, store, give_up_after=self._settings.executor.give_up_after)
        except Exception as exc:  # noqa: BLE001 - reported as the task's failure, saying why
            return outcome_without_document(exc, self._store_spec.describe())
        return execute_task(
            job,
            workflows=workflows,
            codec=self._codec,
            channel=channel,
            store=document,
            hostname=hostname,
            emit=events,
        )


def _idempotent(workflows: WorkflowCache, job: TaskJob) -> bool:
    """The task's ``idempotent`` flag; True if it cannot be looked up (running it reports why)."""
    try:
        return bool(
            workflows.get(job.workflow, job.content_hash).task(job.blueprint, job.task).idempotent
        )
    except Exception:  # noqa: BLE001 - execute_task reports the lookup's error properly
        return True


def _hmac_key(settings: Settings, *, sleep: Callable[[float], Any] = time.sleep) -> bytes:
    """The daemon's key. Unlike the daemon, a worker never creates one (a key of its own
    would make it refuse every job as tampered): a worker started at the same moment as a
    new daemon waits for the daemon to write it, saying so every half minute."""
    from .embedded import hmac_key  # embedded imports the local executor: only when needed

    path = settings.hmac_key_path
    waited = 0.0
    while settings.security.hmac_key is None and not path.exists():
        if waited % _KEY_WAIT_REMINDER == 0:
            _log.warning(
                "waiting for the HMAC key file: a worker signs and verifies task data with the "
                "daemon's key, which the daemon writes at its first start; on another host, copy "
                "the daemon's key file here (mode 0600) or set security.hmac_key_file",
                path=str(path),
                waited=waited,
            )
        sleep(1.0)
        waited += 1.0
    return hmac_key(settings)


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
