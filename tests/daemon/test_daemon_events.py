"""The event log through the daemon: triggerctl events, show and logs, live and afterwards.

The embedded default: SQLite under the state directory, the daemon writing its own and
the local executor's events.
"""

from __future__ import annotations

import json
import subprocess
import time

from daemon_harness import BIN, Daemon, write_file
from support import wait_for

CHATTY = '''
"""Prints, logs and fails on request."""
import logging, sys, time
from triggerd.flow import Dag, Option, Parameters, PythonTask

parameters = Parameters([
    Option("path"),
    Option("lines", default=3, type=int),
    Option("gap", default=0.0, type=float),
    Option("fail", default=False, type=bool),
])


def talk(data, store, signal, context):
    for i in range(store.get("lines")):
        print(f"line {i} of {store.get('path')}")
        time.sleep(store.get("gap"))
    logging.getLogger("chatty").warning("careful")
    print("oops", file=sys.stderr)
    if store.get("fail"):
        raise RuntimeError("it went wrong")


main = Dag("main")
main.define({PythonTask("talk", talk): PythonTask("after")})
'''


def chatty_daemon(tmp_path, *, lines: int = 3, gap: float = 0.0, fail: bool = False) -> Daemon:
    rules = f"""
[[rule]]
name = "chat"
workflow = "chatty"
params = {{ path = "{{path}}", lines = {lines}, gap = {gap}, fail = {str(fail).lower()} }}
[rule.files]
roots = ["{tmp_path / 'incoming'}"]
glob = "*.h5"
"""
    d = Daemon(tmp_path, rules=rules)
    (tmp_path / "workflows" / "chatty.py").write_text(CHATTY)
    return d


def only_run(d: Daemon, state: str) -> str:
    wait_for(lambda: [r["state"] for r in d.runs_db()] == [state], 30, f"one {state} run")
    return d.runs_db()[0]["run_id"]


def test_events_show_the_whole_run_in_order_and_logs_show_what_it_printed(tmp_path):
    """A triggered run's events come back in order (trigger, run, DAG, tasks); `logs`
    has every printed line, the stderr line and the log record, bound to main/talk."""
    with chatty_daemon(tmp_path) as d:
        write_file(d.incoming / "a.h5")
        run_id = only_run(d, "succeeded")
        wait_for(
            lambda: any(
                e["kind"] == "run.succeeded" for e in d.ctl_json("events", "--run", run_id)
            ),
            10,
            "the run's end in the log",
        )
        events = d.ctl_json("events", "--run", run_id, "--limit", "1000")
        kinds = [e["kind"] for e in events]
        assert (
            kinds.index("run.started") < kinds.index("task.started") < kinds.index("run.succeeded")
        )
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        assert {e["run"] for e in events} == {run_id}
        fired = d.ctl_json("events", "--kind", "trigger.fired")
        assert fired and fired[-1]["rule"] == "chat"
        logs = d.ctl_json("logs", run_id)
        printed = [
            (e["kind"], e["task"], e["message"], e["data"].get("stream"))
            for e in logs
            if e["kind"] == "output"
        ]
        assert printed == [
            ("output", "talk", f"line {i} of {d.incoming / 'a.h5'}", "stdout") for i in range(3)
        ] + [("output", "talk", "oops", "stderr")]
        (record,) = [e for e in logs if e["kind"] == "log"]
        assert (record["level"], record["message"], record["dag"], record["task"]) == (
            "warning",
            "careful",
            "main:1",
            "talk",
        )
        text = d.ctl("logs", run_id).stdout
        assert "main:1/talk | line 0 of" in text and "main:1/talk ! oops" in text
        # More than --limit match: the newest are shown, and it says there are more.
        every = d.ctl_json("events", "--since", "1h", "--limit", "1000")
        newest = d.ctl("events", "--since", "1h", "--limit", "3", "--json")
        assert json.loads(newest.stdout) == every[-3:] and "older events match too" in newest.stderr
        assert (
            "older events match too"
            not in d.ctl("events", "--since", "1h", "--limit", "1000").stderr
        )
        # there are runs, none failed
        assert d.ctl("runs", "--failed").stdout.strip() == "no runs match"


