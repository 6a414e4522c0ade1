"""Run summaries follow a run's events on both backends: whatever the order, however often
they arrive, from one writer or two at once."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

from eventlog_cases import BASE, SOURCE, TRACEBACK, Clock, failed_run, successful_run

from triggerd.eventlog.schema import LogEvent, format_time


def at(seconds: int) -> str:
    return format_time(BASE + timedelta(seconds=seconds))


def test_a_successful_run_is_summarised_with_its_trigger_dags_and_tasks(store):
    """Status, parameters, trigger, times, durations and per-task worker and
    host, as show needs them."""
    store.insert(successful_run(Clock()))
    summary = store.run("run-ok")
    assert summary == {
        "run": "run-ok",
        "workflow": "squashfs_compress",
        "rule": "compress-dataset",
        "status": "succeeded",
        "params": {"dataset": "/data/mx1/visit1", "level": 3},
        "host": "mx-sq1",
        "queued": at(1),
        "started": at(2),
        "ended": at(11),
        "duration": 15.0,
        "error": None,
        "traceback": None,
        "first": at(1),
        "last": at(11),
        "attempts": [],
        "trigger": {
            "event": summary["trigger"]["event"],
            "time": at(1),
            "rule": "compress-dataset",
            "message": "compress-dataset: a.h5 -> squashfs_compress",
            "source": SOURCE,
            "host": "mx-sq1",
            "data": {"key": "k-1", "params": {"dataset": "/data/mx1/visit1"}, "files": 1},
        },
        "dags": {
            "main": {
                "state": "succeeded",
                "started": at(3),
                "ended": at(10),
                "duration": 7.0,
                "tasks": {
                    "compress": {
                        "state": "succeeded",
                        "started": at(4),
                        "ended": at(7),
                        "duration": 12.4,
                        "host": "mx-sq1",
                        "pid": 4242,
                        "worker": "w1",
                        "error": None,
                        "traceback": None,
                        "exit_code": 0,
                    },
                    "checksum": {
                        "state": "succeeded",
                        "started": at(8),
                        "ended": at(9),
                        "duration": 0.5,
                        "host": "mx-sq1",
                        "pid": 4242,
                        "worker": "w2",
                        "error": None,
                        "traceback": None,
                        "exit_code": None,
                    },
                },
            }
        },
    }


def test_a_resumed_run_shows_each_attempt_apart(store):
    """Each run.started with an attempt number is an attempt of its own, in order,
    whatever order the events arrive in."""
    clock = Clock()
    first = clock.event(
        "run.started",
        "run of 'wf' started",
        run="r2",
        workflow="wf",
        data={"attempt": 1, "params": {}},
    )
    second = clock.event(
        "run.started",
        "run of 'wf' resumed (attempt 2)",
        run="r2",
        workflow="wf",
        data={"attempt": 2, "resumed": True, "tasks_ended": 1, "tasks_running": 1},
    )
    store.insert([second])
    store.insert([first])
    attempts = store.run("r2")["attempts"]
    assert [(a["attempt"], a["host"], a["resumed"]) for a in attempts] == [
        (1, "mx-sq1", False),
        (2, "mx-sq1", True),
    ]
    assert (attempts[1]["tasks_ended"], attempts[1]["tasks_running"]) == (1, 1)
    assert attempts[0]["started"] < attempts[1]["started"]


def test_a_failed_run_keeps_its_error_and_the_tasks_traceback(store):
    """The run's error, the failing task's error, exit code and traceback, the skipped task."""
    store.insert(failed_run(Clock()))
    summary = store.run("run-bad")
    assert summary["status"] == "failed"
    assert summary["error"] == "task reduce failed: ValueError: no frames"
    assert summary["duration"] == 4.0
    assert summary["params"] == {"file": "/data/scan_0001.h5"}
    assert summary["trigger"]["source"]["pv"] == "SR13ID01:HDF1:Capture_RBV"
    tasks = summary["dags"]["main"]["tasks"]
    assert summary["dags"]["main"]["state"] == "failed"
    assert tasks["reduce"]["state"] == "failed"
    assert tasks["reduce"]["error"] == "reduce failed: ValueError: no frames"
    assert tasks["reduce"]["traceback"] == TRACEBACK
    assert (
        tasks["reduce"]["exit_code"],
        tasks["reduce"]["duration"],
        tasks["reduce"]["worker"],
    ) == (2, 2.5, "w1")
    assert tasks["publish"] == {
        "state": "skipped",
        "ended": at(7),
        "duration": None,
        "error": None,
        "traceback": None,
        "exit_code": None,
    }


def test_a_huge_traceback_keeps_its_end_in_the_summary_and_all_of_it_in_the_event(store):
    """The summary stays small (the last 4000 characters); the event keeps up to
    the 64 KiB text limit."""
    traceback = (
        "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "RuntimeError: the end\n"
    )
    store.insert(
        [
            LogEvent(
                "task.failed", "t failed", run="r", dag="d", task="t", data={"traceback": traceback}
            )
        ]
    )
    kept = store.run("r")["dags"]["d"]["tasks"]["t"]["traceback"]
    assert kept.endswith("RuntimeError: the end\n") and kept.startswith(
        f"[{len(traceback) - 4000} chars before]"
    )
    assert store.find(run="r")[0].data["traceback"] == traceback  # 40 KiB: under the text limit


def comparable(summary: dict) -> dict:
    """A summary without what differs between two copies of one sequence: run
    id, trigger event id."""
    return {**summary, "run": None, "trigger": {**summary["trigger"], "event": None}}


def sequences(tag: str) -> tuple[list[LogEvent], list[str]]:
    """A successful and a failed run (run ids ending in ``tag``), and those run ids."""
    runs = [f"run-ok-{tag}", f"run-bad-{tag}"]
    events = successful_run(Clock(), run=runs[0]) + failed_run(
        Clock(start=BASE + timedelta(minutes=1)), run=runs[1]
    )
    return events, runs


def test_the_summary_is_the_same_whatever_order_the_events_arrive_in(store):
    """Reversed, shuffled, one at a time or in batches, replayed: a final status never
    goes back to running."""
    events, runs = sequences("in-order")
    store.insert(events)
    expected = [comparable(store.run(run)) for run in runs]
    assert [summary["status"] for summary in expected] == ["succeeded", "failed"]
    for attempt in range(4):
        events, runs = sequences(str(attempt))
        order = (
            list(reversed(events))
            if attempt == 0
            else random.Random(attempt).sample(events, len(events))
        )
        size = 1 + attempt * 2
        for _ in range(2):  # the second pass replays every event: harmless
            for start in range(0, len(order), size):
                store.insert(order[start : start + size])
        assert [comparable(store.run(run)) for run in runs] == expected


def test_run_started_arriving_after_the_end_leaves_the_run_ended(store):
    """run.started after run.succeeded, task.started after task.succeeded: the final states stay."""
    events = successful_run(Clock())
    final = [e for e in events if e.kind in ("run.succeeded", "task.succeeded", "dag.succeeded")]
    store.insert(final)
    assert store.run("run-ok")["status"] == "succeeded"
    store.insert([e for e in events if e not in final])
    summary = store.run("run-ok")
    assert summary["status"] == "succeeded" and summary["started"] == at(2)
    assert {t["state"] for t in summary["dags"]["main"]["tasks"].values()} == {"succeeded"}
    assert summary["dags"]["main"]["tasks"]["compress"]["worker"] == "w1"


def test_of_two_final_states_the_later_event_wins(store):
    """A run reported failed then stopped (by ids) is stopped, in either arrival order."""
    clock = Clock()
    failed = clock.event("run.failed", "failed", run="r", data={"error": "boom"})
    stopped = clock.event("run.stopped", "stopped by an operator", run="r")
    store.insert([stopped])
    store.insert([failed])
    summary = store.run("r")
    assert (summary["status"], summary["error"], summary["ended"]) == ("stopped", None, at(2))


def test_a_retried_task_shows_its_latest_attempt(store):
    """task.retried on another worker replaces the first start's worker; success ends it."""
    clock, of = Clock(), {"run": "r", "dag": "d", "task": "t"}
    store.insert(
        [
            clock.event("task.started", **of, data={"worker": "w1"}),
            clock.event("task.retried", **of, data={"worker": "w2"}, level="warning"),
        ]
    )
    task = store.run("r")["dags"]["d"]["tasks"]["t"]
    assert (task["state"], task["worker"], task["started"]) == ("running", "w2", at(2))
    store.insert([clock.event("task.succeeded", **of, data={"duration": 1.0})])
    assert store.run("r")["dags"]["d"]["tasks"]["t"]["state"] == "succeeded"


