"""triggerctl and triggerd as a user runs them: real subprocesses in a scratch directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import WORKFLOWS, wait_for

BIN = Path(sys.executable).parent


def cli(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def site(tmp_path):
    """A working directory with a config using the repo's workflows and a drafts folder."""
    (tmp_path / "drafts").mkdir()
    (tmp_path / "triggerd.toml").write_text(
        textwrap.dedent(f"""
        [paths]
        state_dir = "state"
        workflows = ["{WORKFLOWS}"]
        [executor]
        workers = 2
        [log]
        format = "json"
    """)
    )
    return tmp_path


def _stderr_until(proc: subprocess.Popen, marker: str) -> list[str]:
    """The lines ``proc`` wrote to stderr up to the first holding ``marker`` (blocks until
    then: pytest's timeout ends a test whose command never writes it)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            break
    return seen


def draft(site: Path, name: str, body: str) -> None:
    (site / "drafts" / f"{name}.py").write_text(
        "from triggerd.flow import *\n" + textwrap.dedent(body)
    )


def test_run_prints_run_id_progress_and_exits_zero(site):
    """`triggerctl run simple` shows the run id and each task, and exits 0 on success."""
    done = cli(["triggerctl", "run", "simple"], site)
    assert done.returncode == 0, done.stderr
    assert "of 'simple'" in done.stdout.splitlines()[0]
    assert "main_dag:1/put_value" in done.stdout and "main_dag:1/show_value" in done.stdout
    assert "succeeded in" in done.stdout.splitlines()[-1]
    assert (site / "state" / "hmac.key").stat().st_mode & 0o777 == 0o600


def test_run_failing_workflow_exits_one_with_traceback(site):
    """A failing task makes `triggerctl run` exit 1 and print the task's traceback."""
    draft(
        site,
        "fails",
        """
        def boom(data, store, signal, context):
            raise RuntimeError("detector offline")
        d = Dag("d")
        d.define({PythonTask("boom", boom): None})
    """,
    )
    done = cli(["triggerctl", "run", "--workflows", "drafts", "fails"], site)
    assert done.returncode == 1
    assert "RuntimeError: detector offline" in done.stderr
    assert "failed" in done.stdout.splitlines()[-1]


def test_run_with_missing_parameter_exits_two_naming_it(site):
    """A missing required parameter is bad input: exit 2, the option and its type named."""
    done = cli(["triggerctl", "run", "parameters"], site)
    assert done.returncode == 2
    assert "filepath (str)" in done.stderr


def test_run_json_prints_one_event_per_line(site):
    """`--json` prints parseable events ending with run.succeeded."""
    done = cli(["triggerctl", "run", "--json", "simple"], site)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run.started" and kinds[-1] == "run.succeeded"
    assert {e["run"] for e in events} == {events[0]["run"]}


def test_draft_directory_shadows_the_configured_workflow(site):
    """A file in --workflows DIR wins over the deployed workflow of the same name."""
    draft(
        site,
        "simple",
        """
        def mark(data, store, signal, context):
            print("DRAFT VERSION")
        d = Dag("draft")
        d.define({PythonTask("mark", mark): None})
    """,
    )
    done = cli(["triggerctl", "run", "--workflows", "drafts", "simple"], site)
    assert done.returncode == 0, done.stderr
    assert "DRAFT VERSION" in done.stdout and "draft:1/mark" in done.stdout


def test_unknown_workflow_says_where_it_looked(site):
    """An unknown workflow name exits 2 and lists the directories searched."""
    done = cli(["triggerctl", "run", "nope"], site)
    assert done.returncode == 2
    assert "workflow 'nope' not found" in done.stderr and str(WORKFLOWS) in done.stderr


def test_workflows_lists_summaries_parameters_and_broken_files(site):
    """`triggerctl workflows` shows each workflow's summary and options, and a broken
    file's error."""
    draft(site, "broken", "def (:\n")
    (site / "drafts" / "ok.py").write_text(
        '"""A draft that works."""\nfrom triggerd.flow import *\n'
        'd = Dag("d")\nd.define({PythonTask("t"): None})\n'
    )
    done = cli(["triggerctl", "workflows", "--workflows", "drafts"], site)
    assert done.returncode == 0, done.stderr
    assert "ok  A draft that works." in done.stdout
    assert "broken  (does not load)" in done.stdout and "broken.py, line 2" in done.stdout
    listed = json.loads(cli(["triggerctl", "workflows", "--json"], site).stdout)
    params = next(w for w in listed if w["name"] == "parameters")["parameters"]
    assert {"name": "filepath", "type": "str", "required": True}.items() <= params[0].items()


