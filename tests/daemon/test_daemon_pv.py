"""PV trigger rules through a real daemon and a real soft IOC (tests/ioc_fixture.py).

The IOC serves ``TEST:ACQ`` (long), ``TEST:VAL`` (double, INVALID above 100),
``TEST:NAME`` (a CHAR waveform, as areaDetector's ``FullFileName_RBV``) and ``TEST:CAPTURE``
(an enum Done/Capture, as ``Capture_RBV``); the daemon
subprocess inherits the loopback Channel Access environment. The workflow is the
harness's ``record``: it writes the ``path`` parameter into a marker named by run id.
"""

from __future__ import annotations

import json
import time

import epics
import httpx
import pytest
from daemon_harness import Daemon, write_file
from ioc_fixture import STATUS_PV_PORT

ACQ, VAL, NAME, CAPTURE = "TEST:ACQ", "TEST:VAL", "TEST:NAME", "TEST:CAPTURE"


def put(pv: str, value) -> None:
    assert epics.caput(pv, value, wait=True, timeout=5, connection_timeout=5) == 1, (
        f"caput {pv} failed"
    )


def pv_rule(
    d: Daemon, name: str, table: str, path: str = "{pv[TEST:NAME]}", extra: str = ""
) -> str:
    return f"""
[[rule]]
name = "{name}"
workflow = "record"
params = {{ path = "{path}", out = "{d.out}", hold = 0 }}
{extra}
[rule.pv]
{table}
"""


def events(d: Daemon, *kinds: str) -> list[dict]:
    args = [a for k in kinds for a in ("--kind", k)]
    return d.ctl_json("events", *args, "--limit", "500")


def fired(d: Daemon, rule: str) -> list[dict]:
    return [r for r in d.runs_db() if r["rule"] == rule]


def pv_row(d: Daemon, name: str) -> dict:
    return next(p for p in d.ctl_json("status")["pvs"] if p["name"] == name)


def updates(d: Daemon, *names: str) -> dict[str, int]:
    """How many values of each PV the daemon has received (its initial one included)."""
    return {n: pv_row(d, n)["updates"] for n in names}


def received(d: Daemon, counts: dict[str, int]) -> None:
    """Until the daemon has received at least ``counts[pv]`` values of each PV. Its PV
    thread decides on a value's rules as it counts it, so a fire from any of those values
    is on its way to the dispatcher by then."""
    d.wait_for(
        lambda: all(n >= counts[pv] for pv, n in updates(d, *counts).items()),
        20,
        f"the daemon to receive {counts} values",
    )


def connected(d: Daemon, *names: str) -> None:
    d.wait_for(
        lambda: all(
            pv_row(d, n)["state"] == "connected" and pv_row(d, n)["updates"] for n in names
        ),
        20,
        f"{names} connected",
    )


@pytest.fixture
def reset(soft_ioc):
    """The IOC's records at known values before a test (the IOC is shared by the session)."""
    put(ACQ, 0)
    put(VAL, 0.0)
    put(NAME, "")
    put(CAPTURE, 0)
    return soft_ioc


def test_falling_edge_starts_the_workflow_with_the_snapshot_and_never_on_connect(tmp_path, reset):
    """Capture 1 -> 0 starts one run whose params hold the snapshot PV's value; the value the
    daemon finds at start does not fire; the trigger event carries values and time stamps."""
    put(ACQ, 1)  # the value at start: satisfies "falling" on its own only if it fired on connect
    d = Daemon(tmp_path)
    d.write_rules(pv_rule(d, "scan", f'name = "{ACQ}"\nwhen = "falling"\nsnapshot = ["{NAME}"]'))
    with d:
        connected(d, ACQ, NAME)
        assert fired(d, "scan") == []
        put(NAME, "/data/visit 1/scan_0001.h5")
        put(ACQ, 0)
        d.wait_for(lambda: len(d.markers()) == 1, 20, "one run")
        # a fire on connect would have come before this one, from the same monitor
        assert len(fired(d, "scan")) == 1
        assert list(d.markers().values()) == ["/data/visit 1/scan_0001.h5"]
        put(ACQ, 1)
        put(ACQ, 0)
        d.wait_for(lambda: len(d.markers()) == 2, 20, "a second run")
        (first, *_) = [e for e in events(d, "trigger.fired") if e["rule"] == "scan"]
        source = first["source"]
        assert source["pv"] == ACQ and source["value"] == 0 and source["old_value"] == 1
        assert source["snapshot"][NAME]["value"] == "/data/visit 1/scan_0001.h5"
        assert abs(source["snapshot"][NAME]["timestamp"] - time.time()) < 60
        status = d.ctl_json("status")
        assert {r["name"]: (r["source"], r["pv"]) for r in status["rules"]} == {"scan": ("pv", ACQ)}
        assert pv_row(d, NAME)["snapshot_of"] == ["scan"]
        assert "TEST:ACQ" in d.ctl("status").stdout
        assert f"{ACQ} (falling 0)" in d.ctl("rules").stdout
        assert f"{ACQ} = 0" in d.ctl("runs").stdout
        first_run = fired(d, "scan")[0]["run_id"]
        replay = json.loads(d.ctl("replay", first_run, "--json").stdout)["run_id"]
        d.wait_for(lambda: len(d.markers()) == 3, 20, "the replayed run")
        assert d.markers()[replay] == "/data/visit 1/scan_0001.h5"


