"""Whoever can write to Redis cannot make anyone run anything (issue 12, part 2).

On the real broker and workers: a job that is unsigned, altered in any field, replayed
under another task id, or sealed without its workflow's content hash is refused by the
worker (a ``job.refused`` event, nothing runs, no file is created, the runner hears
nothing); signed data moved into another run is refused before it is unpickled. On the
runner's side: a completion, a reply or a stop flag that does not carry the key's seal
changes nothing.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis_fixture import SIGNAL_TIMEOUT, refusals
from support import TEST_KEY, wait_for

from triggerd.engine.codec import Codec, dag_data_of
from triggerd.engine.job import TaskJob, WorkflowCache
from triggerd.engine.protocol import TASK_NAME, job_message
from triggerd.engine.redis_channel import INBOX, REPLY, RedisChannel, stop_key
from triggerd.flow import MultiTaskData, TaskData

HEADER = "from triggerd.flow import *\nimport time\n"

# The task creates the file named by the run's "out" parameter: proof that it ran.
TOUCH = (
    HEADER
    + """
def touch(data, store, signal, context):
    open(store.get("out"), "w").close()
d = Dag("d")
d.define({PythonTask("touch", touch): None})
"""
)

# A task that runs a while, polling its stop flag, and says whether it saw a stop.
POLLS = (
    HEADER
    + """
parameters = Parameters([Option("out"), Option("hold", default=3.0, type=float)])
def polls(data, store, signal, context):
    deadline = time.monotonic() + store.get("hold")
    while time.monotonic() < deadline and not signal.is_stopped:
        time.sleep(0.05)
    data["stopped"] = signal.is_stopped
