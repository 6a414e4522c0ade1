"""The Celery executor against a real Redis and real ``triggerd worker`` processes.

The example workflows run on Celery in tests/test_examples.py; these tests cover what only
a distributed run has: worker names, a worker refusing a different workflow file or
tampered data, stops reaching a worker, queues nobody consumes, signals nobody answers.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis_fixture import MAIN_WORKER, SIGNAL_TIMEOUT, refusals
from support import TEST_KEY, WORKFLOWS, EventCollector, free_port, wait_for

from triggerd.config import CelerySettings, load_settings
from triggerd.engine.celery_executor import CeleryExecutor
from triggerd.engine.codec import Codec, dag_data_of
from triggerd.engine.factory import make_executor
from triggerd.engine.job import TaskJob
from triggerd.engine.local import LocalExecutor
from triggerd.engine.redis_channel import b64, connect
from triggerd.errors import BackendUnavailable, ConfigError
from triggerd.flow import MultiTaskData, TaskData

HEADER = "from triggerd.flow import *\nimport os, time\n"


@pytest.fixture
def executor(celery_cluster, collector):
    """An executor of its own over the test workflows and workflows/; stop grace 1 s."""
    ex = celery_cluster.executor(collector, stop_grace=1.0)
    yield ex
    ex.close()


def happened(collector: EventCollector, run_id: str, kind: str, task: str) -> bool:
    return any(e.kind == kind and e.task == task for e in collector.of(run_id))


def test_tasks_run_on_the_worker_and_say_which(celery_cluster, executor, collector):
    """simple runs on the worker: its events and the store's log name it, the value arrives."""
    result = executor.submit("simple").wait(30)
    assert result.status == "succeeded", result.error
    assert result.tasks["main_dag:1"] == {"put_value": "succeeded", "show_value": "succeeded"}
    doc = celery_cluster.store.snapshot(result.run_id)
    assert doc["data"]["value"] == 5
    log = doc["meta"]["log"]["main_dag:1"]["tasks"]
    assert {entry["worker"] for entry in log.values()} == {MAIN_WORKER}
    started = [e for e in collector.of(result.run_id) if e.kind == "task.started"]
    assert [e.data["worker"] for e in started] == [MAIN_WORKER, MAIN_WORKER]
    assert [e.kind for e in collector.of(result.run_id)] == [
        "run.started",
        "dag.started",
        "task.started",
        "task.succeeded",
        "task.started",
        "task.succeeded",
        "dag.succeeded",
        "run.succeeded",
    ]


def test_a_workflow_file_that_differs_on_the_worker_is_refused(celery_cluster, collector, tmp_path):
    """The submitter's copy of 'sequence' has one more line: the worker refuses the task."""
    (tmp_path / "sequence.py").write_text(
        (WORKFLOWS / "sequence.py").read_text() + "\n# edited here only\n"
    )
    ex = celery_cluster.executor(collector, workflows=[tmp_path])
    try:
        result = ex.submit("sequence").wait(30)
    finally:
        ex.close()
    assert result.status == "failed"
    assert "differs from the one the run was started with" in result.error
    assert result.tasks["main_dag:1"]["first_task"] == "failed"
    assert "second_task" not in celery_cluster.store.snapshot(result.run_id)["meta"].get(
        "log", {}
    ).get("main_dag:1", {}).get("tasks", {})


def _intercept_and_forward(redis_client, queue: str, change_blob) -> str:
    """As a broker writer would: take the job from ``queue``, change its input data, and
    hand it to the 'task' queue the worker consumes; returns its Celery task id."""
    popped = redis_client.blpop([queue], timeout=20)
    assert popped is not None, f"no job arrived on queue '{queue}'"
    envelope = json.loads(popped[1])
    args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
    name, aliases, blob = args[0]["inputs"][0]
    args[0]["inputs"][0] = [name, aliases, b64(change_blob(base64.b64decode(blob)))]
    envelope["body"] = base64.b64encode(json.dumps([args, kwargs, embed]).encode()).decode()
    envelope["properties"]["delivery_info"] = {"exchange": "task", "routing_key": "task"}
    redis_client.lpush("task", json.dumps(envelope))
    return envelope["headers"]["id"]


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def _unsigned(blob: bytes) -> bytes:
    return pickle.dumps({"value": 666})