def test_each_condition_kind_fires_through_the_daemon(tmp_path, reset):
    """One daemon, one rule per kind; a scripted sequence of puts fires each the expected times."""
    d = Daemon(tmp_path)
    rules = [
        ("rising", f'name = "{ACQ}"\nwhen = "rising"'),
        ("equals", f'name = "{ACQ}"\nwhen = "equals"\nvalue = 2'),
        ("transition", f'name = "{ACQ}"\nwhen = "transition"\nfrom = 2\nto = 3'),
        ("above", f'name = "{VAL}"\nwhen = "above"\nthreshold = 10\nhysteresis = 1'),
        ("in-range", f'name = "{VAL}"\nwhen = "enter_range"\nlow = 20\nhigh = 30'),
        ("regex", f'name = "{NAME}"\nwhen = "regex"\npattern = "\\\\.h5$"'),
        ("text", f'name = "{NAME}"\nwhen = "string_equals"\nvalue = "stop"'),
        ("change", f'name = "{NAME}"\nwhen = "change"'),
    ]
    d.write_rules(
        "".join(pv_rule(d, name, table, path="{pvname}={value}") for name, table in rules)
    )
    with d:
        connected(d, ACQ, VAL, NAME)
        seen = updates(d, ACQ, VAL, NAME)
        acq, val, name = (
            (1, 2, 3, 0),
            (10.5, 11.0, 9.5, 10.5, 25.0, 200.0, 25.0),
            ("a.h5", "b.txt", "stop", "c.h5"),
        )
        for value in acq:
            put(ACQ, value)
        for value in val:  # 200 is INVALID: ignored
            put(VAL, value)
        for value in name:
            put(NAME, value)
        expected = {
            "rising": 1,
            "equals": 1,
            "transition": 1,
            "above": 1,
            "in-range": 1,
            "regex": 2,
            "text": 1,
            "change": 4,
        }
        d.wait_for(
            lambda: {n: len(fired(d, n)) for n in expected} == expected, 20, f"runs {expected}"
        )
        received(
            d, {ACQ: seen[ACQ] + len(acq), VAL: seen[VAL] + len(val), NAME: seen[NAME] + len(name)}
        )
        assert {n: len(fired(d, n)) for n in expected} == expected
        d.wait_for(lambda: len(d.markers()) == sum(expected.values()), 20, "every run done")
        assert sorted(v for v in d.markers().values() if v.startswith(VAL)) == [
            f"{VAL}=10.5",
            f"{VAL}=25.0",
        ]


def test_debounce_and_paused_rules(tmp_path, reset):
    """A fire inside the debounce hold-off is dropped; a paused rule records the skip."""
    d = Daemon(tmp_path)
    d.write_rules(
        pv_rule(d, "quiet", f'name = "{ACQ}"\nwhen = "rising"\ndebounce = "2s"', path="{value}")
    )
    with d:
        connected(d, ACQ)
        for _ in range(3):
            put(ACQ, 1)
            put(ACQ, 0)
        d.wait_for(lambda: len(fired(d, "quiet")) == 1, 20, "one run")

        def debounced() -> list[dict]:
            return [
                e for e in events(d, "trigger.skipped") if e["data"].get("reason") == "debounce"
            ]

        # the last two rising edges were dropped: every edge has been decided on
        dropped = d.wait_for(lambda: found if len(found := debounced()) >= 2 else [], 20, "skips")
        assert len(fired(d, "quiet")) == 1
        assert len(dropped) == 2 and {e["rule"] for e in dropped} == {"quiet"}
        assert dropped[0]["source"]["pv"] == ACQ and dropped[0]["source"]["value"] == 1
        d.ctl("pause", "quiet")
        time.sleep(2.0)  # the input: past the 2 s debounce hold-off
        put(ACQ, 1)
        d.wait_for(
            lambda: any(e["data"].get("reason") == "paused" for e in events(d, "trigger.skipped")),
            20,
            "skip",
        )
        assert len(fired(d, "quiet")) == 1


