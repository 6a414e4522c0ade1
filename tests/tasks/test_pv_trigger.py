"""PvTriggerTask against a real soft IOC over Channel Access on loopback (ioc_fixture).

The task runs the way a worker runs it (``task._run``) on a thread with a stop flag the
test flips, and once inside a workflow on the local executor (real worker processes).
"""

from __future__ import annotations

import inspect
import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import epics
import pytest
from support import WORKFLOWS, Background, EventCollector, FakeSignal, make_executor, wait_for

from triggerd.flow import TaskStatus
from triggerd.tasks import PvTriggerTask, pv_trigger

LOGGER = "triggerd.tasks.pv_trigger"


class Calls:
    """A PvTriggerTask callback that records the event keyword arguments it gets."""

    def __init__(self, hook: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.hook = hook

    def __call__(self, data, store, signal, context, **event) -> None:
        if self.hook is not None:
            self.hook(event)
        self.events.append(event)

    @property
    def values(self) -> list[Any]:
        return [e["value"] for e in self.events]

    def wait(self, values: list[Any], timeout: float = 5.0) -> None:
        wait_for(
            lambda: self.values == values, timeout, f"callback values {values} (have {self.values})"
        )


def put(pv: str, value: Any) -> None:
    assert epics.caput(pv, value, wait=True, timeout=5) == 1, f"caput {pv} failed"


def test_updates_arrive_oldest_first_with_pyepics_fields_as_keywords(soft_ioc):
    """Updates queued while the callback is busy are handed over oldest first, one call each,
    with pvname, value, char_value, timestamp, severity... as keyword arguments."""
    acq = soft_ioc.pv("ACQ")
    put(acq, 0)
    gate = threading.Event()
    calls = Calls(hook=lambda event: event["value"] == 1 and gate.wait(5))
    seen: list[int] = []  # a monitor of the test's own: all updates have reached this process
    watcher = epics.PV(acq, callback=lambda value, **kw: seen.append(value))
    run = Background(
        PvTriggerTask("watch", acq, calls, event_trigger_time=0.05, skip_initial_callback=False)
    )
    try:
        calls.wait([0])  # the initial value
        before = time.time()
        put(acq, 1)  # the callback now waits at the gate
        for value in (2, 3, 4):
            put(acq, value)
        wait_for(lambda: seen[-1:] == [4], what="the last update")
        time.sleep(0.05)  # the task's own monitor is served by the same CA thread
        gate.set()
        calls.wait([0, 1, 2, 3, 4])
    finally:
        gate.set()
        watcher.clear_callbacks()
        watcher.disconnect()
        run.stop()
    updates = calls.events[1:]
    assert all(e["pvname"] == acq and e["severity"] == 0 and e["status"] == 0 for e in updates)
    assert [e["char_value"] for e in updates] == ["1", "2", "3", "4"]
    stamps = [e["timestamp"] for e in updates]
    assert stamps == sorted(stamps) and before - 1 < stamps[0] <= stamps[-1] < time.time() + 1
    assert "cb_info" not in updates[0]
    assert pickle.loads(pickle.dumps(updates[-1]))["value"] == 4


def test_skip_initial_callback_drops_exactly_the_initial_value(soft_ioc, caplog):
    """skip_initial_callback=True (default) drops the value the PV has at connect, and only
    that one; False delivers it first."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    acq = soft_ioc.pv("ACQ")
    put(acq, 10)
    calls = Calls()
    run = Background(PvTriggerTask("watch", acq, calls, event_trigger_time=0.05))
    try:
        wait_for(
            lambda: any("skipped the initial value" in r.getMessage() for r in caplog.records),
            what="the initial value to be skipped",
        )
        assert "TEST:ACQ: 10" in caplog.text
        put(acq, 11)
        put(acq, 12)
        calls.wait([11, 12])
    finally:
        run.stop()

    calls = Calls()
    run = Background(PvTriggerTask("watch", acq, calls, skip_initial_callback=lambda d, s: False))
    try:
        calls.wait([12])
        put(acq, 13)
        calls.wait([12, 13])
    finally:
        run.stop()


def test_a_one_element_array_is_a_numpy_array_like_a_longer_one(soft_ioc):
    """pyepics gives a 1-element array (a CHAR waveform holding one byte) as a ctypes array,
    which does not pickle; the callback gets a numpy array, as for a longer one."""
    name = soft_ioc.pv("NAME")
    put(name, [65])  # "A", without a terminating null: one element
    calls = Calls()
    run = Background(PvTriggerTask("watch", name, calls, skip_initial_callback=False))
    try:
        wait_for(lambda: len(calls.events) == 1, what="the initial value")
        put(name, "/data/scan_0001.h5")
        wait_for(lambda: len(calls.events) == 2, what="the file name")
    finally:
        run.stop()
    short, full = calls.events
    assert (short["count"], short["char_value"], full["char_value"]) == (
        1,
        "A",
        "/data/scan_0001.h5",
    )
    assert (
        type(short["value"]) is type(full["value"]) and short["value"].dtype == full["value"].dtype
    )
    assert list(pickle.loads(pickle.dumps(short))["value"]) == [65]


def test_stops_promptly_when_idle_and_while_the_pv_keeps_updating(soft_ioc):
    """A stop is seen within event_trigger_time (None: 0.5 s) with nothing happening, and
    also while updates arrive faster than the callback handles them."""
    acq = soft_ioc.pv("ACQ")
    put(acq, 0)
    calls = Calls()
    run = Background(PvTriggerTask("watch", acq, calls, skip_initial_callback=False))
    calls.wait([0])
    assert run.stop() < 1.0

    calls = Calls(hook=lambda event: time.sleep(0.002))  # at most 500 updates a second
    run = Background(PvTriggerTask("watch", acq, calls, event_trigger_time=0.1))
    done = threading.Event()
    produced = [0]

    def produce() -> None:
        writer = epics.PV(acq)
        writer.wait_for_connection(5)
        while not done.is_set():
            produced[0] += 1
            writer.put(produced[0])
            epics.ca.poll(evt=1e-4)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_for(lambda: len(calls.events) > 100, what="a stream of updates")
        checks = run.signal.checks
        time.sleep(0.3)
        assert run.signal.checks >= checks + 2  # looked at the flag while busy
        backlog = produced[0] - calls.values[-1]
        took = run.stop()
    finally:
        done.set()
        producer.join(5)
    assert backlog > 100, f"the updates did not outrun the callback (backlog {backlog})"
    assert took < 0.5
    assert calls.values == sorted(calls.values)


def test_a_callback_that_raises_fails_the_task(soft_ioc):
    """The callback's exception ends the task with it (callback_finally sees Error)."""
    acq = soft_ioc.pv("ACQ")
    put(acq, 0)
    statuses: list[TaskStatus] = []

    def callback(data, store, signal, context, value, **event):
        if value == 7:
            raise RuntimeError(f"bad value {value}")

    run = Background(
        PvTriggerTask(
            "watch",
            acq,
            callback,
            event_trigger_time=0.05,
            callback_finally=lambda status, *args: statuses.append(status),
        )
    )
    wait_for(lambda: run.signal.checks > 0)
    put(acq, 7)
    run.thread.join(2)
    assert not run.thread.is_alive()
    assert isinstance(run.error, RuntimeError) and str(run.error) == "bad value 7"
    assert statuses == [TaskStatus.Error]


def test_a_pv_that_never_connects_warns_and_stops(monkeypatch, caplog):
    """A PV no IOC serves leaves the task waiting for a stop (with one warning), not hung."""
    monkeypatch.setattr(pv_trigger, "CONNECT_WARNING", 0.2)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    calls = Calls()
    run = Background(PvTriggerTask("watch", "TEST:NO_SUCH_PV", calls, event_trigger_time=0.05))
    wait_for(lambda: "not connected" in caplog.text, what="the warning")
    assert run.stop() < 0.5
    assert calls.events == []
    assert caplog.text.count("TEST:NO_SUCH_PV is not connected") == 1


def test_argument_errors_and_lightflows_signature():
    """Bad literal arguments fail at construction, bad callable ones when the task runs;
    the signature is lightflow-epics'."""

    def callback(*args, **kwargs):
        pass

    for bad in ("", "  ", None, 42):
        with pytest.raises(ValueError, match="pv_name must be a non-empty string"):
            PvTriggerTask("watch", bad, callback)
    with pytest.raises(TypeError, match="callback must be callable or None"):
        PvTriggerTask("watch", "TEST:ACQ", "print")
    PvTriggerTask("watch", "TEST:ACQ", None)  # as lightflow-epics: updates taken, nothing called
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="stop_polling_rate must be an int >= 0"):
            PvTriggerTask("watch", "TEST:ACQ", callback, stop_polling_rate=bad)
    for bad in (-0.1, "1", False):
        with pytest.raises(ValueError, match="event_trigger_time must be None or a number"):
            PvTriggerTask("watch", "TEST:ACQ", callback, event_trigger_time=bad)
    task = PvTriggerTask("watch", lambda data, store: "", callback)
    with pytest.raises(ValueError, match="pv_name"):
        task._run(data=None, store=None, signal=FakeSignal(), context=None)

    params = inspect.signature(PvTriggerTask.__init__).parameters
    assert [(n, p.default) for n, p in params.items()][1:] == [
        ("name", inspect.Parameter.empty),
        ("pv_name", inspect.Parameter.empty),
        ("callback", inspect.Parameter.empty),
        ("event_trigger_time", None),
        ("stop_polling_rate", 2),
        ("skip_initial_callback", True),
        ("queue", "task"),
        ("callback_init", None),
        ("callback_finally", None),
        ("force_run", False),
        ("propagate_skip", True),
    ]
    assert params["queue"].kind is inspect.Parameter.KEYWORD_ONLY
    task = PvTriggerTask("watch", "TEST:ACQ", callback, queue="pv", force_run=True)
    assert (task.queue, task.has_to_run, task.propagate_skip) == ("pv", True, True)


