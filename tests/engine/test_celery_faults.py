"""Faults on a Celery cluster: a worker killed with kill -9 mid-task, Redis restarted mid-run.

These tests break things, so they get a cluster of their own (a Redis and two workers,
one task at a time each, a 6 s visibility timeout) and never touch the session's.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from redis_fixture import RedisServer, cluster
from support import wait_for

HEADER = "from triggerd.flow import *\nimport os, time\n"
SECOND_WORKER = "second@triggerd-test"

# A task that writes "<worker main pid> <pool child pid>" to a file when it starts, then
# takes a while: long enough to be killed mid-task.
SLOW = (
    HEADER
    + """
parameters = Parameters([Option("out"), Option("hold", default=3.0, type=float)])

def slow(data, store, signal, context):
    with open(store.get("out"), "a") as f:
        f.write(f"{{os.getppid()}} {{os.getpid()}}\\n")
    time.sleep(store.get("hold"))
    data["attempts"] = len(open(store.get("out")).read().splitlines())
    return Action(data)

d = Dag("d")
d.define({{PythonTask("slow", slow, idempotent={idempotent}): PythonTask("after")}})
"""
)


# A task that waits to be stopped (up to "hold" s) and writes down whether it saw the stop.
WAITS_FOR_STOP = (
    HEADER
    + """
parameters = Parameters([Option("out"), Option("hold", default=30.0, type=float)])

def waits(data, store, signal, context):
    open(store.get("out") + ".started", "w").close()
    deadline = time.monotonic() + store.get("hold")
    while time.monotonic() < deadline and not signal.is_stopped:
        time.sleep(0.1)
    with open(store.get("out"), "w") as f:
        f.write("stopped" if signal.is_stopped else "not stopped")

