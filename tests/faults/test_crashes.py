"""Processes killed while work flows: the daemon (kill -9, runs on the workers), a worker
(kill -9 mid-task), every worker gone for a while. Nothing lost, nothing doubled, nothing
falsely succeeded; a run resumes where it was.
"""

from __future__ import annotations

import time

import pytest
from deployment import FULL, Deployment, Load
from report import record
from support import wait_for

pytestmark = pytest.mark.timeout(900 if FULL else 300)

CRASH_LOAD = (
    Load(files=40, rate=10.0, outage=10.0) if FULL else Load(files=12, rate=10.0, outage=4.0)
)


def test_daemon_killed_with_runs_on_the_workers_resumes_them(tmp_path):
    """kill -9 of the daemon while runs are on the workers (tasks take 1 s each): tasks
    that finished before or during the restart are not run again, the others run once,
    and every run ends succeeded."""
    with Deployment(tmp_path, hold=1.0) as d:
        paths = d.drop(CRASH_LOAD.files, CRASH_LOAD.rate, "crash")
        # mid-way: some tasks have ended, runs are on the workers
        wait_for(
            lambda: (
                sum(d.executions().values()) >= CRASH_LOAD.files
                and sum(r["state"] == "running" for r in d.runs()) >= 2
            ),
            60,
            "runs half done on the workers",
        )
        d.kill_daemon()
        time.sleep(CRASH_LOAD.outage)  # tasks finish on the workers meanwhile
        d.start_daemon()
        back = time.monotonic()
        settled = d.wait_settled(paths, timeout=180)
        audit = d.audit(paths)
    record(
        "daemon kill -9",
        load=CRASH_LOAD.describe() + ", 3 tasks of 1 s",
        injected=f"daemon kill -9 with runs on the workers, down {CRASH_LOAD.outage:g} s",
        audit=audit,
        recovery=settled - back,
        reproduce="make faults FAULTS_ARGS='-k daemon_killed'",
    )
    audit.assert_clean()
    resumed = [r for r in d.runs() if r["attempts"] > 1]
    assert resumed, "no run was resumed: the crash came too late to test anything"
    log = d.daemon_log.read_text()
    assert "resumed (attempt 2)" in log and "tasks had ended" in log


def test_a_worker_killed_mid_task_hands_its_tasks_to_the_other(tmp_path):
    """kill -9 of one whole worker while tasks run on it: after the visibility timeout its
    jobs run on the other worker. Only tasks that were running on the killed worker may
    run twice; nothing is lost."""
    with Deployment(tmp_path, hold=1.0, visibility_timeout=6.0) as d:
        victim = d.workers[0]
        killed: list[float] = []

        def during(i: int) -> None:
            if i == CRASH_LOAD.files // 2:
                d.kill_worker(victim)
                killed.append(time.monotonic())

        paths = d.drop(CRASH_LOAD.files, CRASH_LOAD.rate, "wkill", during=during)
        settled = d.wait_settled(paths, timeout=180)
        audit = d.audit(paths, reexecution_allowed=True)
    record(
        "worker kill -9",
        load=CRASH_LOAD.describe() + ", 3 tasks of 1 s",
        injected="one of two workers kill -9 mid-task",
        audit=audit,
        recovery=settled - killed[0],
        expected="one run per file; a task re-run only where its worker died",
        reproduce="make faults FAULTS_ARGS='-k worker_killed'",
    )
    audit.assert_clean()
    # at most what the killed worker (-c 2) was running, per its two slots
    assert len(audit.reexecuted) <= 2 * 2


def test_every_worker_gone_for_a_while_then_back(tmp_path):
    """All workers killed (-9) mid-stream; new ones start after an outage: queued jobs
    wait in Redis, the killed workers' jobs come back after the visibility timeout, and
    every file runs once."""
    with Deployment(tmp_path, hold=0.5, visibility_timeout=6.0) as d:
        gone: list[float] = []

        def during(i: int) -> None:
            if i == CRASH_LOAD.files // 3:
                for worker in list(d.workers):
                    d.kill_worker(worker)
                gone.append(time.monotonic())

        paths = d.drop(CRASH_LOAD.files, CRASH_LOAD.rate, "nowork", during=during)
        # the input: no worker at all for CRASH_LOAD.outage seconds
        time.sleep(max(0.0, gone[0] + CRASH_LOAD.outage - time.monotonic()))
        for name in ("w3@faults", "w4@faults"):
            d.start_worker(name, wait=False)
        back = time.monotonic()
        status = d.status()
        settled = d.wait_settled(paths, timeout=180)
        audit = d.audit(paths, reexecution_allowed=True)
    record(
        "all workers gone",
        load=CRASH_LOAD.describe() + ", 3 tasks of 0.5 s",
        injected=f"both workers kill -9, new ones {CRASH_LOAD.outage:g} s later",
        audit=audit,
        recovery=settled - back,
        expected="one run per file; a task re-run only where its worker died",
        reproduce="make faults FAULTS_ARGS='-k every_worker'",
    )
    audit.assert_clean()
    # the runs waited, they did not fail
    assert status["runs"]["running"] + status["runs"]["submitted"] > 0
