"""The Redis side of the Celery executor: completions, signals and stop flags.

Celery carries task jobs to workers; everything that goes the other way travels here,
as JSON on Redis lists, so the runner *blocks* on it instead of polling Celery results:

- each executor instance owns an inbox list (:func:`inbox_key`); workers ``RPUSH``
  ``started``/``done``/``signal`` messages onto it and the executor ``BLPOP``\\ s it;
- a signal request names a reply list of its own (:func:`reply_key`); the runner's answer
  is ``RPUSH``\\ ed there and the task ``BLPOP``\\ s it with a timeout;
- a stopped DAG (or a whole run, DAG ``*``) is a key (:func:`stop_key`) that a task's
  ``signal.is_stopped`` reads with one ``MGET``. Stop flags belong to one attempt of the
  run (the n-th time it was handed to an executor), so nothing left by an earlier attempt
  can stop a task of a later one;
- what tasks print and log, as events, is appended to one stream for every worker
  (:func:`events_stream_key`, :class:`EventStream`), which the daemon's forwarder reads.

Whoever can write to Redis must not be able to make anyone act: every message here is
sealed with the HMAC key (``Codec.seal``: the inbox's ``started``/``done``/``signal``, a
signal's reply, bound to its request) and checked before any field is read; a stop flag's
value is a tag over its run, attempt and DAG (``Codec.tag``), so a flag set by anyone else
stops nothing. Task data never appears in the clear: it is the codec's signed bytes,
base64 in JSON, verified before it is unpickled (``Codec.loads``); nothing here unpickles.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from triggerd.eventlog.schema import LogEvent
from triggerd.flow.exceptions import SignalTimeout
from triggerd.log import get_logger

from .codec import Codec, PayloadRejected, dag_data_of
from .job import TaskJob, TaskOutcome

__all__ = [
    "EVENTS_MAXLEN",
    "HEARTBEAT_PERIOD",
    "HEARTBEAT_TTL",
    "INBOX",
    "KEY_TTL",
    "REPLY",
    "RUN_WIDE",
    "EventStream",
    "Heartbeats",
    "RedisChannel",
    "alive",
    "alive_key",
    "b64",
    "claim",
    "connect",
    "decode_outcome",
    "delivery_done",
    "delivery_key",
    "delivery_state",
    "event_is_ours",
    "events_stream_key",
    "finish",
    "inbox_key",
    "mark_stopped",
    "presence_key",
    "processing_key",
    "push",
    "reply_key",
    "start",
    "still_running",
    "still_with_broker",
    "stopped",
    "stop_key",
    "unb64",
]

_log = get_logger(__name__)

# What a sealed message is (``Codec.seal``'s kind): on an executor's inbox, or a reply.
INBOX = "inbox"
REPLY = "reply"
EVENT = "event"  # a stream entry's tag (Codec.tag's first part)

# Every key we create expires: an executor that died leaves nothing behind for long.
KEY_TTL = 86_400
RUN_WIDE = "*"  # the "DAG" of a stop flag that covers every DAG of a run
_PREFIX = "triggerd"


def inbox_key(executor_id: str) -> str:
    """The list an executor reads its workers' messages from."""
    return f"{_PREFIX}:inbox:{executor_id}"


def presence_key(executor_id: str) -> str:
    """Renewed by a running executor; its absence means Redis lost its data."""
    return f"{_PREFIX}:executor:{executor_id}"


def reply_key(request_id: str) -> str:
    """The list the answer to one signal request is pushed onto."""
    return f"{_PREFIX}:reply:{request_id}"


def stop_key(run_id: str, attempt: int, dag: str) -> str:
    """Set when ``dag`` of ``run_id`` is stopped in that attempt; ``dag`` :data:`RUN_WIDE`
    for the whole run."""
    return f"{_PREFIX}:stop:{run_id}:{attempt}:{dag}"


def processing_key(executor_id: str) -> str:
    """Messages taken from an executor's inbox and not yet acted on (journaled): read
    again first after a crash, so a completion popped just before it is not lost."""
    return f"{_PREFIX}:inbox:{executor_id}:processing"


