"""Worker processes of the local executor: one task at a time each, over a pipe.

A task runs in a child process, so a task that segfaults, calls ``os._exit`` or leaks
memory takes only its process down; the executor sees the pipe close and records the
task as failed. Signals (start_dag, join_dags...) travel on the same pipe: the worker
is sequential, so while a task waits for a reply, nothing else arrives on it.

The other way, besides signal requests and the final ``done``, go the task's output and
log events, in batches (``("events", [dict, ...])``) at most 20 ms apart, the last
before ``done``. They need no reply, so a task blocked in ``join_dags`` still sends them.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .capture import EventBatcher, configure_worker_logging
from .codec import Codec, dag_data_of
from .job import (
    TaskJob,
    WorkflowCache,
    document_for,
    execute_task,
    outcome_without_document,
    worker_hostname,
)

if TYPE_CHECKING:
    from triggerd.store.factory import StoreSpec

__all__ = ["PoolWorker", "WorkerConfig", "spawn_worker"]


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs; sent once, at start."""

    key: bytes
    workflows: tuple[Path, ...]
    store: StoreSpec | None  # each worker process opens its own connection
    log_level: str | int = "info"  # as the executor's process logs (a name or a number)
    log_format: str = "auto"
    give_up_after: float = 43_200.0  # how long a task waits for an unreachable data store


@dataclass(eq=False)
class PoolWorker:
    """The executor's handle on one worker process."""

    process: Any
    conn: multiprocessing.connection.Connection
    stop_flag: Any  # multiprocessing.Value('b'): set while the current task's DAG is stopped
    job: TaskJob | None = None
    run_id: str | None = None
    waiting: set[str] = field(default_factory=set)  # signal requests awaiting a reply
    joining: bool = False  # blocked in join_dags: does not count against the pool size
    terminated: bool = False  # killed by the executor because its run was stopped

    @property
    def name(self) -> str:
        return f"local-{self.process.pid}"


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep multiprocessing from re-importing the caller's ``__main__`` in a worker.

    Workers need only triggerd; importing the main module of whoever embeds the executor
    (a CLI script, pytest, a notebook) costs time and may run that program's code.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def spawn_worker(ctx: Any, config: WorkerConfig) -> PoolWorker:
    parent, child = ctx.Pipe(duplex=True)
    stop_flag = ctx.Value("b", 0, lock=False)
    process = ctx.Process(
        target=worker_main, args=(child, stop_flag, config), name="triggerd-task", daemon=True
    )
    with _main_module_hidden():
        process.start()
    child.close()
    return PoolWorker(process, parent, stop_flag)


class _PipeChannel:
    """The worker side of the signal API, and the one way to send on the pipe."""

    def __init__(self, conn: multiprocessing.connection.Connection, stop_flag: Any, codec: Codec):
        self._conn = conn
        self._stop_flag = stop_flag
        self._codec = codec
        self.run_id = ""  # of the job being run: data it hands to start_dag is bound to it
        self._ids = itertools.count(1)
        # A task may signal from several threads (BashTask callbacks, user threads); the
        # pipe carries one request and its reply at a time.
        self._request_lock = threading.Lock()
        # Every message sent: events go out while a request waits for its reply.
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self._send_lock:
            self._conn.send(message)

    def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("data") is not None:
            payload = {
                **payload,
                "data": self._codec.dumps(
                    payload["data"], bind=dag_data_of(self.run_id), what="start_dag data"
                ),
            }
        with self._request_lock:
            request_id = f"{os.getpid()}-{next(self._ids)}"
            self.send(("signal", request_id, action, payload))
            kind, reply_id, reply = self._conn.recv()
        if kind != "reply" or reply_id != request_id:  # the protocol is strictly sequential
            raise RuntimeError(f"unexpected message {kind!r} for signal request {request_id}")
        return reply

    def is_stopped(self, dag_name: str) -> bool:
        return bool(self._stop_flag.value)


def worker_main(
    conn: multiprocessing.connection.Connection, stop_flag: Any, config: WorkerConfig
) -> None:
    """Loop: receive a job, run it, send its outcome; a ``None`` job ends the process."""
    # Ctrl-C is the executor's to handle. A no-op handler, not SIG_IGN: an ignored signal
    # stays ignored across exec, and BashTask commands must still see SIGINT.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    configure_worker_logging(config.log_level, config.log_format)
    codec = Codec(config.key)
    workflows = WorkflowCache(config.workflows, validate=False)
    channel = _PipeChannel(conn, stop_flag, codec)
    events = EventBatcher(
        lambda batch: channel.send(("events", [event.to_dict() for event in batch]))
    )
    # Not opened here: a store that is down when the worker starts is waited for per task.
    store = config.store.create(codec) if config.store is not None else None
    hostname = worker_hostname()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        channel.run_id = job.run_id
        try:
            document = (
                document_for(job, store, give_up_after=config.give_up_after)
                if store is not None
                else None
            )
        except Exception as exc:  # noqa: BLE001 - reported as the task's failure
            assert config.store is not None
            outcome = outcome_without_document(exc, config.store.describe())
        else:
            outcome = execute_task(
                job,
                workflows=workflows,
                codec=codec,
                channel=channel,
                store=document,
                hostname=hostname,
                emit=events,
                worker=f"local-{os.getpid()}",
            )
        events.flush()  # the executor sees a task's output before its end
        channel.send(("done", outcome))


def context(start_method: str) -> Any:
    """A multiprocessing context; forkserver children preload the engine once."""
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["triggerd.engine.pool", "triggerd.store.factory"])
    return ctx
