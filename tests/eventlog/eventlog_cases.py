"""Hand-made event sequences for the event log tests: what the daemon and the engine
emit for a run that succeeds and for one that fails, with times one second apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from triggerd.eventlog.schema import LogEvent

__all__ = ["BASE", "SOURCE", "TRACEBACK", "Clock", "failed_run", "successful_run"]

BASE = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)
SOURCE = {
    "path": "/data/mx1/visit1/raw/a.h5",
    "size": 1024,
    "mtime": 1795657594.5,
    "inode": 77,
    "kind": "closed",
}
TRACEBACK = (
    'Traceback (most recent call last):\n  File "wf.py", line 3, in reduce\nValueError: no frames\n'
)


class Clock:
    """Events with ids in the order they are made and times ``step`` seconds apart."""

    def __init__(self, start: datetime = BASE, step: float = 1.0):
        self.now = start
        self.step = step

    def event(self, kind: str, message: str = "", **fields: Any) -> LogEvent:
        self.now += timedelta(seconds=self.step)
        return LogEvent(kind, message, time=self.now, host="mx-sq1", pid=4242, **fields)


def successful_run(
    clock: Clock,
    run: str = "run-ok",
    workflow: str = "squashfs_compress",
    rule: str = "compress-dataset",
) -> list[LogEvent]:
    """Trigger, run, one DAG of two tasks with output and a log line, success."""
    of = {"run": run, "workflow": workflow, "rule": rule}
    main = {**of, "dag": "main"}
    return [
        clock.event(
            "trigger.fired",
            f"{rule}: a.h5 -> {workflow}",
            source=SOURCE,
            data={"key": "k-1", "params": {"dataset": "/data/mx1/visit1"}, "files": 1},
            **of,
        ),
        clock.event(
            "run.started",
            f"run of '{workflow}' started",
            data={"params": {"dataset": "/data/mx1/visit1", "level": 3}},
            **of,
        ),
        clock.event("dag.started", "DAG main started", data={"queue": "dag"}, **main),
        clock.event(
            "task.started",
            "compress started on w1",
            task="compress",
            worker="w1",
            data={"worker": "w1"},
            **main,
        ),
        clock.event(
            "output",
            "parallel mksquashfs: using 8 processors",
            task="compress",
            data={"stream": "stdout"},
            **main,
        ),
        clock.event("log", "compressing 3 files", task="compress", **main),
        clock.event(
            "task.succeeded",
            "compress succeeded in 12.400 s",
            task="compress",
            data={"duration": 12.4, "exit_code": 0},
            **main,
        ),
        clock.event(
            "task.started", "checksum started on w2", task="checksum", data={"worker": "w2"}, **main
        ),
        clock.event(
            "task.succeeded",
            "checksum succeeded in 0.500 s",
            task="checksum",
            data={"duration": 0.5},
            **main,
        ),
        clock.event("dag.succeeded", "DAG main succeeded", **main),
        clock.event(
            "run.succeeded",
            f"run of '{workflow}' succeeded in 15.000 s",
            data={"duration": 15.0, "error": None},
            **of,
        ),
    ]


def failed_run(
    clock: Clock, run: str = "run-bad", workflow: str = "saxs_reduce", rule: str = "process-scan"
) -> list[LogEvent]:
    """Trigger, run, a task that fails with a traceback, the next one skipped, failure."""
    of = {"run": run, "workflow": workflow, "rule": rule}
    main = {**of, "dag": "main"}
    return [
        clock.event(
            "trigger.fired",
            f"{rule}: capture ended -> {workflow}",
            source={"pv": "SR13ID01:HDF1:Capture_RBV", "value": 0, "old_value": 1},
            data={"key": "k-2", "params": {"file": "/data/scan_0001.h5"}},
            **of,
        ),
        clock.event(
            "run.started",
            f"run of '{workflow}' started",
            data={"params": {"file": "/data/scan_0001.h5"}},
            **of,
        ),
        clock.event("dag.started", "DAG main started", **main),
        clock.event(
            "task.started", "reduce started on w1", task="reduce", data={"worker": "w1"}, **main
        ),
        clock.event("output", "reading frames", task="reduce", data={"stream": "stderr"}, **main),
        clock.event(
            "task.failed",
            "reduce failed: ValueError: no frames",
            task="reduce",
            level="error",
            data={"duration": 2.5, "traceback": TRACEBACK, "exit_code": 2},
            **main,
        ),
        clock.event("task.skipped", "publish skipped", task="publish", **main),
        clock.event("dag.failed", "DAG main failed", level="warning", **main),
        clock.event(
            "run.failed",
            f"run of '{workflow}' failed in 4.000 s: reduce failed",
            level="error",
            data={"duration": 4.0, "error": "task reduce failed: ValueError: no frames"},
            **of,
        ),
    ]