d = Dag("d")
d.define({PythonTask("polls", polls): None})
"""
)

CODEC = Codec(TEST_KEY)


@pytest.fixture
def executor(celery_cluster, collector):
    ex = celery_cluster.executor(collector, stop_grace=1.0)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def touch(celery_cluster):
    celery_cluster.write_workflow("touch", TOUCH)
    celery_cluster.write_workflow("polls", POLLS)
    return WorkflowCache([celery_cluster.wf]).get("touch")


def new_run(celery_cluster, tmp_path: Path) -> tuple[str, Path]:
    """A run document whose "out" names a file no one has created yet."""
    run_id = f"forged-{uuid.uuid4().hex}"
    out = tmp_path / f"{run_id}.touched"
    celery_cluster.store.add(run_id, {"name": "touch"})
    celery_cluster.store.get(run_id).set("out", str(out))
    return run_id, out


def job_for(
    touch, run_id: str, *, dag_data: bytes | None = None, content_hash: str | None = None
) -> TaskJob:
    data = (
        dag_data
        if dag_data is not None
        else CODEC.dumps(MultiTaskData(dataset=TaskData()), bind=dag_data_of(run_id))
    )
    return TaskJob(
        run_id,
        "touch",
        touch.content_hash if content_hash is None else content_hash,
        "d:1",
        "d",
        "touch",
        "task",
        None,
        data,
    )


def send(celery_cluster, message: dict[str, Any], task_id: str) -> None:
    celery_cluster.app.send_task(
        TASK_NAME, args=[message], task_id=task_id, queue="task", routing_key="task"
    )


def assert_refused(celery_cluster, task_id: str, inbox: str, out: Path, reason: str) -> None:
    client = celery_cluster.redis.client
    wait_for(lambda: refusals(client, task_id), 20, "the worker to refuse the job")
    (event,) = refusals(client, task_id)
    assert reason in event["message"], event["message"]
    assert event["level"] == "error" and "nothing of it ran" in event["message"]
    assert not out.exists()
    assert client.llen(inbox) == 0  # the runner is told nothing


def test_a_sealed_job_runs(celery_cluster, touch, tmp_path):
    """The control: the same job, sealed and sent under its own task id, runs."""
    run_id, out = new_run(celery_cluster, tmp_path)
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    send(celery_cluster, job_message(job_for(touch, run_id), inbox, task_id, CODEC), task_id)
    wait_for(out.exists, 20, "the task to create its file")
    assert refusals(celery_cluster.redis.client, task_id) == []


def test_an_unsigned_job_is_refused(celery_cluster, touch, tmp_path):
    run_id, out = new_run(celery_cluster, tmp_path)
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    message = job_message(job_for(touch, run_id), inbox, task_id, CODEC)
    del message["sig"]
    send(celery_cluster, message, task_id)
    assert_refused(celery_cluster, task_id, inbox, out, "unsigned job message")


def test_a_job_signed_with_another_key_is_refused(celery_cluster, touch, tmp_path):
    run_id, out = new_run(celery_cluster, tmp_path)
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    send(
        celery_cluster,
        job_message(job_for(touch, run_id), inbox, task_id, Codec(b"k" * 32)),
        task_id,
    )
    assert_refused(celery_cluster, task_id, inbox, out, "signature does not match")


def _changed(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "x"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("A" if value[-1:] != "A" else "B")
    return [["touch", [], base64.b64encode(b"TD2").decode()]]  # inputs


FIELDS = [
    "v",
    "run_id",
    "workflow",
    "content_hash",
    "dag",
    "blueprint",
    "task",
    "queue",
    "inputs",
    "dag_data",
    "reply_to",
    "rule",
    "attempt",
    "job_id",
]


def test_the_seal_covers_every_field_a_worker_reads():
    """Every field of a job message is in FIELDS, so the test below alters each one."""
    message = job_message(
        TaskJob("r", "w", "0" * 64, "d:1", "d", "t", "task", None, None), "inbox", "id", CODEC
    )
    assert sorted(message) == sorted([*FIELDS, "sig"])


@pytest.mark.parametrize("field", FIELDS)
def test_a_job_altered_in_any_field_is_refused(celery_cluster, touch, tmp_path, field):
    run_id, out = new_run(celery_cluster, tmp_path)
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    message = job_message(job_for(touch, run_id), inbox, task_id, CODEC)
    message[field] = _changed(message[field])
    send(celery_cluster, message, task_id)
    assert_refused(celery_cluster, task_id, inbox, out, "signature does not match")


def test_a_job_replayed_under_another_task_id_is_refused(celery_cluster, touch, tmp_path):
    """A captured job sent again as a new Celery task (the worker would take it for a new
    job): it was sealed for its own task id, so the copy is refused."""
    run_id, out = new_run(celery_cluster, tmp_path)
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    replay_id = uuid.uuid4().hex
    send(celery_cluster, job_message(job_for(touch, run_id), inbox, task_id, CODEC), replay_id)
    assert_refused(celery_cluster, replay_id, inbox, out, "replayed?")


def test_a_sealed_job_without_a_content_hash_is_refused(celery_cluster, touch, tmp_path):
    """An empty hash used to skip the check that the worker runs the submitter's file."""
    run_id, out = new_run(celery_cluster, tmp_path)
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    send(
        celery_cluster,
        job_message(job_for(touch, run_id, content_hash=""), inbox, task_id, CODEC),
        task_id,
    )
    assert_refused(celery_cluster, task_id, inbox, out, "content hash")


def test_data_signed_for_another_run_is_refused_before_it_is_unpickled(
    celery_cluster, touch, tmp_path
):
    """Signed data of run A in a (validly sealed) job of run B: the task fails with
    PayloadRejected before its code runs; nothing is unpickled, no file is created."""
    other, _ = new_run(celery_cluster, tmp_path)
    run_id, out = new_run(celery_cluster, tmp_path)
    moved = CODEC.dumps(MultiTaskData(dataset=TaskData()), bind=dag_data_of(other))
    inbox, task_id = f"triggerd:inbox:test-{uuid.uuid4().hex}", uuid.uuid4().hex
    send(
        celery_cluster,
        job_message(job_for(touch, run_id, dag_data=moved), inbox, task_id, CODEC),
        task_id,
    )
    client = celery_cluster.redis.client
    messages: list[dict] = []
    while not messages or messages[-1]["type"] != "done":
        popped = client.blpop([inbox], timeout=20)
        assert popped is not None, f"the worker went silent after {messages}"
        messages.append(CODEC.unseal(INBOX, json.loads(popped[1])))
    outcome = messages[-1]["outcome"]
    assert outcome["outcome"] == "failed"
    assert "PayloadRejected" in outcome["message"] and "another run or task" in outcome["message"]
    assert not out.exists()