def state_of(d: Daemon, rule: str) -> list[str]:
    return [r["state"] for r in fired(d, rule)]


AD_TABLE = (
    f'name = "{ACQ}"\nwhen = "falling"\nsnapshot = ["{NAME}"]\nwait_for_file = "{{pv[{NAME}]}}"\n'
    'file_timeout = "{timeout}"\nfile_settle = "0.3s"'
)


def test_pv_and_file_rule_waits_for_the_file_or_fails_clearly(tmp_path, reset):
    """The areaDetector pattern: Capture falls, the file name PV names the file; the run waits
    in the outbox (state 'waiting') and starts only once the file is complete; a file that
    never comes rejects the run after file_timeout, with a trigger.failed saying why."""
    d = Daemon(tmp_path)
    d.write_rules(pv_rule(d, "ad", AD_TABLE.replace("{timeout}", "2s")))
    data = tmp_path / "data" / "scan 1.h5"
    data.parent.mkdir()
    with d:
        connected(d, ACQ, NAME)
        put(NAME, str(data))
        put(ACQ, 1)
        put(ACQ, 0)
        d.wait_for(lambda: state_of(d, "ad") == ["waiting"], 10, "a waiting run")
        assert d.ctl_json("status")["waiting_for_files"] == 1
        time.sleep(0.5)  # the input: five looks at the missing file (it looks every 0.1 s)
        assert d.markers() == {}
        write_file(data, b"frames")
        d.wait_for(lambda: len(d.markers()) == 1, 20, "the run after the file")
        (run,) = fired(d, "ad")
        assert (
            run["trigger"][0]["file"]["path"] == str(data)
            and run["trigger"][0]["file"]["size"] == 6
        )
        missing = tmp_path / "data" / "never.h5"
        put(NAME, str(missing))
        put(ACQ, 1)
        put(ACQ, 0)
        (failure,) = d.wait_for(lambda: events(d, "trigger.failed"), 20, "the trigger to fail")
        assert failure["level"] == "error" and failure["rule"] == "ad" and failure["run"]
        assert f"file {missing} not complete after 2 s: it does not exist" in failure["message"]
        d.wait_for(
            lambda: state_of(d, "ad") == ["succeeded", "rejected"], 10, "the second run rejected"
        )
        assert len(d.markers()) == 1


def test_a_run_waiting_for_its_file_survives_a_daemon_crash(tmp_path, reset):
    """kill -9 while a run waits for its file: the next start waits on (the outbox has it), the
    file arrives, the run starts exactly once."""
    d = Daemon(tmp_path)
    d.write_rules(pv_rule(d, "ad", AD_TABLE.replace("{timeout}", "60s")))
    data = tmp_path / "scan_0002.h5"
    d.start()
    try:
        connected(d, ACQ, NAME)
        put(NAME, str(data))
        put(ACQ, 1)
        put(ACQ, 0)
        d.wait_for(lambda: state_of(d, "ad") == ["waiting"], 10, "a waiting run")
        d.kill()
        write_file(data, b"written while the daemon was down")
        d.start()
        d.wait_for(lambda: state_of(d, "ad") == ["succeeded"], 20, "the run after the restart")
        assert list(d.markers().values()) == [str(data)]
        connected(d, ACQ, NAME)  # the values found at the restart are decided on
        assert len(fired(d, "ad")) == 1
    finally:
        d.stop()