def test_show_names_the_failed_task_and_its_error(tmp_path):
    """`triggerctl show RUN` of a failed run: status, the trigger, the task states and
    the error with its traceback; `events --level error` finds the failure."""
    with chatty_daemon(tmp_path, fail=True) as d:
        write_file(d.incoming / "bad.h5")
        run_id = only_run(d, "failed")
        wait_for(
            lambda: (
                d.ctl("show", run_id, check=False).returncode == 0
                and "failed" in d.ctl("show", run_id).stdout.splitlines()[0]
            ),
            10,
            "the summary",
        )
        summary = d.ctl_json("show", run_id)
        assert (
            summary["status"] == "failed"
            and summary["workflow"] == "chatty"
            and summary["rule"] == "chat"
        )
        tasks = summary["dags"]["main:1"]["tasks"]
        assert tasks["talk"]["state"] == "failed"
        assert "it went wrong" in (summary.get("error") or "")
        text = d.ctl("show", run_id).stdout
        assert "talk" in text and "RuntimeError" in text
        errors = d.ctl_json("events", "--level", "error", "--run", run_id)
        assert any(e["kind"] == "task.failed" and e["task"] == "talk" for e in errors)


def test_logs_follow_prints_lines_while_the_task_runs_and_ends_with_the_run(tmp_path):
    """`triggerctl logs RUN -f` prints each line soon after the task prints it (the task
    prints one every 0.3 s) and exits by itself when the run ends."""
    with chatty_daemon(tmp_path, lines=10, gap=0.3) as d:
        write_file(d.incoming / "slow.h5")
        wait_for(
            lambda: d.runs_db() and d.runs_db()[0]["state"] == "running", 30, "the run to start"
        )
        run_id = d.runs_db()[0]["run_id"]
        follower = subprocess.Popen(
            [
                str(BIN / "triggerctl"),
                "logs",
                run_id,
                "-f",
                "--config",
                str(d.root / "triggerd.toml"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        seen: list[tuple[float, str]] = []
        assert follower.stdout is not None
        for line in follower.stdout:
            seen.append((time.monotonic(), line))
        assert follower.wait(30) == 0
        lines = [text for _t, text in seen if "| line" in text]
        assert len(lines) == 10
        # live, not all at the end: the lines arrived spread over the run's ~3 s
        stamps = [t for t, text in seen if "| line" in text]
        assert stamps[-1] - stamps[0] > 1.5


def test_the_event_log_stays_readable_when_the_daemon_is_down(tmp_path):
    """After the daemon stopped, `events` and `show` read the store directly."""
    d = chatty_daemon(tmp_path)
    with d:
        write_file(d.incoming / "kept.h5")
        run_id = only_run(d, "succeeded")
    done = subprocess.run(
        [
            str(BIN / "triggerctl"),
            "events",
            "--run",
            run_id,
            "--json",
            "--config",
            str(d.root / "triggerd.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert '"run.succeeded"' in done.stdout and '"daemon.stopped"' not in done.stdout
    shown = subprocess.run(
        [str(BIN / "triggerctl"), "show", run_id, "--config", str(d.root / "triggerd.toml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_metrics_count_triggers_runs_and_task_durations(tmp_path):
    """/metrics (Prometheus text) on the control socket: fired per rule, runs by outcome,
    the task duration histogram, queue depths, source health and the event log."""
    import httpx

    with chatty_daemon(tmp_path) as d:
        write_file(d.incoming / "m.h5")
        only_run(d, "succeeded")
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://triggerd"
        ) as http:
            wait_for(
                lambda: (
                    'triggerd_runs_ended_total{workflow="chatty",outcome="succeeded"} 1'
                    in http.get("/metrics").text
                ),
                10,
                "the run's end in the metrics",
            )
            text = http.get("/metrics").text
    assert 'triggerd_triggers_fired_total{rule="chat"} 1' in text
    assert 'triggerd_task_duration_seconds_count{workflow="chatty"} 2' in text
    assert 'triggerd_task_duration_seconds_bucket{workflow="chatty",le="+Inf"} 2' in text
    assert "triggerd_outbox_depth 0" in text and "triggerd_eventlog_store_up 1" in text
    assert f'triggerd_source_up{{root="{d.incoming}",state="watching"}} 1' in text