def test_names_mongodb_cannot_use_as_keys_are_kept(store):
    """DAG and task names with dots, dollars, percent signs and NUL come back as they were."""
    names = ["dag.v1", "$dag", "50%"]
    store.insert(
        [LogEvent("task.succeeded", run="r", dag=name, task=f"{name}.t\x00") for name in names]
    )
    dags = store.run("r")["dags"]
    assert sorted(dags) == sorted(names)
    assert [list(dags[name]["tasks"]) for name in names] == [[f"{name}.t\x00"] for name in names]


def test_runs_lists_summaries_newest_first_with_filters(store):
    """failed, since, workflow, rule and limit; newest first by first event; no DAGs in the list."""
    store.insert(successful_run(Clock(), run="run-1"))
    store.insert(failed_run(Clock(start=BASE + timedelta(minutes=1)), run="run-2"))
    store.insert(
        successful_run(Clock(start=BASE + timedelta(minutes=2)), run="run-3", rule="other")
    )
    store.insert(
        [
            LogEvent("run.aborted", run="run-4", workflow="w", time=BASE + timedelta(minutes=3)),
            LogEvent("run.rejected", run="run-5", workflow="w", time=BASE + timedelta(minutes=4)),
        ]
    )

    def listed(**filters) -> list[str]:
        return [summary["run"] for summary in store.runs(**filters)]

    assert listed() == ["run-5", "run-4", "run-3", "run-2", "run-1"]
    assert listed(failed=True) == ["run-5", "run-4", "run-2"]
    assert listed(since=BASE + timedelta(minutes=1, seconds=1)) == [
        "run-5",
        "run-4",
        "run-3",
        "run-2",
    ]
    assert listed(since=BASE + timedelta(minutes=1, seconds=2)) == ["run-5", "run-4", "run-3"]
    assert listed(workflow="squashfs_compress") == ["run-3", "run-1"]
    assert listed(rule="compress-dataset") == ["run-1"]
    assert listed(failed=True, workflow="saxs_reduce") == ["run-2"]
    assert listed(limit=2) == ["run-5", "run-4"]
    row = store.runs(workflow="saxs_reduce")[0]
    assert (
        "dags" not in row
        and row["status"] == "failed"
        and row["error"].startswith("task reduce failed")
    )
    assert store.run("no-such-run") is None


def test_two_writers_at_once_lose_nothing(make_store):
    """Two store objects (two forwarders) inserting one run's events interleaved, one
    at a time, in threads."""

    def events_of(run: str) -> list[LogEvent]:
        clock = Clock(start=BASE + timedelta(hours=1))
        return successful_run(Clock(), run=run) + [
            clock.event("output", f"line {i}", run=run) for i in range(40)
        ]

    with make_store() as one, make_store() as two:
        one.insert(events_of("run-reference"))
        expected = comparable(one.run("run-reference"))
        race = events_of("run-race")
        order = random.Random(7).sample(race, len(race))
        errors: list[BaseException] = []

        def write(store, mine):
            try:
                for event in mine:
                    store.insert([event])
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [
            threading.Thread(target=write, args=(one, order[0::2])),
            threading.Thread(target=write, args=(two, order[1::2])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert comparable(two.run("run-race")) == expected
        assert len(one.find(run="run-race")) == len(race) == 51
