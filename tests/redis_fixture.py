"""A real redis-server and real ``triggerd worker`` processes for the Celery tests.

Started once per session (a worker takes ~2.6 s to answer): one Redis on a free port of
127.0.0.1 without persistence, one worker (``-c 2``, prefork) consuming the default
queues, over the repository's workflows/ plus a session directory for test workflows.
Prefork, Celery's default, because that is what production runs: a task that dies takes
only its pool child down, and a stop grace can terminate a child (threads cannot).

Missing redis-server is a failure, never a skip: CI must not pass without the real part.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from support import TEST_KEY, WORKFLOWS, EventCollector, free_port, stop_process, wait_for

from triggerd.config import CelerySettings
from triggerd.engine.celery_executor import CeleryExecutor
from triggerd.engine.codec import Codec
from triggerd.engine.job import TaskJob
from triggerd.engine.protocol import TASK_NAME, celery_app, job_message
from triggerd.engine.redis_channel import events_stream_key
from triggerd.store.sqlite import SqliteDataStore

__all__ = [
    "CeleryCluster",
    "RedisServer",
    "WorkerProcess",
    "celery_cluster",
    "celery_engine",
    "cluster",
    "redis_server",
]

MAIN_WORKER = "main@triggerd-test"
SIGNAL_TIMEOUT = 3.0  # short, so the test of an unanswered signal stays quick


class RedisServer:
    """redis-server on 127.0.0.1 only; nothing saved to disk unless ``appendonly`` (then
    every write is in its append-only file before it is answered, and :meth:`stop` and
    :meth:`start` take it away and bring it back with its data, as a service restart)."""

    def __init__(self, workdir: Path, port: int | None = None, *, appendonly: bool = False):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: the Celery tests need a real Redis "
                "(apt-get install redis-server; .ci/run should install it)",
                pytrace=False,
            )
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = workdir / "redis.log"
        self.client = redis.Redis(port=self.port)
        self._persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if appendonly
            else ["--appendonly", "no"]
        )
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                *self._persistence,
                "--daemonize",
                "no",
                "--logfile",
                str(self.log),
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 10, "redis-server to accept connections", detail=self._log_tail)

    def start(self) -> None:
        """Start it again (after :meth:`stop`) on the same port and directory."""
        if self.process.poll() is not None:
            self._start()

    def restart(self, down: float = 0.0) -> None:
        """Kill it (SIGKILL: no persistence, everything in it is lost), stay down
        ``down`` seconds, start it again on the same port."""
        self.process.kill()
        self.process.wait()
        time.sleep(down)
        self._start()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def _up(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"redis-server exited with {self.process.returncode}:\n{self._log_tail()}")
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process)


class WorkerProcess:
    """``triggerd worker`` as a subprocess (its own process group, like under systemd)."""

    def __init__(self, config: Path, name: str, args: list[str], log: Path):
        self.name = name
        self.log = log
        triggerd = Path(sys.executable).parent / "triggerd"
        command = [
            str(triggerd),
            "worker",
            "--config",
            str(config),
            "-n",
            name,
            *args,
            "--without-mingle",
            "--without-gossip",
        ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=config.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, app: Any, timeout: float = 30) -> None:
        """Until the worker answers a ping (it consumes its queues by then)."""

        def answered() -> bool:
            if self.process.poll() is not None:
                pytest.fail(
                    f"worker {self.name} exited with {self.process.returncode}:\n"
                    + self.log.read_text(errors="replace")[-3000:]
                )
            return bool(app.control.ping(destination=[self.name], timeout=0.5, limit=1))

        wait_for(
            answered,
            timeout,
            f"worker {self.name} to answer a ping",
            interval=0.05,
            detail=lambda: self.log.read_text(errors="replace")[-3000:],
        )

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL to its whole group if it lingers."""
        self.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()


def stream_docs(client: redis.Redis) -> list[dict[str, Any]]:
    """Every event document in the workers' events stream, in stream order."""
    return [json.loads(fields[b"e"]) for _, fields in client.xrange(events_stream_key())]


def refusals(client: redis.Redis, delivery_id: str) -> list[dict[str, Any]]:
    """The workers' ``job.refused`` events for the job with Celery task id ``delivery_id``."""
    return [
        d
        for d in stream_docs(client)
        if d["kind"] == "job.refused" and d["data"].get("delivery") == delivery_id
    ]