def events_stream_key() -> str:
    """The stream workers append events to (one JSON document a message, field ``e``)."""
    return f"{_PREFIX}:events"


# Entries the events stream keeps at most (approximately: ``MAXLEN ~``); about 0.5 KiB
# each. The oldest go first, read or not: a forwarder down for long loses the oldest.
EVENTS_MAXLEN = 1_000_000


class EventStream:
    """Appends events to :func:`events_stream_key`, a batch in one round trip, each with
    its tag (field ``t``, :func:`event_is_ours`): the forwarder drops an entry whose tag
    is missing or wrong, so whoever can write to Redis cannot add lines to a run's log.

    The stream has no expiry (it is the event log's inbox); ``maxlen`` bounds it.
    """

    def __init__(self, client: redis.Redis, *, codec: Codec, maxlen: int = EVENTS_MAXLEN):
        self._client = client
        self._codec = codec
        self._maxlen = maxlen

    def append(self, events: list[LogEvent]) -> None:
        """Append ``events`` in order."""
        if not events:
            return
        key = events_stream_key()
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            document = json.dumps(event.to_dict(), default=repr)
            pipe.xadd(
                key,
                {"e": document, "t": self._codec.tag(EVENT, document)},
                maxlen=self._maxlen,
                approximate=True,
            )
        pipe.execute()


def event_is_ours(codec: Codec) -> Callable[[bytes, bytes | None], bool]:
    """The check a forwarder applies to a stream entry's document and tag."""

    def check(document: bytes, tag: bytes | None) -> bool:
        if tag is None:
            return False
        expected = codec.tag(EVENT, document.decode("utf-8", "surrogateescape")).encode()
        return hmac.compare_digest(tag, expected)

    return check


