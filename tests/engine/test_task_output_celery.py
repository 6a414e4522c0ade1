"""On Celery workers, what tasks print and log is appended to the Redis events stream.

Real redis-server and ``triggerd worker`` processes (tests/redis_fixture.py). The stream
is read as the daemon's forwarder would, with XRANGE; nothing in the runner consumes it.
"""

from __future__ import annotations

import json
import uuid

import pytest
from redis_fixture import MAIN_WORKER, SIGNAL_TIMEOUT, stream_docs
from support import TEST_KEY, overlapping_pair

from triggerd.engine.codec import Codec, dag_data_of
from triggerd.engine.job import TaskJob, WorkflowCache
from triggerd.flow import MultiTaskData, TaskData

HEADER = "from triggerd.flow import *\nimport logging, os, sys, time\nimport structlog\n"


@pytest.fixture
def executor(celery_cluster, collector):
    ex = celery_cluster.executor(collector, stop_grace=1.0)
    yield ex
    ex.close()


def stream_events(client, run_id: str) -> list[dict]:
    """The run's events in the stream, in stream order."""
    return [doc for doc in stream_docs(client) if doc["run"] == run_id]


def shape(docs: list[dict], task: str) -> list[tuple]:
    return [
        (d["kind"], d["message"], d["level"], d["data"].get("stream"))
        for d in docs
        if d["task"] == task
    ]


TALK = (
    HEADER
    + """
def talk(data, store, signal, context):
    print("hello from", context.task_name)
    logging.getLogger("beamline").info("frames %d", 7)
    structlog.get_logger("beamline.sl").warning("beam dump", sample="lyso")
    sys.stderr.write("careful\\n")
    print("caf\\udce9 nul\\x00", end="")
d = Dag("d")
d.define({PythonTask("talk", talk): BashTask("shell", ["sh", "-c", "echo out; echo err >&2"])})
"""
)


def test_a_tasks_events_are_in_the_stream_before_its_done_message(celery_cluster):
    """Sent straight to the worker with an inbox of our own: when the 'done' message
    arrives, every output and log event of the task is already in the stream, bound to
    its run, DAG, task and worker, and the worker's print redirection adds no log event."""
    celery_cluster.write_workflow("talk_direct", TALK)
    workflow = WorkflowCache([celery_cluster.wf]).get("talk_direct")
    run_id, inbox = f"talk-{uuid.uuid4().hex}", f"triggerd:inbox:test-{uuid.uuid4().hex}"
    celery_cluster.store.add(run_id, {"name": "talk_direct"})
    data = Codec(TEST_KEY).dumps(MultiTaskData(dataset=TaskData()), bind=dag_data_of(run_id))
    job = TaskJob(
        run_id, "talk_direct", workflow.content_hash, "d:1", "d", "talk", "task", None, data
    )
    celery_cluster.send_job(job, inbox)
    client = celery_cluster.redis.client
    messages: list[dict] = []
    while not messages or messages[-1]["type"] != "done":
        popped = client.blpop([inbox], timeout=SIGNAL_TIMEOUT + 20)
        assert popped is not None, f"the worker went silent after {messages}"
        messages.append(json.loads(popped[1]))
    docs = stream_events(client, run_id)  # read at once: nothing may still be on its way
    assert messages[-1]["outcome"]["outcome"] == "succeeded"
    assert shape(docs, "talk") == [
        ("output", "hello from talk", "info", "stdout"),
        ("log", "frames 7", "info", None),
        ("log", "beam dump", "warning", None),
        ("output", "careful", "info", "stderr"),
        ("output", "caf\\xe9 nul\x00", "info", "stdout"),
    ]
    for doc in docs:
        assert (doc["workflow"], doc["dag"], doc["task"], doc["worker"]) == (
            "talk_direct",
            "d:1",
            "talk",
            MAIN_WORKER,
        )
    assert docs[2]["data"] == {"logger": "beamline.sl", "fields": {"sample": "lyso"}}
    assert [d["id"] for d in docs] == sorted(d["id"] for d in docs)


def test_events_of_a_run_on_the_worker(celery_cluster, executor, collector):
    """A run through the executor: its tasks' output, the BashTask's with the command's
    pid, lands in the stream, each event naming the rule that started the run; the
    executor's sinks get only its own run/dag/task events."""
    celery_cluster.write_workflow("talk_run", TALK)
    result = executor.submit("talk_run", rule="rule-7").wait(30)
    assert result.status == "succeeded", result.error
    docs = stream_events(celery_cluster.redis.client, result.run_id)
    assert docs and {d["rule"] for d in docs} == {"rule-7"}
    assert [m for _, m, _, _ in shape(docs, "talk")] == [
        "hello from talk",
        "frames 7",
        "beam dump",
        "careful",
        "caf\\xe9 nul\x00",
    ]
    shell = [d for d in docs if d["task"] == "shell"]
    assert sorted((d["message"], d["data"]["stream"]) for d in shell) == [
        ("err", "stderr"),
        ("out", "stdout"),
    ]
    assert len({d["data"]["pid"] for d in shell}) == 1
    assert not [e for e in collector.of(result.run_id) if e.kind in ("output", "log")]


def test_tasks_running_at_once_in_one_threads_worker_do_not_mix(celery_cluster, executor, tmp_path):
    """A worker with -P threads runs two tasks at once in one process: each one's prints
    and records are its own events, none attributed to the other."""
    celery_cluster.start_worker(
        "threads@triggerd-test", ["-Q", "threaded", "-P", "threads", "-c", "2"]
    )
    celery_cluster.write_workflow("pair_threads", HEADER + overlapping_pair("threaded"))
    result = executor.submit("pair_threads", {"rendezvous": str(tmp_path)}).wait(60)
    assert result.status == "succeeded", result.error
    docs = stream_events(celery_cluster.redis.client, result.run_id)
    for me in ("left", "right"):
        expected = []
        for i in range(30):
            expected += [("output", f"{me} {i}"), ("log", f"{me} logged {i}")]
        assert [(d["kind"], d["message"]) for d in docs if d["task"] == me] == expected
    assert {d["pid"] for d in docs} == {next(d["pid"] for d in docs)}  # one process
    assert {d["worker"] for d in docs} == {"threads@triggerd-test"}
