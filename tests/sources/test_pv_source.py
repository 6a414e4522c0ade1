"""The PV source against a real soft IOC over Channel Access on loopback (ioc_fixture)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import epics
import pytest

from triggerd.sources.pv import PvEvent, PvSource, PvWatch
from triggerd.sources.pv_conditions import Condition


class Seen:
    """What a source emitted and reported, with waiting."""

    def __init__(self) -> None:
        self.events: list[PvEvent] = []
        self.health: list[tuple[str, str, str]] = []
        self._cond = threading.Condition()

    def emit(self, event: PvEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def on_health(self, pv: str, state: str, message: str) -> None:
        with self._cond:
            self.health.append((pv, state, message))
            self._cond.notify_all()

    def wait(self, check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
        # Short waits: health() counters change without a notification.
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"timed out waiting for {what or check}: "
                        f"events={self.events} health={self.health}"
                    )
                self._cond.wait(0.01)

    def states(self, pv: str) -> list[str]:
        return [s for p, s, _ in self.health if p == pv]


def watch(rule: str, pv: str, **condition: Any) -> PvWatch:
    return PvWatch(rule, pv, Condition.parse(condition, where=rule))


def put(pv: str, value: Any) -> None:
    assert epics.caput(pv, value, wait=True, timeout=5) == 1, f"caput {pv} failed"


def updates(source: PvSource, pv: str) -> int:
    return next(row["updates"] for row in source.health() if row["name"] == pv)


@contextmanager
def running(*watches: PvWatch, connection_timeout: float = 5.0) -> Iterator[tuple[PvSource, Seen]]:
    """A started source whose PVs that exist have delivered their initial value."""
    seen = Seen()
    source = PvSource(
        watches, seen.emit, on_health=seen.on_health, connection_timeout=connection_timeout
    )
    source.start()
    try:
        yield source, seen
    finally:
        source.stop()


def wait_initial(source: PvSource, seen: Seen, pv: str) -> None:
    seen.wait(lambda: updates(source, pv) >= 1, what=f"initial value of {pv}")


QUIET = 0.3  # seconds to be sure nothing more arrives (callback latency is < 1 ms here)


def test_falling_edge_fires_once_with_old_and_new_value_and_the_ioc_timestamp(soft_ioc):
    """A falling edge on the acquire PV fires exactly once, with 1 -> 0 and the IOC's time stamp."""
    acq = soft_ioc.pv("ACQ")
    put(acq, 1)
    with running(watch("acq-done", acq, when="falling")) as (source, seen):
        wait_initial(source, seen, acq)
        assert seen.states(acq) == ["connected"]
        put(acq, 0)
        seen.wait(lambda: seen.events, what="the falling edge")
        ioc_time = epics.PV(acq, form="time").get_with_metadata(use_monitor=False, form="time")[
            "timestamp"
        ]
        put(acq, 0)  # no change, no monitor, no second fire
        time.sleep(QUIET)
        assert len(seen.events) == 1
        event = seen.events[0]
        assert (event.rule, event.pv, event.value, event.old_value, event.severity) == (
            "acq-done",
            acq,
            0,
            1,
            0,
        )
        assert event.timestamp == pytest.approx(ioc_time, abs=1e-6)
        assert event.timestamp <= event.seen_at < event.timestamp + 5
        assert event.to_dict()["type"] == "pv" and event.to_dict()["old_value"] == 1


def test_the_initial_value_on_connect_does_not_fire(soft_ioc):
    """A value that already satisfies the condition at start-up only sets the baseline."""
    acq = soft_ioc.pv("ACQ")
    put(acq, 0)
    with running(watch("idle", acq, when="equals", value=0)) as (source, seen):
        wait_initial(source, seen, acq)
        time.sleep(QUIET)
        assert seen.events == []
        put(acq, 3)
        put(acq, 0)
        seen.wait(lambda: seen.events, what="equals 0 after a change")
        assert [(e.value, e.old_value) for e in seen.events] == [(0, 3)]


def test_regex_on_a_char_array_file_name(soft_ioc):
    """A CHAR waveform (FullFileName_RBV) is compared as text; every new matching name fires."""
    name = soft_ioc.pv("NAME")
    put(name, "/data/visit1/notes.txt")
    with running(watch("new-h5", name, when="regex", pattern=r"/raw/.+\.h5$")) as (source, seen):
        wait_initial(source, seen, name)
        assert source.health()[0]["last_value"] == "/data/visit1/notes.txt"
        put(name, "/data/visit1/raw/scan_0001.h5")
        put(name, "/data/visit1/raw/log.txt")
        put(name, "/data/visit1/raw/scan_0002.h5")
        seen.wait(lambda: len(seen.events) == 2, what="two file names")
        assert [(e.value, e.old_value) for e in seen.events] == [
            ("/data/visit1/raw/scan_0001.h5", "/data/visit1/notes.txt"),
            ("/data/visit1/raw/scan_0002.h5", "/data/visit1/raw/log.txt"),
        ]


def test_an_invalid_severity_value_is_ignored(soft_ioc):
    """A value in INVALID alarm (over HIHI) neither fires nor becomes the baseline."""
    val = soft_ioc.pv("VAL")
    put(val, 1.0)
    with running(watch("val-change", val, when="change")) as (source, seen):
        wait_initial(source, seen, val)
        put(val, 150.0)  # HIHI 100, HHSV INVALID
        seen.wait(lambda: updates(source, val) >= 2, what="the INVALID value")
        assert source.health()[0]["severity"] == 3
        time.sleep(QUIET)
        assert seen.events == []
        put(val, 2.0)
        seen.wait(lambda: seen.events, what="the valid change")
        assert [(e.value, e.old_value, e.severity) for e in seen.events] == [(2.0, 1.0, 0)]