def test_importing_triggerd_tasks_does_not_import_epics():
    """pyepics (and so Channel Access) is only loaded when a PvTriggerTask runs."""
    subprocess.run(
        [sys.executable, "-c", "import triggerd.tasks, sys; assert 'epics' not in sys.modules"],
        check=True,
        timeout=60,
    )


# -- in a workflow, on the local executor ------------------------------------------------

WORKFLOW = textwrap.dedent(
    """
    from triggerd.flow import Dag, Option, Parameters
    from triggerd.tasks import PvTriggerTask

    parameters = Parameters([Option("pv")])

    def on_update(data, store, signal, context, pvname, value, **event):
        if value < 0:
            raise ValueError(f"{pvname} went negative: {value}")
        store.push("values", value)
        if value == 3:
            signal.stop_workflow()

    watch = PvTriggerTask(
        "watch", lambda data, store: store.get("pv"), on_update, skip_initial_callback=False
    )
    d = Dag("d")
    d.define({watch: None})
    """
)


@pytest.fixture
def executor(tmp_path):
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "watch_pv.py").write_text(WORKFLOW)
    ex, store = make_executor(tmp_path, [tmp_path / "wf"], EventCollector(), workers=1)
    ex.start()
    yield ex, store
    ex.close()
    store.close()