@dataclass
class CeleryCluster:
    """Redis, the main worker, the shared data store and the test workflows directory."""

    redis: RedisServer
    root: Path
    wf: Path  # test workflows, searched by the workers before the repository's
    store: SqliteDataStore
    config: Path
    worker: WorkerProcess
    app: Any
    extra_workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def settings(self) -> CelerySettings:
        return CelerySettings(broker_url=self.redis.url, signal_timeout=SIGNAL_TIMEOUT)

    def write_workflow(self, name: str, body: str) -> Path:
        path = self.wf / f"{name}.py"
        path.write_text(textwrap.dedent(body))
        return path

    def send_job(self, job: TaskJob, inbox: str) -> str:
        """Send ``job`` straight to the workers, sealed as the executor seals it, with
        ``inbox`` as its runner's; returns its Celery task id."""
        task_id = uuid.uuid4().hex
        message = job_message(job, inbox, task_id, Codec(TEST_KEY))
        self.app.send_task(
            TASK_NAME, args=[message], task_id=task_id, queue=job.queue, routing_key=job.queue
        )
        return task_id

    def executor(
        self,
        collector: EventCollector,
        *,
        workflows: list[Path] | None = None,
        stop_grace: float | None = 10.0,
    ) -> CeleryExecutor:
        """A started executor over the same workflows as the workers (by default)."""
        executor = CeleryExecutor(
            workflows=workflows or [self.wf, WORKFLOWS],
            celery=self.settings,
            codec=Codec(TEST_KEY),
            store=self.store,
            keep_data=True,
            stop_grace=stop_grace,
            on_event=collector,
        )
        executor.start()
        return executor

    def start_worker(self, name: str, args: list[str]) -> WorkerProcess:
        worker = WorkerProcess(self.config, name, args, self.root / f"{name.split('@')[0]}.log")
        self.extra_workers.append(worker)
        worker.wait_ready(self.app)
        return worker


def _worker_config(
    root: Path, redis_url: str, wf: Path, store: Path, visibility_timeout: float
) -> Path:
    path = root / "triggerd.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [paths]
        state_dir = "{root / 'state'}"
        workflows = ["{wf}", "{WORKFLOWS}"]
        [store]
        path = "{store}"
        [security]
        hmac_key = "{TEST_KEY.decode()}"
        [celery]
        broker_url = "{redis_url}"
        visibility_timeout = {visibility_timeout}
        signal_timeout = {SIGNAL_TIMEOUT}
        [log]
        level = "info"
        format = "console"
        """)
    )
    return path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@contextlib.contextmanager
def cluster(
    root: Path,
    redis_server: RedisServer,
    *,
    worker_args: list[str],
    visibility_timeout: float = 60.0,
) -> Iterator[CeleryCluster]:
    """A worker (named MAIN_WORKER) over ``redis_server``, with its store and config in ``root``."""
    wf = root / "wf"
    wf.mkdir()
    store_path = root / "store.sqlite"
    store = SqliteDataStore(store_path, Codec(TEST_KEY)).open()
    config = _worker_config(root, redis_server.url, wf, store_path, visibility_timeout)
    app = celery_app(CelerySettings(broker_url=redis_server.url), name="triggerd-tests")
    worker = WorkerProcess(config, MAIN_WORKER, worker_args, root / "main.log")
    running = CeleryCluster(redis_server, root, wf, store, config, worker, app)
    try:
        worker.wait_ready(app)
        yield running
    finally:
        workers = [*running.extra_workers, worker]
        for process in workers:  # all at once: each warm shutdown takes a moment
            process.terminate()
        for process in workers:
            process.stop()
        app.close()
        store.close()


@pytest.fixture(scope="session")
def celery_cluster(tmp_path_factory, redis_server):
    """The session's Redis, one worker on task,dag,workflow (-c 2) and the shared store."""
    with cluster(
        tmp_path_factory.mktemp("celery"), redis_server, worker_args=["-c", "2"]
    ) as running:
        yield running


@pytest.fixture(scope="session")
def celery_engine(celery_cluster, events):
    """A Celery executor over the repository's workflows/, for the example tests."""
    executor = celery_cluster.executor(events, workflows=[WORKFLOWS])
    yield executor, celery_cluster.store
    executor.close()