def connect(url: str, *, retries: int = 8) -> redis.Redis:
    """A client that rides out short outages (a Redis restart) by retrying with back-off
    (``retries`` times: 8 is about 9 s; a caller that handles an outage itself and must
    notice it at once takes 1, which still reconnects a connection a restart left stale).

    No socket timeout: ``BLPOP`` blocks by design, and its own timeout bounds the wait.
    redis-py 8 defaults to a 5 s socket timeout, which cut every longer ``BLPOP`` short
    (a ``join_dags`` waiting a minute failed after the retries ran out); keepalive and
    the health check find a dead connection instead.
    """
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    return redis.Redis.from_url(
        url,
        socket_timeout=None,
        socket_keepalive=True,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def connect_once(url: str, timeout: float = 1.0) -> redis.Redis:
    """A client for a last word (a wake-up, a clean-up at shutdown): one attempt, short
    timeouts, so a Redis that is down costs ``timeout``, not :func:`connect`'s retries."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def b64(blob: bytes | None) -> str | None:
    return None if blob is None else base64.b64encode(blob).decode("ascii")


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text.encode("ascii"), validate=True)


def push(client: redis.Redis, key: str, message: dict[str, Any]) -> None:
    """Append one JSON message to a list that expires if nobody ever reads it."""
    pipe = client.pipeline(transaction=False)
    _push(pipe, key, message)
    pipe.execute()


def _push(pipe: Any, key: str, message: dict[str, Any]) -> None:
    pipe.rpush(key, json.dumps(message))
    pipe.expire(key, KEY_TTL)


def delivery_key(delivery_id: str) -> str:
    """Set when a worker first takes the job with Celery task id ``delivery_id``."""
    return f"{_PREFIX}:delivered:{delivery_id}"


HEARTBEAT_PERIOD = 2.0  # seconds between a running job's heartbeats
HEARTBEAT_TTL = 3 * HEARTBEAT_PERIOD  # a heartbeat key older than this: its worker is gone


def alive_key(delivery_id: str) -> str:
    """Exists while a worker runs the job with Celery task id ``delivery_id``."""
    return f"{_PREFIX}:alive:{delivery_id}"


# -- a worker's side of one job: three round trips (claim, start, end) ---------------------


def claim(client: redis.Redis, codec: Codec, delivery_id: str, job: TaskJob) -> tuple[str, bool]:
    """Record that a worker takes this job, and read the DAG's stop flags, in one round trip.

    The claim is ``"first"`` (nobody had the job before), ``"again"`` (a worker had it and
    did not finish: lost, or still at it) or ``"done"`` (a worker finished it, this is a
    stale copy); the flag says whether the job's DAG or run has been stopped.
    """
    key = delivery_key(delivery_id)
    pipe = client.pipeline(transaction=False)
    pipe.set(key, "running", nx=True, ex=KEY_TTL)
    pipe.get(key)
    pipe.mget(
        [stop_key(job.run_id, job.attempt, job.dag), stop_key(job.run_id, job.attempt, RUN_WIDE)]
    )
    claimed, state, flags = pipe.execute()
    status = "first" if claimed else "done" if state == b"done" else "again"
    return status, stopped(codec, job.run_id, job.attempt, (job.dag, RUN_WIDE), flags)


def start(
    client: redis.Redis,
    codec: Codec,
    inbox: str,
    job: TaskJob,
    worker: str,
    delivery_id: str,
    *,
    redelivered: bool,
) -> None:
    """The job's first heartbeat and the runner's ``started`` message (the moment
    ``task.started`` is true); ``redelivered``: a worker had it before and was lost."""
    message = {
        "type": "started",
        "run_id": job.run_id,
        "dag": job.dag,
        "task": job.task,
        "worker": worker,
        "redelivered": redelivered,
        "delivery": delivery_id,
    }
    pipe = client.pipeline(transaction=False)
    pipe.set(alive_key(delivery_id), repr(time.time()), px=int(HEARTBEAT_TTL * 1000))
    _push(pipe, inbox, codec.seal(INBOX, message))
    pipe.execute()


def finish(
    client: redis.Redis,
    codec: Codec,
    inbox: str,
    job: TaskJob,
    outcome: TaskOutcome,
    worker: str,
    delivery_id: str,
) -> None:
    """Tell the runner how the task ended (its output stays signed), end its heartbeat
    and mark the job finished, so that later copies of it are dropped unrun."""
    fields = asdict(outcome)
    fields["data"] = b64(outcome.data)
    fields["limit"] = list(outcome.limit) if outcome.limit is not None else None
    message = {
        "type": "done",
        "run_id": job.run_id,
        "dag": job.dag,
        "task": job.task,
        "worker": worker,
        "outcome": fields,
        "delivery": delivery_id,
    }
    pipe = client.pipeline(transaction=False)
    _push(pipe, inbox, codec.seal(INBOX, message))
    pipe.delete(alive_key(delivery_id))
    pipe.set(delivery_key(delivery_id), "done", ex=KEY_TTL)
    pipe.execute()


def delivery_done(client: redis.Redis, delivery_id: str) -> bool:
    return client.get(delivery_key(delivery_id)) == b"done"


def still_running(client: redis.Redis, delivery_id: str) -> bool:
    """Whether another worker is running this job now: its heartbeat changes within
    1.5 periods. A worker killed a moment ago leaves a key that has not expired yet
    but no longer changes. Takes up to 3 s (only ever on a redelivery)."""
    key = alive_key(delivery_id)
    before = client.get(key)
    if before is None:
        return False
    time.sleep(1.5 * HEARTBEAT_PERIOD)
    after = client.get(key)
    return after is not None and after != before


class Heartbeats:
    """One thread per process renewing the heartbeat keys of the jobs it runs now.

    A heartbeat tells a second delivery of a job (Celery redelivers jobs that run longer
    than the visibility timeout) that the first is still running, and the runner that the
    worker running it has not vanished. :func:`start` sets the first beat and
    :func:`finish` deletes the key; in between, :meth:`running` keeps it fresh. Redis
    errors are ridden out: a missed beat or two does no harm, the TTL is three periods.
    """

    def __init__(self, client: redis.Redis):
        self._client = client
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def running(self, delivery_id: str) -> Iterator[None]:
        key = alive_key(delivery_id)
        with self._lock:
            self._keys.add(key)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="triggerd-heartbeats", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._keys.discard(key)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_PERIOD)
            with self._lock:
                keys = list(self._keys)
            if not keys:
                continue
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, repr(time.time()), px=int(HEARTBEAT_TTL * 1000))
            with contextlib.suppress(redis.RedisError):
                pipe.execute()


def alive(client: redis.Redis, delivery_ids: list[str]) -> list[bool]:
    """For each job, whether a worker is running it now (its heartbeat is fresh)."""
    if not delivery_ids:
        return []
    return [value is not None for value in client.mget([alive_key(d) for d in delivery_ids])]


def decode_outcome(fields: dict[str, Any]) -> TaskOutcome:
    """The :class:`TaskOutcome` of a ``done`` message; raises ValueError/TypeError if malformed."""
    limit = fields.get("limit")
    return TaskOutcome(
        outcome=str(fields["outcome"]),
        limit=tuple(str(name) for name in limit) if limit is not None else None,
        data=unb64(fields.get("data")),
        message=str(fields.get("message", "")),
        traceback=str(fields.get("traceback", "")),
        started=float(fields.get("started", 0.0)),
        ended=float(fields.get("ended", 0.0)),
    )


class RedisChannel:
    """The worker side of the signal API for one task job (a :class:`SignalChannel`).

    ``request`` pushes a signal onto the runner's inbox and blocks on a reply list of its
    own. Thread-safe without a lock: every request has its own reply key, and redis-py
    hands each concurrent command a connection of its own.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        run_id: str,
        dag: str,
        inbox: str,
        codec: Codec,
        timeout: float,
        task: str = "",
        attempt: int = 1,
    ):
        self._client = client
        self._run_id = run_id
        self._attempt = attempt
        self._dag = dag
        self._task = task
        self._inbox = inbox
        self._codec = codec
        self._timeout = timeout

    def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``action`` to the runner; raises :class:`SignalTimeout` when unanswered.

        ``join_dags`` waits as long as the DAGs run; it gives up only once the run has
        been stopped (or has ended) and still no answer came for another period.
        """
        if payload.get("data") is not None:
            payload = {
                **payload,
                "data": b64(
                    self._codec.dumps(
                        payload["data"], bind=dag_data_of(self._run_id), what="start_dag data"
                    )
                ),
            }
        request_id = uuid.uuid4().hex
        answer_to = reply_key(request_id)
        message = {
            "type": "signal",
            "request_id": request_id,
            "run_id": self._run_id,
            "dag": self._dag,
            "task": self._task,
            "action": action,
            "payload": payload,
            "reply_to": answer_to,
        }
        push(self._client, self._inbox, self._codec.seal(INBOX, message))
        stop_seen = False
        while True:
            popped = self._client.blpop([answer_to], timeout=self._timeout)
            if popped is not None:
                reply = self._reply(request_id, popped[1])
                if reply is not None:
                    return reply
                continue  # not the runner's: wait on for the real answer
            if action != "join_dags":
                raise SignalTimeout(
                    f"no answer to {action} from the run's runner within {self._timeout:g} s "
                    "(is the daemon or triggerctl that started the run still running?)"
                )
            if self._run_stopped():
                if stop_seen:
                    raise SignalTimeout(
                        f"join_dags got no answer within {self._timeout:g} s "
                        "of its run being stopped"
                    )
                stop_seen = True

    def _reply(self, request_id: str, raw: bytes) -> dict[str, Any] | None:
        """The runner's answer to ``request_id``; None (and a log line) for anything else."""
        try:
            reply = self._codec.unseal(REPLY, json.loads(raw))
            if reply.pop("request_id", None) != request_id:
                raise PayloadRejected("a reply to another request: refused")
        except (ValueError, PayloadRejected) as exc:
            _log.error(
                "a reply to a signal was refused",
                run=self._run_id,
                dag=self._dag,
                task=self._task,
                error=str(exc),
            )
            return None
        return reply

    def is_stopped(self, dag_name: str) -> bool:
        """Whether the DAG or the run was stopped. While Redis cannot be reached the answer
        is "not yet": a task that polls it goes on instead of failing with the outage, and
        sees the stop once Redis answers (the runner writes a missed flag again)."""
        try:
            flags = self._client.mget(
                [
                    stop_key(self._run_id, self._attempt, dag_name),
                    stop_key(self._run_id, self._attempt, RUN_WIDE),
                ]
            )
        except redis.RedisError as exc:
            _log.warning(
                "Redis unreachable: the task's stop flag cannot be read yet",
                run=self._run_id,
                dag=dag_name,
                error=str(exc),
            )
            return False
        return stopped(self._codec, self._run_id, self._attempt, (dag_name, RUN_WIDE), flags)

    def _run_stopped(self) -> bool:
        flag = self._client.get(stop_key(self._run_id, self._attempt, RUN_WIDE))
        return stopped(self._codec, self._run_id, self._attempt, (RUN_WIDE,), [flag])