def test_a_wrong_typed_value_is_reported_and_the_source_keeps_going(soft_ioc):
    """Text under 'above' is an error through on_health, once; other rules still fire."""
    name, acq = soft_ioc.pv("NAME"), soft_ioc.pv("ACQ")
    put(name, "/data/x.h5")
    put(acq, 0)
    with running(
        watch("too-big", name, when="above", threshold=1), watch("acq", acq, when="change")
    ) as (source, seen):
        seen.wait(lambda: "error" in seen.states(name), what="the type error")
        message = next(m for p, s, m in seen.health if (p, s) == (name, "error"))
        assert "too-big" in message and "expected a number" in message
        put(name, "/data/y.h5")
        wait_initial(source, seen, acq)
        put(acq, 1)
        seen.wait(lambda: seen.events, what="the other rule")
        assert [(e.rule, e.value) for e in seen.events] == [("acq", 1)]
        assert seen.states(name).count("error") == 1  # the same error is not repeated per update


def test_a_pv_that_never_connects_is_reported_and_the_others_work(soft_ioc):
    """A PV no IOC serves becomes 'never connected' after the timeout; a live PV still fires."""
    missing, acq = soft_ioc.pv("NO_SUCH_RECORD"), soft_ioc.pv("ACQ")
    put(acq, 0)
    started = time.monotonic()
    with running(
        watch("ghost", missing, when="change"),
        watch("acq", acq, when="rising"),
        connection_timeout=1.0,
    ) as (source, seen):
        wait_initial(source, seen, acq)
        put(acq, 1)
        seen.wait(lambda: seen.events, what="the live rule")
        seen.wait(lambda: "never connected" in seen.states(missing), what="never connected")
        assert 0.9 < time.monotonic() - started < 3
        rows = {row["name"]: row for row in source.health()}
        assert rows[missing]["state"] == "never connected" and rows[missing]["updates"] == 0
        assert rows[acq]["state"] == "connected"
        assert [(e.rule, e.value, e.old_value) for e in seen.events] == [("acq", 1, 0)]


def test_ioc_restart_with_the_same_value_reports_health_and_does_not_fire(soft_ioc):
    """Killed and restarted IOC: disconnected then connected, no fire; monitors resume after."""
    acq = soft_ioc.pv("ACQ")
    put(acq, 0)  # the IOC's initial value, so the restart brings back the same value
    with running(watch("acq", acq, when="change")) as (source, seen):
        wait_initial(source, seen, acq)
        soft_ioc.stop()
        seen.wait(lambda: "disconnected" in seen.states(acq), what="disconnected")
        assert source.health()[0]["state"] == "disconnected"
        started = time.monotonic()
        soft_ioc.start()
        seen.wait(
            lambda: seen.states(acq) == ["connected", "disconnected", "connected"],
            timeout=20,
            what="reconnect",
        )
        seen.wait(lambda: updates(source, acq) >= 2, what="the value after reconnect")
        reconnect = time.monotonic() - started
        time.sleep(QUIET)
        assert seen.events == []
        put(acq, 1)
        seen.wait(lambda: seen.events, what="a change after the restart")
        assert [(e.value, e.old_value) for e in seen.events] == [(1, 0)]
        assert reconnect < 20


def test_settle_fires_only_once_the_value_held_and_a_snapshot_rides_along(soft_ioc):
    """settle: a value that satisfies the condition fires only after holding for the settle
    time (the source's thread wakes for it with no update arriving); one that leaves early
    fires nothing. The fire carries the snapshot PV's current value and time stamp."""
    val, name = soft_ioc.pv("VAL"), soft_ioc.pv("NAME")
    put(val, 0.0)
    put(name, "/data/a.h5")
    settled = PvWatch(
        "held",
        val,
        Condition.parse({"when": "above", "threshold": 5, "settle": 0.4}, where="held"),
        snapshot=(name,),
    )
    with running(settled) as (source, seen):
        wait_initial(source, seen, val)
        wait_initial(source, seen, name)
        put(val, 10.0)
        put(val, 1.0)  # left before the settle time: cancelled
        time.sleep(0.6)
        assert seen.events == []
        start = time.monotonic()
        put(val, 10.0)
        seen.wait(lambda: seen.events, what="the settled fire")
        assert 0.35 <= time.monotonic() - start < 2.0
        (event,) = seen.events
        assert (event.value, event.old_value) == (10.0, 1.0)
        taken = event.snapshot[name]
        assert taken["value"] == "/data/a.h5" and taken["connected"] and taken["timestamp"] > 0
        assert next(r for r in source.health() if r["name"] == name)["snapshot_of"] == ["held"]


def test_enum_pv_compares_by_index_or_state_name(soft_ioc):
    """areaDetector's Capture_RBV is an enum (Done/Capture): 'falling' compares the index,
    a transition or equals written with state names compares the names the IOC sends; events
    and health carry the name."""
    capture = soft_ioc.pv("CAPTURE")
    put(capture, 0)
    watches = (
        watch("edge", capture, when="falling"),
        watch("named", capture, when="transition", **{"from": "Capture", "to": "Done"}),
        watch("started", capture, when="equals", value="Capture"),
    )
    with running(*watches) as (source, seen):
        wait_initial(source, seen, capture)
        put(capture, 1)
        put(capture, "Done")
        seen.wait(lambda: len(seen.events) == 3, what="three fires")
        time.sleep(QUIET)
        fired = sorted((e.rule, e.old_value, e.value) for e in seen.events)
        assert fired == [
            ("edge", "Capture", "Done"),
            ("named", "Capture", "Done"),
            ("started", "Done", "Capture"),
        ]
        assert source.health()[0]["last_value"] == "Done"
        assert not [h for h in seen.health if h[1] == "error"]
