"""The wire protocol between a runner (daemon, ``triggerctl run``) and its Celery workers.

The claim a reviewer checks: **nothing from the broker is unpickled before its signature
(HMAC over the whole envelope) is checked.** Where that holds:

1. Celery's envelope: the app accepts JSON only (:func:`celery_app`: ``accept_content``),
   so neither Celery nor kombu ever hands a broker message to an unpickler.
2. The job: one task, :data:`TASK_NAME`, with one argument, a JSON object sealed by
   :func:`job_message` with an HMAC over its kind (:data:`JOB`) and the canonical JSON of
   every field, among them the Celery task id it is sent under. :func:`parse_job` checks
   that seal (:meth:`~triggerd.engine.codec.Codec.unseal`) before it reads any field, then
   refuses a job sealed for another task id (a replay) or naming no workflow content hash.
   A job names code (workflow, DAG, task); the worker resolves it from its own workflows
   directory, and refuses a file whose hash differs.
3. Task data inside a job (the inputs, ``dag_data``) stays the codec's signed bytes
   (base64) until :func:`~triggerd.engine.job.execute_task` verifies each piece, bound to
   its run and task, and only then unpickles it (:meth:`~triggerd.engine.codec.Codec.loads`).

What a worker sends back (started, done, signals) crosses Redis, not Celery, sealed the
same way: :mod:`triggerd.engine.redis_channel`. The key: :mod:`triggerd.engine.keys`.

Celery's own record of a job (result backend, ``celery events``, Flower) names it by its
shadow name ``workflow/dag/task`` and ends SUCCESS, FAILURE (:class:`TaskFailed`) or
REVOKED (:class:`TaskStopped`); the runner never reads it.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import redis
from celery import Celery
from celery.app.amqp import AMQP
from celery.exceptions import Terminated
from kombu.transport import redis as kombu_redis

from triggerd.config import CelerySettings
from triggerd.errors import TriggerdError

from .codec import Codec, PayloadRejected
from .job import TaskJob
from .redis_channel import b64, unb64

__all__ = [
    "DEFAULT_QUEUES",
    "JOB",
    "MESSAGE_VERSION",
    "TASK_NAME",
    "TaskFailed",
    "TaskStopped",
    "celery_app",
    "job_message",
    "parse_job",
    "restore_interval",
]

TASK_NAME = "triggerd.execute_task"
# Lightflow's queues. The runner lives in the submitting process, so only 'task' (and
# the queues tasks name themselves) carry jobs; a worker still consumes all three, so a
# deployment written for Lightflow keeps working unchanged.
DEFAULT_QUEUES = ("task", "dag", "workflow")
MESSAGE_VERSION = 3  # 3: sealed, and names its Celery task id; 2: the run's attempt
JOB = "job"  # what a job message is sealed as (Codec.seal's kind)
_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")


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
    message = _unsealed(message, codec)  # before any field is read
    try:
        if message.get("v") != MESSAGE_VERSION:
            raise ValueError(
                f"unknown message version {message.get('v')!r} "
                f"(this worker reads {MESSAGE_VERSION})"
            )
        job = _job_of(message)
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


def _unsealed(message: Any, codec: Codec) -> dict[str, Any]:
    """The job message's fields, if its seal is ours; a refusal names a version mismatch,
    the likely cause when daemon and workers run different triggerd versions."""
    try:
        return codec.unseal(JOB, message)
    except PayloadRejected as exc:
        version = message.get("v") if isinstance(message, dict) else None
        if version != MESSAGE_VERSION:
            raise PayloadRejected(
                f"{exc} (message version {version!r}; this worker reads {MESSAGE_VERSION}: "
                "are all triggerd installs the same version?)"
            ) from None
        raise


def _job_of(message: dict[str, Any]) -> TaskJob:
    """The job an unsealed message describes; its task data stays signed bytes."""
    inputs = None
    if message["inputs"] is not None:
        inputs = tuple(
            (str(name), tuple(str(a) for a in aliases), unb64(blob) or b"")
            for name, aliases, blob in message["inputs"]
        )
    return TaskJob(
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
    recognises (see :meth:`triggerd.engine.celery_worker.WorkerSide.execute`).

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