def mark_stopped(
    client: redis.Redis, codec: Codec, run_id: str, attempts: Iterable[int], dags: tuple[str, ...]
) -> None:
    """Set the stop flags of ``dags`` (:data:`RUN_WIDE` for the whole run) in each of
    ``attempts`` (those whose jobs may still run); each flag's value is its tag."""
    pipe = client.pipeline(transaction=False)
    for attempt in attempts:
        for dag in dags:
            pipe.set(
                stop_key(run_id, attempt, dag), _stop_tag(codec, run_id, attempt, dag), ex=KEY_TTL
            )
    pipe.execute()


def stopped(
    codec: Codec, run_id: str, attempt: int, dags: Iterable[str], flags: Iterable[bytes | None]
) -> bool:
    """Whether any of the flags read for ``dags`` is a stop the runner set. A flag with any
    other value was not set by a holder of the key: it is logged and stops nothing."""
    for dag, flag in zip(dags, flags, strict=True):
        if flag is None:
            continue
        if hmac.compare_digest(flag, _stop_tag(codec, run_id, attempt, dag).encode()):
            return True
        _log.error(
            "a stop flag not set by triggerd was ignored", run=run_id, attempt=attempt, dag=dag
        )
    return False


def _stop_tag(codec: Codec, run_id: str, attempt: int, dag: str) -> str:
    return codec.tag("stop", run_id, str(attempt), dag)