d = Dag("d")
d.define({PythonTask("waits", waits): PythonTask("after")})
"""
)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """Its own Redis and two workers (-c 1 each), so breaking them harms no other test."""
    root = tmp_path_factory.mktemp("celery-faults")
    server = RedisServer(root)
    try:
        with cluster(root, server, worker_args=["-c", "1"], visibility_timeout=6.0) as running:
            running.start_worker(SECOND_WORKER, ["-c", "1"])
            running.write_workflow("slow_idempotent", SLOW.format(idempotent=True))
            running.write_workflow("slow_once", SLOW.format(idempotent=False))
            yield running
    finally:
        server.stop()


@pytest.fixture
def executor(faulty, collector):
    ex = faulty.executor(collector, stop_grace=1.0)
    yield ex
    ex.close()


def attempts(out: Path) -> list[tuple[int, int]]:
    if not out.exists():
        return []
    return [tuple(map(int, line.split())) for line in out.read_text().splitlines()]


def worker_by_pid(faulty, pid: int):
    (worker,) = [w for w in [faulty.worker, *faulty.extra_workers] if w.process.pid == pid]
    return worker


def test_a_task_that_is_not_idempotent_fails_instead_of_running_twice(
    faulty, executor, collector, tmp_path
):
    """The same kill, with idempotent=False: the redelivered job is refused, the run
    fails with a message saying why, the task ran exactly once and 'after' never ran."""
    out = tmp_path / "attempts"
    handle = executor.submit("slow_once", {"out": str(out), "hold": 2.0})
    wait_for(lambda: len(attempts(out)) == 1, 20, "the first attempt to start")
    # kill only the pool child: Celery's main process sees the worker lost and gives the
    # job back at once (task_reject_on_worker_lost), no visibility timeout involved
    os.kill(attempts(out)[0][1], signal.SIGKILL)
    result = handle.wait(30)
    assert result.status == "failed"
    assert result.tasks["d:1"]["slow"] == "failed" and result.tasks["d:1"]["after"] != "succeeded"
    assert len(attempts(out)) == 1
    (failure,) = result.failures
    assert "lost mid-task" in failure["error"] and "idempotent=False" in failure["error"]


def test_redis_restarted_empty_mid_run_loses_nothing_and_runs_nothing_twice(
    faulty, executor, collector, tmp_path
):
    """Redis killed and restarted without its data while a task runs: the running task's
    worker reports to the new Redis, its successor is sent there, the run succeeds and
    the task ran once; a run submitted right after succeeds too."""
    out = tmp_path / "attempts"
    handle = executor.submit("slow_idempotent", {"out": str(out), "hold": 2.0})
    wait_for(lambda: len(attempts(out)) == 1, 20, "the task to start")
    faulty.redis.restart(down=1.0)
    result = handle.wait(60)
    assert result.status == "succeeded", result.error
    assert result.tasks["d:1"] == {"slow": "succeeded", "after": "succeeded"}
    assert len(attempts(out)) == 1
    again = executor.submit("slow_idempotent", {"out": str(tmp_path / "again"), "hold": 0.0})
    assert again.wait(60).status == "succeeded"


def test_a_stop_asked_while_redis_is_away_reaches_the_task_when_it_is_back(tmp_path, collector):
    """Redis (persistent: a service restart keeps its data) away for longer than any
    client's retries (11 s; redis-py's 8 retries give up after ~9 s): a stop asked
    meanwhile is not lost with the failed write,
    and the task that polls for it does not fail with the outage; it sees the stop once
    Redis answers again. (Its own cluster: nothing but the resent write can stop it.)"""
    server = RedisServer(tmp_path, appendonly=True)
    try:
        with cluster(tmp_path, server, worker_args=["-c", "1"]) as running:
            running.write_workflow("waits_for_stop", WAITS_FOR_STOP)
            # no forced end: one stop, one write
            executor = running.executor(collector, stop_grace=None)
            try:
                out = tmp_path / "saw"
                handle = executor.submit("waits_for_stop", {"out": str(out), "hold": 60.0})
                wait_for(lambda: Path(f"{out}.started").exists(), 20, "the task to start")
                server.stop()
                try:
                    executor.stop_run(handle.run_id)
                    time.sleep(11.0)
                finally:
                    server.start()
                wait_for(out.exists, 30, "the task to end")
                assert out.read_text() == "stopped"
                assert handle.wait(30).status == "stopped"
            finally:
                executor.close()
    finally:
        server.stop()


def test_a_task_longer_than_the_visibility_timeout_runs_once(faulty, executor, collector, tmp_path):
    """Celery gives out a job again once it is unacknowledged for the visibility timeout
    (6 s here), even though its worker is alive and busy: the second worker sees the
    first one's heartbeat and drops the copy. The 9 s task ran once, the run succeeded."""
    out = tmp_path / "attempts"
    received_before = deliveries(faulty)
    result = executor.submit("slow_idempotent", {"out": str(out), "hold": 9.0}).wait(60)
    assert result.status == "succeeded", result.error
    assert deliveries(faulty) - received_before >= 2  # Celery did deliver it again
    assert len(attempts(out)) == 1
    assert not [e for e in collector.of(result.run_id) if e.kind == "task.retried"]


def deliveries(faulty) -> int:
    """How often the workers have received a job of the 'slow' task so far (their logs)."""
    logs = "".join(p.read_text() for p in faulty.root.glob("*.log"))
    return sum(1 for line in logs.splitlines() if "/d:1/slow[" in line and "received" in line)


def test_a_worker_killed_mid_task_hands_the_task_to_another_worker(
    faulty, executor, collector, tmp_path
):
    """kill -9 of the whole worker (main process and pool) while it runs a task: after
    the visibility timeout the other worker runs it again, the run succeeds, and the
    event log says the task was retried. (Last in this module: one worker stays dead.)"""
    out = tmp_path / "attempts"
    handle = executor.submit("slow_idempotent", {"out": str(out), "hold": 2.0})
    wait_for(lambda: len(attempts(out)) == 1, 20, "the first attempt to start")
    first_worker = worker_by_pid(faulty, attempts(out)[0][0])
    os.killpg(first_worker.process.pid, signal.SIGKILL)
    first_worker.process.wait()
    result = handle.wait(60)
    assert result.status == "succeeded", result.error
    assert result.tasks["d:1"] == {"slow": "succeeded", "after": "succeeded"}
    (first, second) = attempts(out)
    assert first[0] != second[0]  # another worker's pool
    assert (
        faulty.store.snapshot(result.run_id)["meta"]["log"]["d:1"]["tasks"]["slow"]["end_time"] > 0
    )
    retried = [e for e in collector.of(handle.run_id) if e.kind == "task.retried"]
    assert len(retried) == 1 and retried[0].task == "slow" and "lost mid-task" in retried[0].message
