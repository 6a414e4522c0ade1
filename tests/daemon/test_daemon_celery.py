"""The daemon with executor.kind = "celery": file triggers run on a real triggerd worker.

Same daemon, same rules, same workflow as tests/daemon/test_daemon.py; only the
executor differs. The worker shares the daemon's config file (workflows, HMAC key,
SQLite data store on this machine) and the session's redis-server.
"""

from __future__ import annotations

import json
import time

import redis
from daemon_harness import Daemon, write_file
from redis_fixture import RedisServer, WorkerProcess
from support import free_port, wait_for

from triggerd.config import CelerySettings
from triggerd.daemon.client import ControlClient
from triggerd.engine.codec import Codec
from triggerd.engine.protocol import celery_app
from triggerd.engine.redis_channel import events_stream_key
from triggerd.eventlog.schema import LogEvent

WORKER = "daemon-worker@triggerd-test"


def started_on(d: Daemon, run_id: str) -> set[str]:
    """The workers the run's tasks started on, from the daemon's recent events."""
    with ControlClient(d.socket) as client:
        events = client.get("/events", run=run_id, limit=1000)
    return {e["data"]["worker"] for e in events if e["kind"] == "task.started"}


def test_a_file_trigger_runs_on_a_celery_worker_and_triggerctl_stop_reaches_it(
    tmp_path, redis_server
):
    """A closed file starts its run on the worker (not in a local pool) and what the task
    printed there reaches `triggerctl logs`; a second, long run is stopped with
    `triggerctl stop` and ends 'stopped' within seconds."""
    # Redis database 1: the session's other workers consume queue 'task' of database 0.
    broker = redis_server.url.rsplit("/", 1)[0] + "/1"
    d = Daemon(tmp_path, executor="celery", extra_config=f'[celery]\nbroker_url = "{broker}"\n')
    app = celery_app(CelerySettings(broker_url=broker), name="triggerd-daemon-test")
    with d:
        worker = WorkerProcess(
            tmp_path / "triggerd.toml", WORKER, ["-Q", "task", "-c", "1"], tmp_path / "worker.log"
        )
        try:
            worker.wait_ready(app)
            target = d.incoming / "scan_001.h5"
            write_file(target, b"data")
            wait_for(
                lambda: [r["state"] for r in d.runs_db()] == ["succeeded"],
                30,
                "the run on the worker",
            )
            (run,) = d.runs_db()
            assert list(d.markers().values()) == [str(target)]
            assert started_on(d, run["run_id"]) == {WORKER}
            # what the task printed on the worker came through the Redis stream and the forwarder
            wait_for(
                lambda: any(e["kind"] == "output" for e in d.ctl_json("logs", run["run_id"])),
                20,
                "the task's output in the event log",
            )
            (line,) = [e for e in d.ctl_json("logs", run["run_id"]) if e["kind"] == "output"]
            assert (
                line["message"] == f"recorded {target}"
                and line["worker"] == WORKER
                and line["task"] == "record"
            )
            # whoever can write to Redis cannot add lines to the run's log: an entry without
            # a worker's tag, or with a tag of another key, is stored as eventlog.forged
            forged = LogEvent(
                "output", "rm -rf / was run", run=run["run_id"], task="record", worker=WORKER
            ).to_dict()
            document = json.dumps(forged, default=str)
            client = redis.Redis.from_url(broker)
            client.xadd(events_stream_key(), {"e": document})
            client.xadd(
                events_stream_key(), {"e": document, "t": Codec(b"m" * 32).tag("event", document)}
            )
            client.close()
            wait_for(
                lambda: len(d.ctl_json("events", "--kind", "eventlog.forged")) == 2,
                20,
                "the forged entries to be refused",
            )
            assert [
                e["message"] for e in d.ctl_json("logs", run["run_id"]) if e["kind"] == "output"
            ] == [f"recorded {target}"]

            d.write_rules(d.default_rules(hold=30.0))
            assert d.ctl_json("reload")["ok"]
            write_file(d.incoming / "scan_002.h5", b"more")
            wait_for(
                lambda: any(r["state"] == "running" for r in d.runs_db()),
                30,
                "the long run to start",
            )
            long_run = next(r for r in d.runs_db() if r["state"] == "running")
            wait_for(
                lambda: started_on(d, long_run["run_id"]), 30, "its task to start on the worker"
            )
            t0 = time.monotonic()
            d.ctl("stop", long_run["run_id"])
            wait_for(
                lambda: (
                    next(r for r in d.runs_db() if r["run_id"] == long_run["run_id"])["state"]
                    == "stopped"
                ),
                15,
                "the stop",
            )
            assert time.monotonic() - t0 < 10
        finally:
            worker.stop()
            app.close()


def test_a_daemon_started_before_redis_waits_for_it_and_loses_nothing(tmp_path):
    """Boot order: with Redis down the daemon still starts, takes triggers, says its executor
    waits, and keeps the runs in the outbox; once Redis is up they run on the worker."""
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    d = Daemon(tmp_path, executor="celery", extra_config=f'[celery]\nbroker_url = "{broker}"\n')
    with d:
        status = d.ctl_json("status")
        assert "cannot reach Redis" in status["executor_waiting"]
        assert "not started yet" in d.ctl("status").stdout
        write_file(d.incoming / "early.h5", b"data")
        wait_for(
            lambda: [r["state"] for r in d.runs_db()] == ["queued"],
            20,
            "the run queued in the outbox",
        )
        (tmp_path / "redis").mkdir()
        server = RedisServer(tmp_path / "redis", port=port)  # on the port the daemon was given
        app = celery_app(CelerySettings(broker_url=broker), name="triggerd-daemon-test-late")
        worker = WorkerProcess(
            tmp_path / "triggerd.toml", WORKER, ["-Q", "task", "-c", "1"], tmp_path / "worker.log"
        )
        try:
            worker.wait_ready(app)
            wait_for(
                lambda: [r["state"] for r in d.runs_db()] == ["succeeded"],
                60,
                "the run once Redis is up",
            )
            assert d.ctl_json("status")["executor_waiting"] is None
            kinds = [e["kind"] for e in d.ctl_json("events", "--kind", "executor")]
            assert set(kinds) == {"executor.waiting", "executor.ready"}
        finally:
            worker.stop()
            app.close()
            d.stop()  # before Redis: a daemon stopping without its Redis waits for it
            server.stop()