@pytest.mark.parametrize("change", [_flip_last_byte, _unsigned], ids=["tampered", "unsigned"])
def test_task_data_changed_in_the_broker_is_refused(celery_cluster, executor, change):
    """Input data altered (or replaced by a plain pickle) on its way breaks the job's seal:
    the worker refuses the whole job (an event says so), nothing of it runs or is
    unpickled, and the run does not go on as if it had; stopping it ends it."""
    celery_cluster.write_workflow(
        "intercepted",
        HEADER
        + """
def produce(data, store, signal, context):
    data["value"] = 1
def consume(data, store, signal, context):
    store.set("consumed", data["value"])
d = Dag("d")
d.define({PythonTask("produce", produce): PythonTask("consume", consume, queue="intercept")})
""",
    )
    handle = executor.submit("intercepted")
    task_id = _intercept_and_forward(celery_cluster.redis.client, "intercept", change)
    wait_for(
        lambda: refusals(celery_cluster.redis.client, task_id), 20, "the worker to refuse the job"
    )
    (refused,) = refusals(celery_cluster.redis.client, task_id)
    assert (
        "job message signature does not match" in refused["message"] and refused["level"] == "error"
    )
    assert refused["data"]["claims"]["task"] == "consume"
    assert not handle.done()
    executor.stop_run(handle.run_id)
    result = handle.wait(30)
    assert result.status == "stopped" and result.tasks["d:1"]["produce"] == "succeeded"
    assert "consumed" not in celery_cluster.store.snapshot(handle.run_id)["data"]


def test_stop_run_terminates_a_bash_task_on_the_worker(
    celery_cluster, executor, collector, tmp_path
):
    """stop_run reaches the worker through Redis: the command's process is gone, the run
    ends stopped within seconds and the next task is cancelled."""
    celery_cluster.write_workflow(
        "sleepy",
        HEADER
        + """
parameters = Parameters([Option("pidfile")])
nap = BashTask(
    "nap", lambda data, store: ["sh", "-c", 'echo $$ > "$0"; exec sleep 60', store.get("pidfile")]
)
d = Dag("d")
d.define({nap: PythonTask("after")})
""",
    )
    pidfile = tmp_path / "nap.pid"
    handle = executor.submit("sleepy", {"pidfile": str(pidfile)})
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command to start")
    pid = int(pidfile.read_text())
    os.kill(pid, 0)  # running
    t0 = time.monotonic()
    executor.stop_run(handle.run_id)
    result = handle.wait(10)
    assert time.monotonic() - t0 < 3
    assert result.status == "stopped"
    assert result.tasks["d:1"]["after"] == "cancelled"
    # the command ended because the task saw is_stopped, not because the grace ran out
    assert not any("still running" in e.message for e in collector.of(handle.run_id))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_task_that_ignores_stop_is_revoked_after_the_grace(celery_cluster, executor, collector):
    """A Python task that never looks at is_stopped is given up on after the 1 s grace and
    its pool child terminated; the worker serves the next run."""
    celery_cluster.write_workflow(
        "stubborn",
        HEADER
        + """
d = Dag("d")
d.define({PythonTask("ignore", lambda *a: time.sleep(30)): PythonTask("after")})
""",
    )
    handle = executor.submit("stubborn")
    wait_for(
        lambda: happened(collector, handle.run_id, "task.started", "ignore"),
        what="the task to start",
    )
    t0 = time.monotonic()
    executor.stop_run(handle.run_id)
    result = handle.wait(10)
    assert 0.9 < time.monotonic() - t0 < 5
    assert result.status == "stopped"
    assert result.tasks["d:1"] == {"ignore": "stopped", "after": "cancelled"}
    (stopped,) = [e for e in collector.of(handle.run_id) if e.kind == "task.stopped"]
    assert "still running 1 s after its run was stopped" in stopped.message
    assert executor.submit("sequence").wait(30).status == "succeeded"


