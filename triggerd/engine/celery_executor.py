"""The Celery executor: the same runner as locally, its tasks run on Celery workers.

The runner stays in this process (the daemon or ``triggerctl run``), exactly as with
:class:`~triggerd.engine.local.LocalExecutor` (both are
:class:`~triggerd.engine.base.Executor`). Only the transport differs: a ``StartTask``
becomes a Celery job on the task's queue (:mod:`triggerd.engine.protocol`), and the
workers push ``started``/``done``/``signal`` messages onto this executor's Redis inbox.

Two threads: one blocks on ``BLPOP`` of the inbox and hands each message to the other,
the executor thread, which alone owns the runs and turns their cranks. Neither sleeps
in a polling loop; a completion reaches the runner one Redis round trip after the task
ended.

An unreachable broker is a wait: a job that cannot be sent stays queued here and goes
out when Redis answers again (the listener sees that within a second); only a broker
gone for ``give_up_after`` seconds fails the tasks still waiting to be sent.

With a journal (the daemon's), the executor keeps its identity across restarts: its
workers report to the same inbox while it is down, a message moves from the inbox to a
processing list and leaves it only once it is journaled, and a resumed run takes back
the jobs its workers still have (:meth:`CeleryExecutor._adopt`). Closing then leaves
the runs to their workers instead of stopping them.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import OperationalError

from triggerd.config import CelerySettings, mask_url_password
from triggerd.errors import BackendUnavailable, InternalError
from triggerd.eventlog.schema import LogEvent
from triggerd.health import Dependency, Reading
from triggerd.log import get_logger

from . import runner as r
from .base import ActiveRun, EventSink, Executor, RunHandle, RunResult
from .codec import Codec, PayloadRejected
from .journal import Journal, Sent
from .protocol import TASK_NAME, celery_app, job_message, restore_interval
from .redis_channel import (
    HEARTBEAT_PERIOD,
    HEARTBEAT_TTL,
    INBOX,
    KEY_TTL,
    REPLY,
    RUN_WIDE,
    alive,
    connect,
    connect_once,
    decode_outcome,
    delivery_state,
    inbox_key,
    mark_stopped,
    presence_key,
    processing_key,
    push,
    still_with_broker,
    unb64,
)

__all__ = ["CeleryExecutor", "RunHandle", "RunResult"]

_log = get_logger(__name__)
_Key = tuple[str, str, str]  # run id, DAG running name, task
_BLPOP_TIMEOUT = 5.0  # only bounds how long a lost Redis connection goes unnoticed
_SEND_RETRY = 1.0  # seconds between two attempts to send while the broker is unreachable
_PARK_FOR = 600.0  # seconds a message for a run not (yet) resumed waits for it


@dataclass(eq=False)
class _Sent:
    """A job handed to Celery, until its completion arrives."""

    task_id: str  # Celery's task id: the same for every delivery of the job
    command: r.StartTask
    started: bool = False  # a worker said it started it
    silent_since: float | None = None  # started, and no heartbeat since (monotonic)
    sent_at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Message:
    """A message from the inbox, as read (``raw``: to take it off the processing list)."""

    raw: bytes
    body: dict[str, Any]
    parked_at: float | None = None


class CeleryExecutor(Executor):
    """Runs workflows from ``workflows`` directories on the Celery workers of ``celery``.

    ``codec`` holds the HMAC key the workers share: it seals the jobs sent and checks the
    seal of every message read back. The runner never opens task data (it only passes
    the signed bytes from one task to the next).
    """

    def __init__(
        self,
        *,
        workflows: list[Path],
        celery: CelerySettings,
        codec: Codec,
        store: Any = None,
        keep_data: bool = False,
        stop_grace: float | None = 10.0,
        on_event: EventSink | None = None,
        give_up_after: float = 43_200.0,
        journal: Journal | None = None,
    ):
        super().__init__(
            workflows=workflows,
            store=store,
            keep_data=keep_data,
            stop_grace=stop_grace,
            on_event=on_event,
            give_up_after=give_up_after,
            journal=journal,
        )
        self._settings = celery
        self._codec = codec
        self._id = journal.identity() if journal is not None else uuid.uuid4().hex
        self._inbox_key = inbox_key(self._id)
        self._processing_key = processing_key(self._id)
        self._presence_key = presence_key(self._id)
        self._acks: list[bytes] = []  # messages acted on: off the processing list next
        self._parked: dict[str, list[_Message]] = {}  # run id -> its messages, until it resumes
        self._resumable: set[str] = set()  # runs with a journal, not resumed yet
        # a job's Celery task id, chosen (and journaled) before it is sent
        self._preset: dict[_Key, str] = {}
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._running: dict[_Key, _Sent] = {}  # jobs sent, not yet done
        # A lost worker's job comes back within the visibility timeout plus a sweep; a job
        # silent for longer than that will not come back: it has failed.
        self._lost_after = (
            celery.visibility_timeout
            + restore_interval(celery.visibility_timeout)
            + HEARTBEAT_TTL
            + 5.0
        )
        self._requests: dict[str, str] = {}  # signal request id -> reply key
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._app: Any = None
        self._redis: redis.Redis | None = None
        self.broker = Dependency("broker", mask_url_password(celery.broker_url))
        self._unsendable_since: float | None = None  # the first failed send of this outage
        self._next_lost_check = 0.0  # monotonic: when to look for jobs the broker lost next
        self._next_send = 0.0  # no send before this (monotonic), while sends fail
        # writes Redis missed
        self._unwritten: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Redis (failing here if it is down) and start both threads."""
        self._app = celery_app(self._settings, name=f"triggerd-runner-{self._id[:8]}")
        # One quick retry only: both threads handle an outage themselves, and a client that
        # retried for seconds held the executor thread and hid the outage from status.
        self._redis = connect(self._settings.broker_url, retries=1)
        if self._journal is not None:
            self._resumable = set(self._journal.runs())
        try:
            self._redis.set(self._presence_key, "1", ex=KEY_TTL)
        except redis.RedisError as exc:
            self.broker.down(str(exc))
            raise BackendUnavailable(
                f"cannot reach Redis at {mask_url_password(self._settings.broker_url)} ({exc}): "
                "start it, or set celery.broker_url (or executor.kind = \"local\")"
            ) from exc
        self.broker.up()
        self._start_keeper()
        self._threads = [
            threading.Thread(target=self._loop, name="triggerd-celery-executor", daemon=True),
            threading.Thread(target=self._listen, name="triggerd-celery-inbox", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every run still going (without a journal; with one, the runs are left to
        their workers and resume at the next start), then both threads; waits up to
        ``timeout`` seconds."""
        if not self._threads:
            return
        deadline = time.monotonic() + timeout
        if self._journal is None:
            self._stop_all(deadline)
        else:
            self._journaling = False
        for timer in self._timers:
            timer.cancel()
        self._closing.set()
        self._calls.put(None)
        assert self._redis is not None
        last_word = connect_once(self._settings.broker_url)  # Redis may be down: no retries now
        try:
            # ends the wait at once
            push(last_word, self._inbox_key, self._codec.seal(INBOX, {"type": "wake"}))
        except redis.RedisError:
            pass  # the listener notices the closing flag within _BLPOP_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        try:
            if self._journal is None:
                last_word.delete(self._inbox_key, self._processing_key, self._presence_key)
            else:
                self._ack(last_word)
        except redis.RedisError:
            pass
        last_word.close()
        self._redis.close()
        self._app.close()
        self._threads = []
        self._close_keeper(max(0.1, deadline - time.monotonic()))

    def dependencies(self) -> list[Reading]:
        return [self.broker.reading, *super().dependencies()]

    def waiting_queues(self) -> dict[str, int]:
        """Jobs no worker has started yet, by queue (to tell whether each is consumed).
        Read from another thread: the copies are atomic, the counts may be a moment old."""
        waiting: dict[str, int] = {}
        for sent in self._running.copy().values():
            if not sent.started:
                waiting[sent.command.queue] = waiting.get(sent.command.queue, 0) + 1
        for _run, command in self._jobs.copy():
            waiting[command.queue] = waiting.get(command.queue, 0) + 1
        return waiting

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
            if self._acks and self._calls.empty():
                self._ack(self._redis)

    def _ack(self, client: Any) -> None:
        """Take the messages acted on off the processing list (one round trip)."""
        acks, self._acks = self._acks, []
        try:
            pipe = client.pipeline(transaction=False)
            for raw in acks:
                pipe.lrem(self._processing_key, 1, raw)
            pipe.execute()
        except redis.RedisError:
            self._acks = acks + self._acks  # again next time; read twice after a crash is harmless

    def _listen(self) -> None:
        """Move messages from the inbox to the processing list, one at a time, and hand
        each to the executor thread; first those a previous life of this executor left on
        the processing list.

        Once a second at most (and whenever the inbox was quiet for ``_BLPOP_TIMEOUT``) it
        also renews this executor's presence key. Finding it gone means Redis restarted
        without its data (no persistence): queued jobs and unread completions are lost,
        and the executor sends again what had not started. Its round trips are also how
        the broker's health is known.
        """
        assert self._redis is not None
        next_check = 0.0
        left_over_read = False
        while not self._closing.is_set():
            try:
                if not left_over_read:
                    for raw in self._redis.lrange(self._processing_key, 0, -1):
                        self._take(raw)
                    left_over_read = True
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 1.0
                    if not self._redis.expire(self._presence_key, KEY_TTL):
                        self._redis.set(self._presence_key, "1", ex=KEY_TTL)
                        self._call(self._broker_lost)
                    self._broker_answers()
                    self._call(self._check_workers)
                raw = self._redis.blmove(
                    self._inbox_key, self._processing_key, _BLPOP_TIMEOUT, "LEFT", "RIGHT"
                )
            except redis.RedisError as exc:
                if self.broker.ok is not False:
                    _log.warning(
                        "celery executor: Redis unreachable; runs wait for it", error=str(exc)
                    )
                self.broker.down(f"{type(exc).__name__}: {exc}")
                self._closing.wait(1.0)  # back-off before reconnecting, not a poll
                continue
            if raw is not None:
                self._take(raw)

    def _take(self, raw: bytes) -> None:
        """Hand a message to the executor thread, if it carries our seal; refuse it (a log
        line and a ``message.refused`` event, nothing acted on) otherwise."""
        try:
            body = self._codec.unseal(INBOX, json.loads(raw))
        except (ValueError, PayloadRejected) as exc:
            reason = str(exc)
            self._call(lambda: self._refuse(raw, reason))
            return
        message = _Message(raw, body)
        self._call(lambda: self._on_raw(message))

    def _refuse(self, raw: bytes, reason: str) -> None:
        _log.error(
            "celery executor: a message on the inbox was refused", error=reason, message=raw[:200]
        )
        self._record(
            LogEvent(
                "message.refused",
                f"a message on the executor's inbox was refused, nothing acted on: {reason}",
                level="error",
                data={"message": raw[:200].decode("utf-8", "replace")},
            )
        )
        self._acks.append(raw)

    def _broker_answers(self) -> None:
        if self.broker.ok is False:
            _log.info("celery executor: Redis answers again; waiting jobs go out")
            self._next_send = 0.0
        self.broker.up()

    # -- the executor thread ----------------------------------------------------------------

    def _on_raw(self, message: _Message) -> None:
        """A message from the inbox: acted on (and journaled), then acknowledged. One for a
        run that has a journal and has not resumed yet is parked until it has (after a
        restart the inbox is read before the outbox hands the runs back), for
        :data:`_PARK_FOR` seconds at most."""
        run_id = message.body.get("run_id")
        if message.parked_at is None and run_id in self._resumable:
            message.parked_at = time.monotonic()
            self._parked.setdefault(run_id, []).append(message)
            return
        try:
            self._on_message(message.body)
        except (KeyError, TypeError, ValueError) as exc:
            _log.error(
                "celery executor: a malformed message on the inbox, dropped",
                error=f"{type(exc).__name__}: {exc}",
                message=message.raw[:200],
            )
        self._acks.append(message.raw)

    def _unpark(self, run_id: str | None = None) -> None:
        """Act on the parked messages of ``run_id`` (it has resumed), and on those parked
        for longer than :data:`_PARK_FOR` (their run did not come back)."""
        if run_id is not None:
            for message in self._parked.pop(run_id, []):
                self._on_raw(message)
        now = time.monotonic()
        for parked_run, messages in list(self._parked.items()):
            if now - (messages[0].parked_at or now) > _PARK_FOR:
                self._resumable.discard(parked_run)
                for message in self._parked.pop(parked_run):
                    self._on_raw(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "wake":
            return
        key: _Key = (message["run_id"], message["dag"], message.get("task", ""))
        active = self._runs.get(key[0])
        sent = self._running.get(key)
        if sent is not None and message.get("delivery") not in (None, sent.task_id):
            sent = None  # a job of an earlier attempt of this task, not the one waited for
        if kind == "started":
            if active is not None and sent is not None:
                self._on_started(active, sent, message, key)
        elif kind == "done":
            self._on_done(active, sent, message, key)
        elif kind == "signal":
            self._on_signal(active, message, key)
        else:
            raise InternalError(f"unknown message on the executor's inbox: {kind!r}")

    def _on_started(
        self, active: ActiveRun, sent: _Sent, message: dict[str, Any], key: _Key
    ) -> None:
        _run_id, dag, task = key
        sent.started = True
        sent.silent_since = None
        worker = message["worker"]
        if message.get("redelivered"):
            self._emit(
                active,
                "task.retried",
                f"{task} started again on {worker}: the worker that had it was lost mid-task",
                dag=dag,
                task=task,
                level="warning",
                data={"worker": worker},
            )
        else:
            self._emit(
                active,
                "task.started",
                f"{task} started on {worker}",
                dag=dag,
                task=task,
                data={"worker": worker},
            )

    def _on_done(
        self, active: ActiveRun | None, sent: _Sent | None, message: dict[str, Any], key: _Key
    ) -> None:
        _run_id, dag, task = key
        if active is None:
            return  # a late completion of a run that has ended (e.g. a redelivery)
        if sent is None:
            # A job Celery delivered twice, one given up on after the stop grace, or one
            # of an earlier attempt.
            self._emit(
                active,
                "run.ignored",
                f"late or duplicate completion of {dag}/{task}",
                level="warning",
            )
            return
        del self._running[key]
        self._outcome(active, dag, task, decode_outcome(message["outcome"]))

    def _on_signal(self, active: ActiveRun | None, message: dict[str, Any], key: _Key) -> None:
        run_id, dag, task = key
        if active is None:  # the run has ended: answer now rather than let it time out
            error = {"error": f"run {run_id} has ended", "error_type": "RequestFailed"}
            self._redis_call(
                push,
                message["reply_to"],
                self._codec.seal(REPLY, {**error, "request_id": message["request_id"]}),
            )
            return
        payload = dict(message["payload"])
        if isinstance(payload.get("data"), str):
            payload["data"] = unb64(payload["data"])  # signed bytes, opaque to the runner
        self._requests[message["request_id"]] = message["reply_to"]
        self._signal(
            run_id, message["request_id"], dag, message["action"], payload, task=task or None
        )

    def _check_workers(self) -> None:
        """Fail started jobs whose worker has gone silent for longer than a redelivery takes;
        send again jobs the broker lost; act on parked messages whose time is up; make the
        Redis writes a blip missed."""
        if self._unwritten:
            self._write_again()
        if self._parked:
            self._unpark()
        if time.monotonic() >= self._next_lost_check:
            self._next_lost_check = time.monotonic() + min(30.0, self._lost_after / 2)
            self._send_lost_again()
        started = [(key, sent) for key, sent in self._running.items() if sent.started]
        try:
            flags = alive(self._redis, [sent.task_id for _key, sent in started])  # type: ignore[arg-type]
        except redis.RedisError:
            return  # the listener reports the outage
        now = time.monotonic()
        for (key, sent), running in zip(started, flags, strict=True):
            if running:
                sent.silent_since = None
                continue
            if sent.silent_since is None:
                sent.silent_since = now
            if now - sent.silent_since > self._lost_after and self._running.get(key) is sent:
                del self._running[key]
                active = self._runs.get(key[0])
                if active is not None:
                    message = (
                        "its worker was lost and the job was not delivered again within "
                        f"{self._lost_after:g} s"
                    )
                    self._lost_task(active, key[1], key[2], message)

    def _send_lost_again(self) -> None:
        """A job no worker started for longer than a redelivery takes, that no worker
        claimed and that the broker no longer holds (neither queued nor unacknowledged:
        a worker killed just as it took it from the queue) is lost: it is sent again under
        its id. A claimed one is running or done; it is watched like any started job."""
        now = time.monotonic()
        old = [
            (key, sent)
            for key, sent in self._running.items()
            if not sent.started and now - sent.sent_at > self._lost_after
        ]
        if not old:
            return
        try:
            states = delivery_state(self._redis, [sent.task_id for _key, sent in old])  # type: ignore[arg-type]
            unclaimed = [
                (key, sent) for (key, sent), state in zip(old, states, strict=True) if state is None
            ]
            for (_key, sent), state in zip(old, states, strict=True):
                sent.started = sent.started or state is not None
            held = still_with_broker(
                self._redis,
                {s.command.queue for _k, s in unclaimed},
                [s.task_id for _k, s in unclaimed],
            )  # type: ignore[arg-type]
        except redis.RedisError:
            return  # the listener reports the outage
        for key, sent in unclaimed:
            if sent.task_id in held:
                continue
            if self._send_again(key, sent) and (active := self._runs.get(key[0])) is not None:
                self._emit(
                    active,
                    "task.retried",
                    f"{key[2]} sent again: the broker lost its job (a worker died as it took it)",
                    dag=key[1],
                    task=key[2],
                    level="warning",
                )

    def _send_again(self, key: _Key, sent: _Sent) -> bool:
        """Back to the front of the queue, under the same task id (so a copy the broker
        still delivers is dropped by the worker that gets it second); False if the job
        ended meanwhile."""
        if self._running.get(key) is not sent:
            return False
        del self._running[key]
        self._preset[key] = sent.task_id
        self._jobs.appendleft((key[0], sent.command))
        return True

    def _broker_lost(self) -> None:
        """Redis came back empty (no persistence): queued jobs and stop flags are gone.

        Stop flags are set again at once. A job that had not started may be gone from its
        queue, or running with its "started" message lost; the running ones show by their
        heartbeat within two periods, so only after that are the others sent again."""
        _log.error(
            "celery executor: Redis restarted without its data; "
            "jobs that did not start are sent again"
        )
        for run_id, active in self._runs.items():
            stopped = tuple(dag for dag in active.run.dags if active.run.is_stopped(dag))
            if stopped:
                self._redis_call(mark_stopped, self._codec, run_id, active.attempts, stopped)
        timer = threading.Timer(
            2 * HEARTBEAT_PERIOD + 0.5, lambda: self._call(self._send_unstarted_again)
        )
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _send_unstarted_again(self) -> None:
        waiting = [(key, sent) for key, sent in self._running.items() if not sent.started]
        try:
            flags = alive(self._redis, [sent.task_id for _key, sent in waiting])  # type: ignore[arg-type]
        except redis.RedisError:
            return  # down again: the next empty restart is noticed the same way
        for (key, sent), running in zip(waiting, flags, strict=True):
            if running:
                sent.started = True  # it runs; its worker reports to the inbox when done
            elif self._send_again(key, sent):
                _log.warning(
                    "celery executor: job sent again after Redis lost it",
                    run=key[0],
                    dag=key[1],
                    task=key[2],
                )

    def _terminate(self, run_id: str) -> None:
        """The stop grace is over: revoke the run's jobs and count them as stopped."""
        for key in [k for k in self._running if k[0] == run_id]:
            sent = self._running.pop(key)
            try:
                self._app.control.revoke(sent.task_id, terminate=True, signal="SIGKILL")
            except OperationalError as exc:
                _log.warning("celery executor: cannot revoke", task_id=sent.task_id, error=str(exc))
            active = self._runs.get(run_id)
            if active is not None:
                self._terminated_task(active, key[1], key[2])

    def _with_workers(self, run_id: str) -> int:
        return sum(1 for key in self._running if key[0] == run_id)

    def _dispatch(self) -> None:
        """Send the queued jobs (Celery queues them; a stopped DAG's jobs end at once).

        While the broker cannot be reached, jobs wait here; an attempt a second tells
        when it is back. After ``give_up_after`` seconds of failed sends they fail."""
        if time.monotonic() < self._next_send:
            return
        while (next_job := self._next_job()) is not None:
            if not self._send(*next_job):
                self._give_up_waiting_jobs()
                return
            self._jobs.popleft()
        self._unsendable_since = None

    def _send(self, active: ActiveRun, command: r.StartTask) -> bool:
        """One attempt, without Celery's retries (they would hold this thread). The job's
        task id is chosen and journaled first: a daemon killed just after sending knows
        the job, and one killed just before sends it again under the same id (a worker
        runs one delivery of an id, see ``claim``)."""
        run_id = active.run_id
        key = (run_id, command.dag, command.task)
        task_id = self._preset.get(key)
        if task_id is None:
            task_id = self._preset[key] = uuid.uuid4().hex
            self._journal_append(active, Sent(command.dag, command.task, task_id, active.attempt))
        try:
            self._app.send_task(
                TASK_NAME,
                args=[job_message(active.job(command), self._inbox_key, task_id, self._codec)],
                task_id=task_id,
                queue=command.queue,
                routing_key=command.queue,
                retry=False,
                # What Flower and worker logs show instead of a message full of base64.
                shadow=f"{active.workflow.name}/{command.dag}/{command.task}",
                argsrepr=repr(
                    {
                        "run_id": run_id,
                        "workflow": active.workflow.name,
                        "dag": command.dag,
                        "task": command.task,
                    }
                ),
            )
        except OperationalError as exc:
            now = time.monotonic()
            if self._unsendable_since is None:
                self._unsendable_since = now
                _log.warning(
                    "celery executor: the broker is unreachable; jobs wait to be sent",
                    error=str(exc),
                )
            self._next_send = now + _SEND_RETRY
            self.broker.down(f"{type(exc).__name__}: {exc}")
            return False
        del self._preset[key]
        self._running[key] = _Sent(task_id, command)
        return True

    def _adopt(self, active: ActiveRun, command: r.StartTask, sent: Sent | None) -> None:
        """A task of a resumed run that was running: a worker that took its job still has
        it (or has finished it, and its completion waits in the inbox), so it is waited
        for; a job no worker took yet is sent again under its id (a copy of it still
        queued is dropped by the worker that gets it second)."""
        key = (active.run_id, command.dag, command.task)
        if sent is None:
            self._jobs.append((active.run_id, command))
            return
        active.attempts.add(sent.attempt)
        try:
            (state,) = delivery_state(self._redis, [sent.delivery])  # type: ignore[arg-type]
        except redis.RedisError:
            state = None
        if state is None:
            self._preset[key] = sent.delivery
            self._jobs.append((active.run_id, command))
        else:
            self._running[key] = _Sent(sent.delivery, command, started=True)

    def _signal_detail(self, request_id: str) -> dict[str, Any]:
        return {"reply_to": self._requests.get(request_id)}

    def _restore_signals(self, signals: Any) -> None:
        for request_id, body in signals.items():
            if body.get("reply_to"):
                self._requests.setdefault(request_id, body["reply_to"])

    def _prepared(self, active: ActiveRun, error: BaseException | None) -> None:
        super()._prepared(active, error)
        if active.run_id in self._resumable:
            self._resumable.discard(active.run_id)
            self._unpark(active.run_id)

    def _give_up_waiting_jobs(self) -> None:
        """The broker has been unreachable for ``give_up_after``: the waiting jobs fail."""
        assert self._unsendable_since is not None
        waited = time.monotonic() - self._unsendable_since
        if waited < self._give_up_after:
            return
        message = (
            f"the Celery broker ({self.broker.reading.target}) was unreachable for {waited:.0f} s "
            f"(executor.give_up_after = {self._give_up_after:g}): the task was not sent"
        )
        while (next_job := self._next_job()) is not None:
            self._jobs.popleft()
            active, command = next_job
            self._lost_task(active, command.dag, command.task, message)

    # -- the transport of the runner's commands -----------------------------------------------

    def _reply(self, request_id: str, payload: dict[str, Any]) -> None:
        reply_to = self._requests.pop(request_id, None)
        if reply_to is not None:
            self._redis_call(
                push, reply_to, self._codec.seal(REPLY, {**payload, "request_id": request_id})
            )

    def _stop_tasks(self, run_id: str, dags: tuple[str, ...]) -> None:
        self._redis_call(mark_stopped, self._codec, run_id, self._attempts(run_id), dags)

    def _run_ended(self, run_id: str) -> None:
        # A job of this run that Celery delivers again later finds the run stopped.
        self._redis_call(mark_stopped, self._codec, run_id, self._attempts(run_id), (RUN_WIDE,))
        for key in [k for k in self._running if k[0] == run_id]:
            del self._running[key]
        for key in [k for k in self._preset if k[0] == run_id]:
            del self._preset[key]

    def _attempts(self, run_id: str) -> set[int]:
        """The attempts of a run whose jobs may still run (their stop flags are theirs)."""
        active = self._runs.get(run_id)
        return active.attempts if active is not None else {1}

    def _redis_call(self, fn: Callable[..., None], *args: Any) -> None:
        """A write to Redis that must not hold the executor thread while Redis is away: it
        is made again, in order, when Redis answers (a stop flag still stops; a reply the
        task no longer waits for expires unread)."""
        assert self._redis is not None
        if self._unwritten:  # behind those waiting, to keep the order
            self._unwritten.append((fn, args))
            return
        try:
            fn(self._redis, *args)
        except redis.RedisError as exc:
            _log.warning(
                "celery executor: a Redis write waits for Redis", call=fn.__name__, error=str(exc)
            )
            self._unwritten.append((fn, args))

    def _write_again(self) -> None:
        assert self._redis is not None
        while self._unwritten:
            fn, args = self._unwritten[0]
            try:
                fn(self._redis, *args)
            except redis.RedisError:
                return  # away again: at the next time it answers
            del self._unwritten[0]
