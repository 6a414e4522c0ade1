"""Workflows whose data store is MongoDB: on the local pool and on a Celery worker.

The store's own behaviour is tests/store/; here the executors open it from settings
(``store.backend = "mongodb"``) in every process that runs tasks, and a numpy array
written by one task is read by the next, through GridFS.
"""

from __future__ import annotations

import textwrap
import uuid

import numpy as np
from redis_fixture import WorkerProcess
from support import TEST_KEY, WORKFLOWS, EventCollector

from triggerd.config import load_settings
from triggerd.engine.codec import Codec
from triggerd.engine.factory import make_executor
from triggerd.store.factory import make_store

ARRAYS = """
from triggerd.flow import *
import numpy as np

def make(data, store, signal, context):
    store.set("frame", np.arange(12, dtype=np.uint16).reshape(3, 4))

def read(data, store, signal, context):
    frame = store.get("frame")
    store.set("total", int(frame.sum()))
    store.push("shapes", list(frame.shape))

d = Dag("d")
d.define({PythonTask("make", make, queue=QUEUE): PythonTask("read", read, queue=QUEUE)})
"""


def _config(
    tmp_path,
    mongo_url: str,
    database: str,
    *,
    executor: str,
    redis_url: str = "redis://127.0.0.1:1/0",
):
    wf = tmp_path / "wf"
    wf.mkdir(exist_ok=True)
    path = tmp_path / "triggerd.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [paths]
        state_dir = "{tmp_path / 'state'}"
        workflows = ["{wf}", "{WORKFLOWS}"]
        [executor]
        kind = "{executor}"
        workers = 2
        [store]
        backend = "mongodb"
        url = "{mongo_url}"
        database = "{database}"
        [security]
        hmac_key = "{TEST_KEY.decode()}"
        [celery]
        broker_url = "{redis_url}"
        [log]
        format = "console"
        """)
    )
    return path, wf


def _check(settings, run_id: str) -> None:
    with make_store(settings, Codec(TEST_KEY)) as store:
        doc = store.snapshot(run_id)
    assert doc["data"]["total"] == 66 and doc["data"]["shapes"] == [[3, 4]]
    assert np.array_equal(doc["data"]["frame"], np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert doc["data"]["frame"].dtype == np.uint16
    assert set(doc["meta"]["log"]["d:1"]["tasks"]) == {"make", "read"}


def test_the_local_pool_runs_on_a_mongodb_store(tmp_path, mongo_server):
    """Each pool worker opens the MongoDB store itself; an array crosses tasks via GridFS."""
    config, wf = _config(
        tmp_path, mongo_server.url, f"local_{uuid.uuid4().hex[:8]}", executor="local"
    )
    (wf / "arrays.py").write_text(ARRAYS.replace("QUEUE", "'task'"))
    settings = load_settings(config)
    collector = EventCollector()
    with make_executor(settings, keep_data=True, on_event=collector) as executor:
        result = executor.submit("arrays").wait(60)
    assert result.status == "succeeded", result.failures
    _check(settings, result.run_id)


def test_a_celery_worker_runs_on_a_mongodb_store(
    tmp_path, mongo_server, redis_server, celery_cluster
):
    """A worker configured with the MongoDB store (on a queue of its own) and a submitter
    with the same settings share the run's document; nothing lands in SQLite."""
    config, wf = _config(
        tmp_path,
        mongo_server.url,
        f"celery_{uuid.uuid4().hex[:8]}",
        executor="celery",
        redis_url=redis_server.url,
    )
    (wf / "arrays.py").write_text(ARRAYS.replace("QUEUE", "'mongo'"))
    worker = WorkerProcess(
        config, "mongo@triggerd-test", ["-Q", "mongo", "-c", "1"], tmp_path / "worker.log"
    )
    try:
        worker.wait_ready(celery_cluster.app)
        settings = load_settings(config)
        with make_executor(settings, keep_data=True, on_event=EventCollector()) as executor:
            result = executor.submit("arrays").wait(60)
        assert result.status == "succeeded", result.failures
        _check(settings, result.run_id)
        assert not (tmp_path / "state" / "store.sqlite").exists()
    finally:
        worker.stop()