def test_a_task_waits_for_a_worker_on_its_queue(celery_cluster, executor, collector):
    """heavy_task (queue 'high_memory') does not run while no worker consumes that queue;
    a stopped run's job is dropped unrun; a worker started with -Q high_memory runs it."""
    waiting = executor.submit("queues")
    wait_for(
        lambda: happened(collector, waiting.run_id, "task.succeeded", "light_task"),
        what="light_task",
    )
    with pytest.raises(TimeoutError):
        waiting.wait(1.0)
    assert waiting.run_id in executor.active_runs()
    assert not happened(collector, waiting.run_id, "task.started", "heavy_task")
    assert celery_cluster.redis.client.llen("high_memory") == 1
    executor.stop_run(waiting.run_id)
    stopped = waiting.wait(10)
    assert stopped.tasks["main_dag:1"] == {
        "light_task": "succeeded",
        "heavy_task": "stopped",
        "report": "cancelled",
    }

    celery_cluster.start_worker("memory@triggerd-test", ["-Q", "high_memory", "-c", "1"])
    result = executor.submit("queues").wait(30)
    assert result.status == "succeeded", result.error
    doc = celery_cluster.store.snapshot(result.run_id)
    log = doc["meta"]["log"]["main_dag:1"]["tasks"]
    assert {task: entry["worker"] for task, entry in log.items()} == {
        "light_task": MAIN_WORKER,
        "heavy_task": "memory@triggerd-test",
        "report": MAIN_WORKER,
    }
    assert doc["data"]["queues"] == {
        "light_task": "task",
        "heavy_task": "high_memory",
        "report": "task",
    }
    # the stopped run's job reached the new worker first and was dropped, not run
    assert celery_cluster.redis.client.llen("high_memory") == 0
    assert (
        "heavy_task"
        not in celery_cluster.store.snapshot(waiting.run_id)["meta"]["log"]["main_dag:1"]["tasks"]
    )


def test_a_signal_nobody_answers_times_out(celery_cluster):
    """With its runner gone, a task's start_dag raises SignalTimeout after signal_timeout
    instead of hanging; the worker still reports the failure to the (dead) runner's inbox."""
    celery_cluster.write_workflow(
        "orphan",
        HEADER
        + """
def spawn(data, store, signal, context):
    signal.start_dag("sub")
main = Dag("main")
main.define({PythonTask("spawn", spawn): None})
sub = Dag("sub", autostart=False)
sub.define({PythonTask("t"): None})
""",
    )
    from triggerd.engine.job import WorkflowCache

    workflow = WorkflowCache([celery_cluster.wf]).get("orphan")
    run_id, inbox = f"orphan-{uuid.uuid4().hex}", f"triggerd:inbox:test-{uuid.uuid4().hex}"
    celery_cluster.store.add(run_id, {"name": "orphan"})
    data = Codec(TEST_KEY).dumps(MultiTaskData(dataset=TaskData()), bind=dag_data_of(run_id))
    job = TaskJob(
        run_id, "orphan", workflow.content_hash, "main:1", "main", "spawn", "task", None, data
    )
    celery_cluster.send_job(job, inbox)
    client = celery_cluster.redis.client
    messages = []
    while not messages or messages[-1]["type"] != "done":
        popped = client.blpop([inbox], timeout=SIGNAL_TIMEOUT + 10)
        assert popped is not None, f"the worker went silent after {messages}"
        messages.append(json.loads(popped[1]))
    assert [m["type"] for m in messages] == ["started", "signal", "done"]
    assert messages[1]["action"] == "start_dag" and messages[1]["payload"]["name"] == "sub"
    outcome = messages[2]["outcome"]
    assert outcome["outcome"] == "failed"
    assert (
        "SignalTimeout" in outcome["message"]
        and f"within {SIGNAL_TIMEOUT:g} s" in outcome["message"]
    )
    assert SIGNAL_TIMEOUT <= outcome["ended"] - outcome["started"] < SIGNAL_TIMEOUT + 3


def test_make_executor_picks_celery_from_settings(celery_cluster, collector):
    """executor.kind = "celery" in the workers' own config file gives a CeleryExecutor
    that runs a workflow on them (same store, same HMAC key)."""
    settings = load_settings(celery_cluster.config, overrides={"executor": {"kind": "celery"}})
    ex = make_executor(settings, keep_data=True, on_event=collector)
    assert isinstance(ex, CeleryExecutor)
    with ex:
        result = ex.submit("simple").wait(30)
    assert result.status == "succeeded", result.error
    assert celery_cluster.store.snapshot(result.run_id)["data"]["value"] == 5
    local = make_executor(load_settings(celery_cluster.config))
    assert isinstance(local, LocalExecutor)  # built, never started: nothing to close


def test_celery_settings_mask_passwords_and_want_a_redis_url(tmp_path):
    """config show hides the broker password; a non-Redis broker URL is refused by key."""
    config = tmp_path / "triggerd.toml"
    config.write_text(
        '[executor]\nkind = "celery"\n[celery]\nbroker_url = "redis://:s3cret@redis.example:6379/2"\n'
    )
    shown = load_settings(config).to_toml_dict()["celery"]
    assert shown["broker_url"] == "redis://:***@redis.example:6379/2"
    assert shown["signal_timeout"] == 30.0 and shown["visibility_timeout"] == 300.0
    config.write_text('[celery]\nbroker_url = "amqp://guest@rabbit//"\n')
    with pytest.raises(ConfigError, match=r"key 'celery.broker_url': expected a Redis URL"):
        load_settings(config)