def test_snapshot_without_value_fails_or_takes_its_default(tmp_path, reset):
    """A snapshot PV that never connects: without a default the trigger is skipped (at error
    level, the other rules keep working); with one, the run starts with the default. The PV
    shows as never connected in status and in the event log."""
    d = Daemon(tmp_path)
    d.write_rules(
        pv_rule(
            d,
            "strict",
            f'name = "{ACQ}"\nwhen = "rising"\nsnapshot = ["TEST:NOPE"]',
            path="{pv[TEST:NOPE]}",
        )
        + pv_rule(
            d,
            "lenient",
            f'name = "{ACQ}"\nwhen = "rising"\nsnapshot = ["TEST:NOPE"]\n'
            'snapshot_defaults = { "TEST:NOPE" = "none" }',
            path="{pv[TEST:NOPE]}",
        )
    )
    with d:
        connected(d, ACQ)
        put(ACQ, 1)
        d.wait_for(lambda: list(d.markers().values()) == ["none"], 20, "the lenient run")
        (failure,) = d.wait_for(lambda: events(d, "trigger.skipped"), 20, "the strict failure")
        assert failure["rule"] == "strict" and "TEST:NOPE (no value yet)" in failure["message"]
        assert (failure["data"]["reason"], failure["level"]) == ("snapshot-failed", "error")
        assert fired(d, "strict") == []
        d.wait_for(
            lambda: pv_row(d, "TEST:NOPE")["state"] == "never connected", 20, "never connected"
        )
        (never,) = events(d, "source.never_connected")
        assert never["data"] == {"pv": "TEST:NOPE"} and never["level"] == "warning"
        assert "TEST:NOPE" in d.ctl("status").stdout
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://triggerd"
        ) as http:
            metrics = http.get("/metrics").text
        assert 'triggerd_pv_connected{pv="TEST:NOPE",state="never connected"} 0' in metrics
        assert f'triggerd_pv_connected{{pv="{ACQ}",state="connected"}} 1' in metrics
        assert "triggerd_pv_backlog 0" in metrics


def test_a_value_of_the_wrong_type_is_an_error_for_that_rule_only(tmp_path, reset):
    """'above' on a text PV reports an error naming the rule, once; a rule on another PV works."""
    d = Daemon(tmp_path)
    d.write_rules(
        pv_rule(d, "numeric", f'name = "{NAME}"\nwhen = "above"\nthreshold = 1')
        + pv_rule(d, "fine", f'name = "{ACQ}"\nwhen = "rising"', path="{value}")
    )
    with d:
        connected(d, ACQ, NAME)
        put(NAME, "abc")
        put(NAME, "def")
        put(ACQ, 1)
        d.wait_for(lambda: len(fired(d, "fine")) == 1, 20, "the other rule")
        (error,) = d.wait_for(lambda: events(d, "source.error"), 20, "the error")
        assert (
            error["level"] == "error"
            and "rule 'numeric'" in error["message"]
            and NAME in error["message"]
        )
        assert fired(d, "numeric") == []