def test_in_a_workflow_updates_reach_the_store_and_a_raising_callback_fails_the_run(
    soft_ioc, executor
):
    """In a worker process: the callback sees the initial value then each update, and can
    stop the workflow; a callback that raises fails the task and the run."""
    ex, store = executor
    acq = soft_ioc.pv("ACQ")

    def values(run_id: str) -> list[int]:
        if not store.exists(run_id):  # written by the executor's store keeper, just after submit
            return []
        return store.snapshot(run_id)["data"].get("values", [])

    put(acq, 0)
    handle = ex.submit("watch_pv", {"pv": acq})
    wait_for(lambda: values(handle.run_id) == [0] or handle.done(), what="the initial value")
    for value in (1, 2, 3):
        put(acq, value)
    result = handle.wait(10)
    assert result.status == "stopped", (result.status, result.error, result.failures)
    assert result.tasks["d:1"] == {"watch": "succeeded"}
    assert values(handle.run_id) == [0, 1, 2, 3]

    handle = ex.submit("watch_pv", {"pv": acq})
    wait_for(lambda: values(handle.run_id) == [3] or handle.done(), what="the initial value")
    put(acq, -1)
    result = handle.wait(10)
    assert result.status == "failed"
    assert result.tasks["d:1"] == {"watch": "failed"}
    (failure,) = result.failures
    assert "ValueError: TEST:ACQ went negative: -1" in failure["error"]


def test_lightflow_epics_example_runs_as_it_is_but_for_its_imports(soft_ioc, tmp_path):
    """workflows/pv_monitor.py, lightflow-epics' example: a value within 3 +- 2 starts
    pv_action_dag with the PV's name and value; others only print; it runs until stopped."""
    collector = EventCollector()
    ex, store = make_executor(tmp_path, [WORKFLOWS], collector, workers=2)
    ex.start()
    try:
        val = soft_ioc.pv("VAL")
        put(val, 0.0)
        handle = ex.submit("pv_monitor", {"pvname": val})

        def printed() -> list[str]:
            return [e.message for e in collector.of(handle.run_id) if e.kind == "output"]

        wait_for(lambda: "Starting the PV monitoring..." in printed(), what="the monitor to start")
        time.sleep(0.5)  # the monitor connects; its initial value is skipped
        for value in (9.0, 3.5, 7.5):
            put(val, value)
        wait_for(lambda: f"PV {val} has value: 3.5" in printed(), what="pv_action_dag's print")
        wait_for(
            lambda: f"Checking PV {val} with value 7.5" in printed(), what="the last value checked"
        )
        ex.stop_run(handle.run_id, "test done")
        result = handle.wait(10)
        assert result.status == "stopped", (result.status, result.error, result.failures)
        checked = [m for m in printed() if m.startswith("Checking")]
        assert checked == [f"Checking PV {val} with value {v}" for v in (9.0, 3.5, 7.5)]
        assert [m for m in printed() if m.startswith("PV ")] == [f"PV {val} has value: 3.5"]
    finally:
        ex.close()
        store.close()