def test_an_unreachable_redis_is_a_clear_error_at_start(tmp_path):
    """No Redis at the broker URL: start() raises BackendUnavailable naming the URL
    (password masked) and what to do, instead of a redis-py traceback."""
    port = free_port()  # nothing listens there
    settings = CelerySettings(broker_url=f"redis://:pw@127.0.0.1:{port}/0")
    ex = CeleryExecutor(workflows=[WORKFLOWS], celery=settings, codec=Codec(TEST_KEY))
    with pytest.raises(BackendUnavailable) as caught:
        ex.start()
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "pw" not in message
    assert "celery.broker_url" in message


def triggerctl(*args: str, config) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).parent / "triggerctl"
    return subprocess.run(
        [str(binary), *args, "--config", str(config)], capture_output=True, text=True, timeout=60
    )


def test_triggerctl_workers_lists_workers_and_the_tasks_they_run(
    celery_cluster, executor, collector, tmp_path
):
    """`triggerctl workers --json` names each worker with its pid, queues, concurrency
    and the task it runs at this moment; the table shows the same."""
    config = tmp_path / "ctl.toml"
    config.write_text(
        f'[executor]\nkind = "celery"\n[celery]\nbroker_url = "{celery_cluster.redis.url}"\n'
    )
    celery_cluster.write_workflow(
        "napping",
        HEADER + 'd = Dag("d")\nd.define({PythonTask("nap", lambda *a: time.sleep(6)): None})\n',
    )
    handle = executor.submit("napping")
    wait_for(
        lambda: happened(collector, handle.run_id, "task.started", "nap"), what="the task to start"
    )
    done = triggerctl("workers", "--json", config=config)
    assert done.returncode == 0, done.stderr
    (main,) = [w for w in json.loads(done.stdout) if w["name"] == MAIN_WORKER]
    assert main["pid"] == celery_cluster.worker.process.pid
    assert main["queues"] == ["dag", "task", "workflow"] and main["concurrency"] == 2
    (job,) = main["running"]
    assert (job["run_id"], job["workflow"], job["dag"], job["task"]) == (
        handle.run_id,
        "napping",
        "d:1",
        "nap",
    )
    assert abs(job["started"] - time.time()) < 10
    table = triggerctl("workers", config=config).stdout
    assert MAIN_WORKER in table and "napping/d:1/nap" in table
    assert handle.wait(30).status == "succeeded"


def test_triggerctl_workers_stop_shuts_one_worker_down(celery_cluster, tmp_path):
    """`triggerctl workers stop NAME` ends that worker's process (warm shutdown) and no
    other; an unknown name is an error naming it; without a name or --all it refuses."""
    config = tmp_path / "ctl.toml"
    config.write_text(
        f'[executor]\nkind = "celery"\n[celery]\nbroker_url = "{celery_cluster.redis.url}"\n'
    )
    doomed = celery_cluster.start_worker("doomed@triggerd-test", ["-Q", "doomed", "-c", "1"])
    done = triggerctl("workers", "stop", "doomed@triggerd-test", config=config)
    assert done.returncode == 0, done.stderr
    assert "doomed@triggerd-test: shutting down" in done.stdout
    doomed.process.wait(20)
    assert celery_cluster.worker.process.poll() is None
    missing = triggerctl("workers", "stop", "ghost@nowhere", config=config)
    assert missing.returncode == 1 and "ghost@nowhere" in missing.stderr
    assert triggerctl("workers", "stop", config=config).returncode == 2


def test_triggerctl_workers_says_when_the_executor_is_local(tmp_path):
    """With the embedded default there are no workers to show: a clear error, exit 2."""
    config = tmp_path / "local.toml"
    config.write_text('[executor]\nkind = "local"\n')
    done = triggerctl("workers", config=config)
    assert done.returncode == 2 and 'executor.kind = "celery"' in done.stderr


def test_a_blocking_wait_longer_than_redis_py_socket_timeout_is_not_cut_short(redis_server):
    """BLPOP waits as long as asked: 7 s here, past redis-py 8's default 5 s socket
    timeout, which used to raise and retry (so join_dags on long sub-DAGs failed)."""
    client = connect(redis_server.url)
    key = f"test:{uuid.uuid4().hex}"
    t0 = time.monotonic()
    assert client.blpop([key], timeout=7) is None
    assert 6.9 < time.monotonic() - t0 < 8
    client.close()