def test_ioc_restart_is_recorded_and_fires_nothing(tmp_path, reset):
    """The IOC dies and comes back with the same value: disconnect and reconnect are events, the
    PV shows disconnected meanwhile, and no rule fires; a real change afterwards does.

    Issue 13, on the same restart: the IOC dies while Capture is on and comes back with Done
    and an empty file name. By default that is no capture that ended: no run. A rule that opts
    in to comparing across the outage fires, and its empty file name is a trigger.skipped
    (snapshot-empty), not a run. A rule naming a state the PV lacks is a source.error and a
    warning in triggerctl status."""
    d = Daemon(tmp_path)
    capture = (
        f'name = "{CAPTURE}"\nwhen = "transition"\nfrom = "Capture"\nto = "Done"\n'
        f'snapshot = ["{NAME}"]'
    )
    d.write_rules(
        pv_rule(d, "any", f'name = "{ACQ}"\nwhen = "change"', path="{value}")
        + pv_rule(d, "done", capture)
        + pv_rule(d, "compare", capture + '\nacross_disconnect = "compare"')
        + pv_rule(
            d,
            "typo",
            f'name = "{CAPTURE}"\nwhen = "transition"\nfrom = "Capturing"\nto = "Done"',
            path="{value}",
        )
    )
    with d:
        connected(d, ACQ, CAPTURE, NAME)
        (typo,) = d.wait_for(
            lambda: [e for e in events(d, "source.error") if "'typo'" in e["message"]],
            10,
            "the state name error",
        )
        assert (
            "from = 'Capturing' is not a state of the PV (its states: Done, Capture)"
            in typo["message"]
        )
        assert typo["data"] == {"pv": CAPTURE} and typo["level"] == "error"
        assert any("'typo'" in w and "'Capturing'" in w for w in pv_row(d, CAPTURE)["warnings"])
        assert "rule 'typo': from = 'Capturing' is not a state" in d.ctl("status").stdout
        put(NAME, str(tmp_path / "scan_0001.h5"))
        put(CAPTURE, 1)
        d.wait_for(lambda: pv_row(d, CAPTURE)["last_value"] == "Capture", 10, "capturing")
        before_restart = updates(d, ACQ, CAPTURE, NAME)
        reset.stop()
        try:
            d.wait_for(lambda: pv_row(d, ACQ)["state"] == "disconnected", 10, "disconnected")
        finally:
            reset.start()
        d.wait_for(
            lambda: all(pv_row(d, pv)["state"] == "connected" for pv in (ACQ, CAPTURE, NAME)),
            30,
            "reconnected",
        )
        (empty,) = d.wait_for(
            lambda: [
                e
                for e in events(d, "trigger.skipped")
                if e["data"].get("reason") == "snapshot-empty"
            ],
            10,
            "the skip",
        )
        assert (
            empty["rule"] == "compare"
            and empty["level"] == "warning"
            and empty["data"]["pvs"] == [NAME]
        )
        assert f"snapshot PV {NAME} is empty" in empty["message"]
        received(d, {pv: n + 1 for pv, n in before_restart.items()})  # a value since the restart
        assert d.runs_db() == [] and events(d, "trigger.failed") == []
        kinds = [e["kind"] for e in reversed(events(d, "source")) if e["data"].get("pv") == ACQ]
        assert kinds[-2:] == ["source.disconnected", "source.connected"], kinds
        put(ACQ, 5)
        d.wait_for(lambda: list(d.markers().values()) == ["5"], 20, "a run after the restart")
        put(NAME, str(tmp_path / "scan_0002.h5"))  # and a real capture
        put(CAPTURE, 1)
        put(CAPTURE, 0)
        d.wait_for(
            lambda: sorted(r["rule"] for r in d.runs_db()) == ["any", "compare", "done"],
            20,
            "one run each",
        )
        assert [r["trigger"][0]["snapshot"][NAME]["value"] for r in d.runs_db()[1:]] == [
            str(tmp_path / "scan_0002.h5")
        ] * 2


def test_a_counter_fires_once_per_increment_names_what_it_missed_or_runs_each_value(
    tmp_path, reset
):
    """when = "increment" on a counter (FileNumber): one run per increase; a jump of 3 is one
    run and a pv.missed_values warning naming the 2 values not seen; with each = true one run
    per value, {index} the value; a reset to 0 is a new baseline, no run."""
    d = Daemon(tmp_path)
    d.write_rules(
        pv_rule(d, "count", f'name = "{ACQ}"\nwhen = "increment"', path="n{index}")
        + pv_rule(d, "each", f'name = "{ACQ}"\nwhen = "increment"\neach = true', path="n{index}")
    )

    def indexes(rule: str) -> list[int]:
        return [r["trigger"][0]["index"] for r in fired(d, rule)]

    with d:
        connected(d, ACQ)
        seen = updates(d, ACQ)[ACQ]
        for value in (1, 4, 0, 1):
            put(ACQ, value)
        d.wait_for(
            lambda: indexes("count") == [1, 4, 1] and indexes("each") == [1, 2, 3, 4, 1],
            20,
            f"runs {indexes('count')} {indexes('each')}",
        )
        (missed,) = events(d, "pv.missed_values")
        assert missed["rule"] == "count" and missed["level"] == "warning"
        assert missed["data"] == {
            "pv": ACQ,
            "missed": [2, 3],
            "count": 2,
            "value": 4,
            "old_value": 1,
        }
        d.wait_for(lambda: len(d.markers()) == 8, 20, "every run done")
        assert sorted(d.markers().values()) == sorted(
            ["n1", "n4", "n1", "n1", "n2", "n3", "n4", "n1"]
        )
        received(d, {ACQ: seen + 4})
        assert len(d.runs_db()) == 8


def test_reload_starts_and_stops_pv_monitors(tmp_path, reset):
    """A PV rule added by a reload fires; removed, its PV is no longer monitored."""
    d = Daemon(tmp_path)
    with d:
        assert d.ctl_json("status")["pvs"] == []
        d.write_rules(
            pv_rule(d, "late", f'name = "{ACQ}"\nwhen = "rising"', path="{value}"), name="pv.toml"
        )
        assert json.loads(d.ctl("reload", "--json").stdout)["ok"]
        connected(d, ACQ)
        put(ACQ, 1)
        d.wait_for(lambda: len(fired(d, "late")) == 1, 20, "the reloaded rule's run")
        (tmp_path / "triggers" / "pv.toml").unlink()
        d.ctl("reload")
        assert d.ctl_json("status")["pvs"] == []


