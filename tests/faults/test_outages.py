"""Redis and MongoDB taken away while files stream in: nothing lost, nothing doubled,
nothing falsely succeeded, and the control API answers throughout.

Each scenario runs against a real deployment (tests/faults/deployment.py). Short
outages here (the CI budget); `make faults` runs the issue's loads and outages.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from deployment import FULL, ApiProbe, Deployment, Load
from report import record
from support import wait_for

pytestmark = pytest.mark.timeout(900 if FULL else 300)

LOAD = Load(files=200, rate=5.0, outage=60.0) if FULL else Load(files=40, rate=5.0, outage=8.0)


def _states(d: Deployment) -> dict[str, str]:
    return {dep["name"]: dep["state"] for dep in d.status()["dependencies"]}


def _outage(d: Deployment, name: str, stop, start, *, prefix: str, shows: tuple[str, ...]) -> None:
    """Files at LOAD.rate; the service goes away after a fifth of them, for LOAD.outage s.
    ``triggerctl status`` must show the dependencies ``shows`` down meanwhile, and up after;
    the event log must hold a dependency.down and a dependency.up for each."""
    down_at = LOAD.files // 5
    back: dict[str, float] = {}
    timer_started: list[float] = []

    def during(i: int) -> None:
        if i == down_at:
            stop()
            timer_started.append(time.monotonic())
        if timer_started and not back and time.monotonic() - timer_started[0] >= LOAD.outage:
            start()
            back["at"] = time.monotonic()

    seen_down: set[str] = set()
    events_refused: list[tuple[float, subprocess.CompletedProcess]] = []

    def during_and_watch(i: int) -> None:
        during(i)
        if timer_started and not back:
            seen_down.update(n for n, state in _states(d).items() if state == "down")
            # asked while it is away: says so at once
            if "event log" in seen_down and not events_refused:
                t0 = time.monotonic()
                done = d.ctl("events", "--limit", "5")
                events_refused.append((time.monotonic() - t0, done))

    with ApiProbe(d) as probe:
        paths = d.drop(LOAD.files, LOAD.rate, prefix, during=during_and_watch)
        if not back:  # the stream ended before the outage did
            # the input: the service stays away LOAD.outage seconds
            time.sleep(max(0.0, timer_started[0] + LOAD.outage - time.monotonic()))
            start()
            back["at"] = time.monotonic()
        settled = d.wait_settled(paths, timeout=120 + LOAD.outage)
    audit = d.audit(paths)
    assert set(shows) <= seen_down, (
        f"status showed {seen_down} down during the {name} outage, expected {shows}"
    )
    if "event log" in shows:
        ((took, done),) = events_refused
        assert (
            done.returncode != 0
            and "the event log" in done.stderr
            and "unreachable since" in done.stderr
        ), done.stderr
        # mostly Python starting
        assert took < 3.0, f"triggerctl events took {took:.1f} s to say the event log is away"
    wait_for(lambda: all(_states(d)[n] == "up" for n in shows), 30, f"{shows} up again in status")
    text = d.ctl("status").stdout
    assert all(f"{n} " in text for n in shows), text
    events = json.loads(d.ctl("events", "--kind", "dependency", "--limit", "100", "--json").stdout)
    for n in shows:
        kinds = [e["kind"] for e in events if e["data"].get("name") == n]
        assert "dependency.down" in kinds and "dependency.up" in kinds, (n, kinds)
    record(
        name,
        load=LOAD.describe() + f", {d.tasks}-task workflow",
        injected=f"{name} stopped {LOAD.outage:g} s",
        audit=audit,
        recovery=settled - back["at"],
        api_slowest=probe.slowest,
        reproduce=f"make faults FAULTS_ARGS='-k {name.split()[0].lower()}'",
    )
    audit.assert_clean()
    assert not probe.failures, probe.failures[:3]
    assert probe.slowest < 1.0, (
        f"the control API took {probe.slowest:.2f} s to answer during the outage"
    )


def test_redis_outage_loses_nothing(tmp_path):
    """Redis (broker, completions, the workers' event stream) stopped mid-stream: runs wait,
    workers survive and reconnect, every file runs once when it is back."""
    with Deployment(tmp_path) as d:
        _outage(d, "Redis", d.redis.stop, d.redis.start, prefix="redis", shows=("broker",))
        assert all(w.process.poll() is None for w in d.workers), (
            "a worker exited during the Redis outage"
        )


def test_mongodb_outage_loses_nothing(tmp_path):
    """MongoDB (data store and event log) stopped mid-stream: runs wait for their
    documents, tasks wait for the store, events wait in the spool; all arrive after."""
    with Deployment(tmp_path) as d:
        _outage(
            d, "MongoDB", d.mongo.stop, d.mongo.start, prefix="mongo", shows=("store", "event log")
        )