# -- the runner's side ---------------------------------------------------------------------


def test_forged_completions_on_the_inbox_change_nothing(
    celery_cluster, executor, collector, tmp_path
):
    """While a task runs, an unsigned 'done' and one signed with another key arrive on
    the executor's inbox for it: both are refused (message.refused events), the task's
    real completion ends it, and the run succeeds."""
    handle = executor.submit("polls", {"out": str(tmp_path / "x"), "hold": 2.0})
    wait_for(
        lambda: any(e.kind == "task.started" for e in collector.of(handle.run_id)),
        20,
        "the task to start",
    )
    forged = {
        "type": "done",
        "run_id": handle.run_id,
        "dag": "d:1",
        "task": "polls",
        "worker": "mallory",
        "outcome": {"outcome": "failed", "message": "forged"},
    }
    client = celery_cluster.redis.client
    inbox = f"triggerd:inbox:{executor._id}"
    client.rpush(inbox, json.dumps(forged))
    client.rpush(inbox, json.dumps(Codec(b"m" * 32).seal(INBOX, forged)))
    result = handle.wait(30)
    assert result.status == "succeeded", result.error
    refused = [e for e in collector.of("") if e.kind == "message.refused"]
    assert len(refused) == 2
    assert (
        "unsigned inbox message" in refused[0].message
        and "signature does not match" in refused[1].message
    )


def test_a_stop_flag_set_by_someone_else_stops_nothing(
    celery_cluster, executor, collector, tmp_path
):
    """A stop flag written straight into Redis (any value but the runner's tag) is not a
    stop: the polling task runs its full time and the run succeeds."""
    handle = executor.submit("polls", {"out": str(tmp_path / "x"), "hold": 2.0})
    wait_for(
        lambda: any(e.kind == "task.started" for e in collector.of(handle.run_id)),
        20,
        "the task to start",
    )
    for dag in ("d:1", "*"):
        celery_cluster.redis.client.set(stop_key(handle.run_id, 1, dag), "1")
    result = handle.wait(30)
    assert result.status == "succeeded", result.error
    assert result.tasks["d:1"]["polls"] == "succeeded"


def test_a_forged_reply_to_a_signal_is_ignored(celery_cluster):
    """A task waits for the answer to its signal; a reply pushed by someone else (unsigned,
    or sealed for another request) is ignored, the runner's is returned."""
    client = celery_cluster.redis.client
    inbox = f"triggerd:inbox:test-{uuid.uuid4().hex}"
    channel = RedisChannel(
        client, run_id="r", dag="d:1", inbox=inbox, codec=CODEC, timeout=SIGNAL_TIMEOUT
    )
    answer: list[dict] = []
    asking = threading.Thread(
        target=lambda: answer.append(channel.request("join_dags", {"names": []}))
    )
    asking.start()
    popped = client.blpop([inbox], timeout=10)
    assert popped is not None
    request = CODEC.unseal(INBOX, json.loads(popped[1]))
    client.rpush(request["reply_to"], json.dumps({"ok": False, "error": "forged"}))
    client.rpush(
        request["reply_to"], json.dumps(CODEC.seal(REPLY, {"ok": False, "request_id": "another"}))
    )
    client.rpush(
        request["reply_to"],
        json.dumps(CODEC.seal(REPLY, {"ok": True, "request_id": request["request_id"]})),
    )
    asking.join(10)
    assert answer == [{"ok": True}]