def test_status_pvs_show_the_daemon_and_pause_a_rule(tmp_path, reset):
    """[status_pvs]: RUNNING, counters and LAST_* over Channel Access; writing a rule's PAUSE
    pauses it (recorded with the client's name), triggerctl resume shows in the PV; RUNNING
    drops to 0 as the daemon stops."""
    prefix = "TD1:"
    d = Daemon(
        tmp_path,
        extra_config=(
            f'\n[status_pvs]\nprefix = "{prefix}"\nport = {STATUS_PV_PORT}\ninterval = 0.2\n'
        ),
    )
    d.write_rules(pv_rule(d, "scan", f'name = "{ACQ}"\nwhen = "falling"', path="{value}"))

    def get(name: str):
        return epics.caget(prefix + name, connection_timeout=5, timeout=5, use_monitor=False)

    with d:
        connected(d, ACQ)
        running: list = []
        monitor = epics.PV(
            prefix + "RUNNING",
            callback=lambda value=None, **_: running.append(value),
            connection_timeout=5,
        )
        d.wait_for(lambda: get("RUNNING") == 1, 10, "RUNNING = 1")
        assert get("scan:PAUSE") == 0 and get("LAST_RULE") == ""
        put(ACQ, 1)
        put(ACQ, 0)
        d.wait_for(
            lambda: get("LAST_RULE") == "scan" and get("scan:FIRED") == 1, 10, "LAST_RULE and FIRED"
        )
        assert get("LAST_TRIGGER").endswith("Z") and get("RUNS_FAILED") == 0
        assert epics.caput(prefix + "scan:PAUSE", 1, wait=True, timeout=5) == 1
        assert [r["paused"] for r in d.ctl_json("rules")] == [True]
        (paused,) = events(d, "rule.paused")
        assert "by Channel Access client" in paused["message"] and paused["rule"] == "scan"
        put(ACQ, 1)
        put(ACQ, 0)
        d.wait_for(
            lambda: any(e["data"].get("reason") == "paused" for e in events(d, "trigger.skipped")),
            10,
            "skip",
        )
        d.ctl("resume", "scan")
        d.wait_for(lambda: get("scan:PAUSE") == 0, 10, "PAUSE follows triggerctl resume")
        d.write_rules(
            pv_rule(d, "v1.late-rule", f'name = "{VAL}"\nwhen = "change"', path="{value}"),
            name="more.toml",
        )
        d.ctl("reload")
        assert epics.caput(prefix + "v1.late-rule:PAUSE", "paused", wait=True, timeout=5) == 1
        assert {r["name"]: r["paused"] for r in d.ctl_json("rules")} == {
            "scan": False,
            "v1.late-rule": True,
        }
        d.wait_for(lambda: running == [1], 10, "the RUNNING monitor")
    d.wait_for(lambda: running[-1:] == [0], 10, "RUNNING = 0 at stop")
    monitor.disconnect()
    assert len(fired(d, "scan")) == 1


def test_index_is_for_counting_rules_only_and_the_example_rule_file_loads(tmp_path):
    """{index} in a rule that does not count is a rule file error naming the key; the
    areaDetector example (the counter pattern) loads as it is written."""
    from pathlib import Path

    from triggerd.daemon.rules import RulesError, load_rules

    (tmp_path / "bad.toml").write_text(
        '[[rule]]\nname = "r"\nworkflow = "w"\nparams = { n = "{index}" }\n'
        '[rule.pv]\nname = "BL:Capture_RBV"\nwhen = "falling"\n'
    )
    with pytest.raises(RulesError) as caught:
        load_rules([tmp_path])
    assert "key 'rule[0].params.n'" in str(
        caught.value
    ) and "'{index}' is the counter value" in str(caught.value)
    (tmp_path / "bad.toml").unlink()
    examples = Path(__file__).parents[2] / "triggers" / "examples"
    (tmp_path / "ad.toml").write_text((examples / "areadetector.toml").read_text())
    rules = load_rules([tmp_path])
    assert [r.pv.condition.kind for r in rules.rules if r.pv] == ["increment"]