# Which of the task ids (ARGV) appear in the lists and hashes (KEYS): the broker's queues
# and its index of unacknowledged messages. Server-side, one round trip; O(messages).
_FIND_JOBS = """
local found = {}
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key).ok
  local values = {}
  if kind == 'list' then values = redis.call('LRANGE', key, 0, -1)
  elseif kind == 'hash' then values = redis.call('HVALS', key) end
  for _, value in ipairs(values) do
    for _, id in ipairs(ARGV) do
      if not found[id] and string.find(value, id, 1, true) then found[id] = true end
    end
  end
end
local out = {}
for id, _ in pairs(found) do table.insert(out, id) end
return out
"""
KOMBU_UNACKED = "unacked"  # kombu's Redis transport: hash of messages delivered, not acked
KOMBU_PRIORITY_SEP = "\x06\x16"  # kombu's separator of a queue's priority lists


def still_with_broker(
    client: redis.Redis, queues: Iterable[str], delivery_ids: list[str]
) -> set[str]:
    """Which of these jobs the broker still holds: in a queue (any priority list) or
    delivered and not acknowledged. One that is in neither, and that no worker claimed,
    was lost on its way to a worker (a worker killed as it took it)."""
    if not delivery_ids:
        return set()
    keys = [
        f"{q}{suffix}"
        for q in queues
        for suffix in ("", *(f"{KOMBU_PRIORITY_SEP}{p}" for p in (3, 6, 9)))
    ]
    found = client.eval(_FIND_JOBS, len(keys) + 1, *keys, KOMBU_UNACKED, *delivery_ids)
    return {f.decode() if isinstance(f, bytes) else f for f in found}


def delivery_state(client: redis.Redis, delivery_ids: list[str]) -> list[str | None]:
    """For each job, ``"running"`` or ``"done"`` once a worker took it, else None."""
    if not delivery_ids:
        return []
    return [
        None if v is None else v.decode()
        for v in client.mget([delivery_key(d) for d in delivery_ids])
    ]