def test_check_reports_every_broken_workflow_and_exits_one(site):
    """`triggerd check` loads every workflow, names each broken one, and exits 1 if any."""
    assert cli(["triggerd", "check"], site).returncode == 0
    (site / "triggerd.toml").write_text(
        (site / "triggerd.toml")
        .read_text()
        .replace(f'workflows = ["{WORKFLOWS}"]', f'workflows = ["{WORKFLOWS}", "drafts"]')
    )
    draft(
        site,
        "cyclic",
        'a, b = PythonTask("a"), PythonTask("b")\nd = Dag("loop")\nd.define({a: b, b: a})\n',
    )
    done = cli(["triggerd", "check"], site)
    assert done.returncode == 1
    assert (
        "workflow cyclic:" in done.stdout
        and "cycle" in done.stdout
        and "workflow simple: ok" in done.stdout
    )


def test_config_show_names_its_source_and_masks_secrets(site):
    """`triggerd config show` prints the file it loaded and never the inline HMAC key."""
    (site / "triggerd.toml").write_text(
        (site / "triggerd.toml").read_text() + '\n[security]\nhmac_key = "super-secret-value-123"\n'
    )
    done = cli(["triggerd", "config", "show"], site)
    assert done.returncode == 0, done.stderr
    assert f"# source: {site / 'triggerd.toml'}" in done.stdout
    assert "super-secret" not in done.stdout and '"***"' in done.stdout


def test_bad_config_exits_two_naming_file_and_key(site):
    """A wrong value in the config is reported with the file and the dotted key, exit 2."""
    (site / "triggerd.toml").write_text("[executor]\nworkers = \"many\"\n")
    done = cli(["triggerctl", "run", "simple"], site)
    assert done.returncode == 2
    assert "triggerd.toml" in done.stderr and "executor.workers" in done.stderr


def test_check_reports_a_rule_naming_an_unknown_workflow_with_file_and_key(site):
    """`triggerd check` fails on a rule whose workflow does not exist, naming file, line and key."""
    (site / "triggers").mkdir()
    rule_file = site / "triggers" / "bad.toml"
    rule_file.write_text(
        '[[rule]]\nname = "x"\nworkflow = "no_such_flow"\n'
        '[rule.files]\nroots = ["/tmp"]\ncomplete = "eventually"\n'
    )
    (site / "triggerd.toml").write_text(
        (site / "triggerd.toml")
        .read_text()
        .replace("[executor]", f'triggers = ["{site / "triggers"}"]\n[executor]')
    )
    done = cli(["triggerd", "check"], site)
    assert done.returncode == 1
    assert str(rule_file) in done.stdout
    assert "no_such_flow" in done.stdout and "complete" in done.stdout and "line" in done.stdout
    listed = [line for line in done.stdout.splitlines() if line.startswith("rules: ")]
    # it once said '1 problem(s)'
    assert len(listed) == 2 and "2 problems found" in done.stdout, done.stdout


