"""`triggerctl run` records its run in the event log the daemon uses, daemon or not, so
`triggerctl show`, `logs` and `events --run` find a run started by hand."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from support import WORKFLOWS, celery_sections

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).parents[1] / "daemon"))
from daemon_harness import Daemon, write_file  # noqa: E402


def ctl(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    return subprocess.run(
        [str(BIN / "triggerctl"), *args, "--config", str(config)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_by_hand(config: Path, *args: str) -> str:
    """`triggerctl run ARGS`; the run id it printed."""
    done = ctl(config, "run", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("run "), done.stdout
    return first.split()[1]


def assert_recorded_once(config: Path, run_id: str, *, output: str) -> list[dict]:
    """show, logs and events --run find the run, each event once, marked as started by hand."""
    shown = json.loads(ctl(config, "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["rule"] is None, shown
    who = f"{os.environ.get('USER') or ''}@{socket.gethostname()}"
    assert (
        "`triggerctl run`" in shown["trigger"]["message"]
        and socket.gethostname() in shown["trigger"]["message"]
    )
    assert shown["trigger"]["data"]["by"].endswith(who.split("@", 1)[1])
    tasks = {task: t["state"] for dag in shown["dags"].values() for task, t in dag["tasks"].items()}
    assert tasks and set(tasks.values()) == {"succeeded"}, shown
    logs = ctl(config, "logs", run_id)
    assert logs.returncode == 0 and output in logs.stdout, logs.stdout + logs.stderr
    events = json.loads(ctl(config, "events", "--run", run_id, "--json", "--limit", "1000").stdout)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event stored twice"
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "trigger.fired" and kinds[-1] == "run.succeeded", kinds
    for kind in (
        "run.started",
        "dag.started",
        "task.started",
        "task.succeeded",
        "output",
        "dag.succeeded",
    ):
        assert kind in kinds, (kind, kinds)
    assert all(e["rule"] is None for e in events)
    return events


def _config_text(executor: str) -> str:
    """A config with the repo's workflows, state in state/, ``executor`` in [executor]."""
    return f'[paths]\nstate_dir = "state"\nworkflows = ["{WORKFLOWS}"]\n[executor]\n{executor}\n'


def write_config(tmp_path: Path, executor: str, more: str = "") -> Path:
    config = tmp_path / "triggerd.toml"
    config.write_text(_config_text(executor) + more)
    return config


def test_a_run_by_hand_is_in_the_event_log_without_a_daemon(tmp_path):
    """With no daemon, show/logs/events read the SQLite event log `triggerctl run` wrote."""
    config = write_config(tmp_path, "workers = 2")
    run_id = run_by_hand(config, "simple")
    assert_recorded_once(config, run_id, output="The value is: 5")
    # everything stored, nothing left behind
    assert not list((tmp_path / "state").glob("events-run-*"))


def test_a_run_by_hand_beside_the_daemon_shares_its_event_log(tmp_path):
    """The daemon runs on the same config and writes the same SQLite event log at the same
    time (a file rule fires while the run by hand goes): both runs are complete there."""
    with Daemon(tmp_path, hold=0.5) as daemon:
        config = tmp_path / "triggerd.toml"
        write_file(daemon.incoming / "a.h5")
        run_id = run_by_hand(
            config, "record", f"path={tmp_path / 'by-hand'}", f"out={daemon.out}", "hold=0.3"
        )
        # through the daemon
        events = assert_recorded_once(config, run_id, output=f"recorded {tmp_path / 'by-hand'}")
        assert {e["pid"] for e in events if e["kind"] == "run.started"} != {daemon.proc.pid}
        ruled = daemon.wait_for(
            lambda: [
                r
                for r in daemon.ctl_json("runs")
                if r["rule"] == "record" and r["state"] == "succeeded"
            ],
            what="the daemon's run",
        )
        # the outbox knows only its own
        assert [r["run_id"] for r in daemon.ctl_json("runs")] == [ruled[0]["run_id"]]
        assert daemon.ctl_json("show", ruled[0]["run_id"])["rule"] == "record"
    # and with the daemon gone, from the store itself
    assert_recorded_once(config, run_id, output="recorded")


def test_a_run_by_hand_on_celery_records_what_its_tasks_printed(tmp_path, celery_cluster):
    """On Celery the tasks' output reaches Redis, not the executor: `triggerctl run` takes its
    run's lines from the workers' stream, so `logs` shows them with no daemon forwarding."""
    config = write_config(tmp_path, 'kind = "celery"', celery_sections(celery_cluster))
    run_id = run_by_hand(config, "simple")
    events = assert_recorded_once(config, run_id, output="The value is: 5")
    # made by the Celery worker
    assert {e["worker"] for e in events if e["kind"] == "output"} != {None}


def test_an_unreachable_event_log_costs_a_warning_and_nothing_is_lost(tmp_path, mongo_server):
    """MongoDB down: the run still succeeds, says where its events wait; the next run, with
    the event log back, stores them."""
    config = tmp_path / "triggerd.toml"
    base = _config_text("workers = 2") + textwrap.dedent("""
        [eventlog]
        backend = "mongodb"
    """)
    config.write_text(
        base + 'url = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"\ndatabase = "manual"\n'
    )
    started = time.monotonic()
    done = ctl(config, "run", "simple")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    first = done.stdout.split()[1]
    assert (
        "warning: the event log" in done.stderr and f"wait in {tmp_path / 'state'}" in done.stderr
    ), done.stderr
    assert list((tmp_path / "state").glob(f"events-run-{first}.*"))
    config.write_text(base + f'url = "{mongo_server.url}"\ndatabase = "manual"\n')
    second = run_by_hand(config, "simple")
    assert_recorded_once(config, first, output="The value is: 5")  # taken over by the second run
    assert json.loads(ctl(config, "show", second, "--json").stdout)["status"] == "succeeded"
    assert not list((tmp_path / "state").glob("events-run-*"))
