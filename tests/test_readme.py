"""Every code block of the README runs (or, where it needs a machine this is not, is
checked as far as it can be): a README example that fails is the first thing a new
user meets. Blocks run elsewhere: the walk-through (tests/test_walkthrough.py, which
also runs the event-log block against its daemon), "Install as a service"
(tests/systemd/test_install.py) and Flower (tests/engine/test_flower.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from pathlib import Path

import pytest
from support import free_port, stop_process, wait_for
from terminal import Terminal

from triggerd.config import load_settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = (REPO / "README.md").read_text()


def blocks(heading: str, language: str) -> list[str]:
    """The ``language`` code blocks of the README section under ``heading``."""
    start = README.index(f"\n{heading}\n")
    end = README.find("\n## ", start + 1)
    return re.findall(rf"```{language}\n(.*?)```", README[start : end if end > 0 else None], re.S)


def lines(block: str) -> list[str]:
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    for name in ("config", "triggers", "workflows"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "var" / "incoming").mkdir(parents=True)
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRIGGERD_CONFIG", "COLUMNS")}
    env["HOME"] = extra.pop("HOME", env.get("HOME", "/root"))
    return {**env, **extra}


def _sh(
    command: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    command = re.sub(
        r"(^|\s)(\.venv/bin/|/opt/triggerd/venv/bin/)?(triggerctl|triggerd|caproto-put|python)\b",
        lambda m: f"{m[1]}{BIN / m[3]}",
        command,
    )
    # Output into files, not pipes: a command may leave a process behind holding them
    # (caproto-put starts a Channel Access repeater when none runs), and a pipe would
    # then never reach its end.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        done = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, stdout=out, stderr=err, timeout=timeout
        )
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(
            done.args,
            done.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def test_the_workflow_example_runs(clone, tmp_path):
    """'Writing a workflow': the example, saved as a workflow file, runs and succeeds (it
    once failed with NameError: name 'Path' is not defined)."""
    (python,) = blocks("## Writing a workflow", "python")
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "compress.py").write_text(python)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "a.dat").write_bytes(b"x" * 1000)
    done = _sh(f"triggerctl run --workflows {drafts} compress dataset={dataset}", clone, _env())
    assert done.returncode == 0, done.stdout + done.stderr
    # small: the tar branch
    assert "tar" in done.stdout and (tmp_path / "dataset.tgz").is_file(), done.stdout


def test_running_workflows_by_hand(clone, tmp_path):
    """Each line of 'Running workflows by hand', as typed (~/drafts holds a draft 'mywf')."""
    (block,) = blocks("## Running workflows by hand", "sh")
    home = tmp_path / "home"
    (home / "drafts").mkdir(parents=True)
    (home / "drafts" / "mywf.py").write_text(
        textwrap.dedent('''
        """A draft taking k."""
        from triggerd.flow import Dag, Option, Parameters, PythonTask
        parameters = Parameters([Option("k")])
        def show(data, store, signal, context):
            print(store.get("k"))
        d = Dag("main")
        d.define({PythonTask("show", show): None})
    ''')
    )
    for command in lines(block):
        done = _sh(command, clone, _env(HOME=str(home)))
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        if "--json" in command:
            assert all(json.loads(line) for line in done.stdout.splitlines())


def test_the_celery_config_and_worker_commands_are_valid(tmp_path):
    """'Running on a cluster': the config block loads (every key known, every value
    valid); each command line parses as the CLI parses it (the workers need a broker:
    tests/engine runs them for real)."""
    (toml,) = blocks("## Running on a cluster: Celery workers", "toml")
    (tmp_path / "triggerd.toml").write_text(toml)
    settings = load_settings(tmp_path / "triggerd.toml")
    assert settings.executor.kind == "celery" and settings.security.hmac_key_file == Path(
        tomllib.loads(toml)["security"]["hmac_key_file"]
    )
    from triggerd.cli.triggerctl_main import cli as triggerctl
    from triggerd.cli.triggerd_main import cli as triggerd

    commands = [
        line
        for block in blocks("## Running on a cluster: Celery workers", "sh")
        for line in lines(block)
    ]
    parsed = 0
    for command in commands:
        words = shlex.split(command)
        group = {"triggerd": triggerd, "triggerctl": triggerctl}.get(words[0])
        if group is None:
            continue  # pip, flower: tests/engine/test_flower.py
        context = group.make_context(words[0], words[1:], resilient_parsing=False)
        with context:
            name, sub, rest = group.resolve_command(context, context.protected_args + context.args)
            sub.make_context(name, rest, parent=context)
        parsed += 1
    assert parsed >= 4, commands


def test_try_a_pv_rule(clone):
    """'Try a PV rule', line by line: caproto's example IOC, the example rule, a put, a
    run of 'parameters' by rule try-pv. Channel Access stays on loopback as the README's
    exports say, on this test session's own ports."""
    (block,) = blocks("### Try a PV rule", "sh")
    commands = lines(block)
    exports = shlex.split(commands[0].removeprefix("export "))
    env = _env(**dict(e.split("=", 1) for e in exports))
    # Ports of its own: the session's soft IOC may hold the session's CA server port, and a
    # unicast search reaches only one of two servers sharing a UDP port.
    env.update(EPICS_CA_SERVER_PORT=str(free_port()), EPICS_CA_REPEATER_PORT=str(free_port()))
    assert commands[1].endswith("&") and "caproto.ioc_examples.simple" in commands[1]
    ioc_argv = [str(BIN / "python"), *shlex.split(commands[1].rstrip("&"))[1:]]
    # A repeater of the test's own on the session's port, so that neither caproto-put nor
    # libca leaves one of theirs behind.
    repeater = subprocess.Popen(
        [str(BIN / "python"), "-m", "caproto.commandline.repeater", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ioc = subprocess.Popen(
        ioc_argv, cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    daemon = None
    try:
        copy, run = (part.strip() for part in commands[2].split("&&"))
        assert run == "make run"
        assert _sh(copy, clone, env).returncode == 0
        # `make run` is `triggerd run` (the Makefile), in its own terminal
        assert "$(VENV)/bin/triggerd run" in (REPO / "Makefile").read_text()
        daemon = Terminal([str(BIN / "triggerd"), "run"], columns=120, cwd=clone, env=env)
        daemon.expect("triggerd started", timeout=60)
        wait_for(
            lambda: '"connected"' in _sh("triggerctl status --json", clone, env).stdout,
            30,
            "the example PV connected",
            detail=lambda: _sh("triggerctl status", clone, env).stdout,
        )
        put = _sh(commands[3], clone, env)
        assert put.returncode == 0, put.stderr
        runs = wait_for(
            lambda: (
                shown
                if "try-pv" in (shown := _sh(commands[4], clone, env)).stdout
                and "succeeded" in shown.stdout
                else None
            ),
            30,
            "a succeeded run of rule try-pv in triggerctl runs",
        )
        assert "parameters" in runs.stdout
        status = _sh(commands[5], clone, env)
        assert (
            status.returncode == 0 and "simple:A" in status.stdout and "connected" in status.stdout
        ), status.stdout
        assert daemon.interrupt() == 0
    finally:
        if daemon is not None:
            daemon.close()
        for process in (ioc, repeater):
            stop_process(process)