def test_run_on_celery_without_a_worker_says_so_after_the_hint_delay(site, redis_server):
    """`triggerctl run` on Celery with no worker consuming the queue: after --hint-after (10 s
    by default; 2 here) it says what is missing and how to start a worker, and keeps
    waiting (Ctrl-C leaves; the stop grace is short, as no worker will acknowledge it)."""
    broker = redis_server.url.rsplit("/", 1)[0] + "/7"  # a database no worker of the session reads
    config = site / "triggerd.toml"
    text = config.read_text().replace(
        "[executor]\n", '[executor]\nkind = "celery"\nstop_grace = 1.0\n'
    )
    config.write_text(text + f'[celery]\nbroker_url = "{broker}"\n')
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    proc = subprocess.Popen(
        [str(BIN / "triggerctl"), "run", "--hint-after", "2", "simple"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = _stderr_until(proc, "no worker has started a task")
        assert (
            "no worker has started a task after 2 s" in seen[-1]
            and "triggerd worker -Q task" in seen[-1]
        ), seen
        assert proc.poll() is None  # still waiting for a worker
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=30)


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), e.g. an executor's worker processes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_sigterm_stops_the_run_and_its_worker_processes(site):
    """`triggerctl run` sent SIGTERM (systemd, kill, a CI timeout) takes Ctrl-C's path: the
    run is stopped, the executor closed, and no worker process is left behind."""
    draft(
        site,
        "sleepy",
        """
        import time
        def nap(data, store, signal, context):
            time.sleep(120)
        d = Dag("main")
        d.define({PythonTask("nap", nap): None})
    """,
    )
    config = site / "triggerd.toml"  # a sleeping Python task ends when the grace is over
    config.write_text(config.read_text().replace("[executor]\n", "[executor]\nstop_grace = 1.0\n"))
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    proc = subprocess.Popen(
        [str(BIN / "triggerctl"), "run", "--workflows", "drafts", "sleepy"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # blocks until the task runs (pytest's timeout ends a run without it)
        for line in proc.stdout:
            if "nap" in line and "started" in line:
                break
        workers = _descendants(proc.pid)
        assert workers, "the local executor runs tasks in worker processes"
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "stopped" in out, out

    def left() -> list[int]:
        return sorted(pid for pid in workers if Path(f"/proc/{pid}").exists())

    wait_for(
        lambda: not left(),
        10,
        "the worker processes to exit after SIGTERM",
        detail=lambda: f"worker processes left running: {left()}",
    )


def test_run_piped_into_head_ends_and_its_run_succeeds(site):
    """`triggerctl run simple | head -1`: the reader leaves after one line; the run goes on
    to its end unseen and triggerctl exits with its status (it used to hang for ever,
    and a task printing into the closed pipe failed)."""
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    done = subprocess.run(
        ["bash", "-c", f"'{BIN / 'triggerctl'}' run simple | head -1; exit ${{PIPESTATUS[0]}}"],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("run ") and done.stdout.count("\n") == 1, done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def test_check_warns_loudly_of_no_rules_and_missing_directories(tmp_path):
    """Outside a checkout, `triggerd check` once said ok with 0 rules and missing
    directories; it still exits 0 (nothing is invalid) but says what is likely a mistake."""
    done = cli(["triggerd", "check"], tmp_path)  # no config file at all
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning: ")]
    assert any("no config file found" in w for w in warnings), done.stdout
    assert any(f"paths.workflows: {tmp_path / 'workflows'} does not exist" in w for w in warnings)
    assert any(f"paths.triggers: {tmp_path / 'triggers'} does not exist" in w for w in warnings)
    assert any("no trigger rules" in w for w in warnings)


def test_run_on_celery_names_the_queue_no_worker_consumes(site, celery_cluster):
    """`triggerctl run queues` with a worker on the default queues only: light_task runs, and
    after --hint-after (2 s here) the hint names 'high_memory' (and only it), and the worker
    that would take it."""
    from support import celery_sections

    config = site / "triggerd.toml"
    text = config.read_text().replace(
        "[executor]\n", '[executor]\nkind = "celery"\nstop_grace = 1.0\n'
    )
    config.write_text(text + celery_sections(celery_cluster))
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    proc = subprocess.Popen(
        [str(BIN / "triggerctl"), "run", "--hint-after", "2", "queues"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = _stderr_until(proc, "no worker consumes")
        hint = seen[-1]
        assert (
            "queue 'high_memory' (1 task waiting)" in hint
            and "`triggerd worker -Q high_memory`" in hint
        ), seen
        # light_task did start
        assert "'task'" not in hint and "no worker has started a task" not in hint
        assert proc.poll() is None  # still waiting for a worker
    finally:
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=30)
        # the stopped run's job: no later test's worker gets it
        celery_cluster.redis.client.delete("high_memory")
    assert "light_task" in out and "succeeded" in out


def test_config_given_to_the_program_reaches_every_command(site, tmp_path_factory):
    """`triggerctl --config FILE cmd` as `triggerctl cmd --config FILE` (init's hint once
    printed the first form, which click refused); the command's own --config wins."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    config = str(site / "triggerd.toml")
    listed = cli(["triggerctl", "--config", config, "workflows"], elsewhere)
    assert listed.returncode == 0 and "simple" in listed.stdout, listed.stderr
    checked = cli(["triggerd", "--config", config, "check"], elsewhere)
    assert checked.returncode == 0 and f"config: {config}: ok" in checked.stdout, (
        checked.stdout + checked.stderr
    )
    own = cli(
        ["triggerctl", "--config", "/nonexistent.toml", "workflows", "--config", config], elsewhere
    )
    assert own.returncode == 0, own.stderr
    missing = cli(["triggerctl", "--config", "/nonexistent.toml", "workflows"], elsewhere)
    assert (
        missing.returncode == 2 and "config file not found (given with --config)" in missing.stderr
    )
