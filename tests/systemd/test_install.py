"""The README's "Install as a service", followed line by line in a scratch root.

The commands are read from the README itself. What needs a real systemd or root on a
real machine (venv and pip, which CI just did the same way; systemctl; usermod) is
checked for, not run: `systemctl enable --now` becomes `systemd-analyze verify` of the
units `triggerd init` wrote plus the daemon started as the unit starts it (its
ExecStart, in its WorkingDirectory), and `systemctl reload` its ExecReload (SIGHUP).
Everything else runs as written, with /etc/triggerd, /var/lib/triggerd and the venv
moved into the scratch root (`triggerd init --prefix`).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import wait_for

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def install_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Install as a service") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the install section has lost a shell block"
    return [
        re.sub(r"\s+#.*$", "", line).strip()
        for line in "".join(blocks).splitlines()
        if line.strip()
    ]


def _unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("TRIGGERD_CONFIG", "NOTIFY_SOCKET")}


def test_the_readme_service_install_in_a_scratch_root(tmp_path):
    root, data, elsewhere = (
        tmp_path / "root",
        tmp_path / "data" / "incoming",
        tmp_path / "elsewhere",
    )
    data.mkdir(parents=True)
    elsewhere.mkdir()
    config = root / "etc" / "triggerd" / "triggerd.toml"

    def moved(command: str) -> str:
        command = command.replace("/opt/triggerd/venv/bin/", f"{BIN}/").replace(
            "/data/incoming", str(data)
        )
        command = command.replace("/etc/triggerd", str(root / "etc" / "triggerd"))
        words = shlex.split(command)
        if Path(words[0]).name in ("triggerd", "triggerctl") and words[1] != "init":
            # /etc/triggerd/triggerd.toml is the default one, elsewhere
            command += f" --config {config}"
        return command

    commands = install_commands()
    daemon: subprocess.Popen | None = None
    seen: set[str] = set()
    try:
        for command in commands:
            words = shlex.split(command)
            program = Path(words[0]).name
            if program == "python3" or words[1:2] == ["install"]:
                seen.add("venv")  # CI builds the venv exactly so; this test uses it
                continue
            if program == "usermod":
                seen.add("group")
                continue
            if program == "systemctl":
                if "enable" in words and "triggerd" in words:
                    daemon = _start_like_the_unit(root, config)
                elif "reload" in words:
                    assert daemon is not None
                    daemon.send_signal(signal.SIGHUP)  # the unit's ExecReload
                    wait_for(
                        lambda: (
                            len(json.loads(_ctl(["rules", "--json"], config, elsewhere).stdout))
                            == 1
                        ),
                        60,
                        "the reload to take the rule",
                    )
                elif "enable" in words:  # a worker: the instance name the README gives must verify
                    _verify(root, re.search(r'"(triggerd-worker@.*?\.service)"', command).group(1))
                seen.add(words[1])
                continue
            if program == "triggerd" and words[1] == "init":
                done = subprocess.run(
                    [*shlex.split(moved(command)), "--prefix", str(root)],
                    env=_env(),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
                assert f"created  {config}" in done.stdout and "next:" in done.stdout, done.stdout
                _verify(root, "triggerd.service")
                continue
            done = subprocess.run(
                ["bash", "-c", moved(command)],
                cwd=elsewhere,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert {"venv", "group", "daemon-reload", "enable", "reload"} <= seen, seen

        # The first rule works: a file in the data directory runs file_info.
        (data / "first.dat").write_bytes(b"hello\n")
        runs = wait_for(
            lambda: [
                r
                for r in json.loads(_ctl(["runs", "--json"], config, elsewhere).stdout)
                if r["state"] == "succeeded"
            ],
            60,
            "a run of the first rule",
        )
        assert runs[0]["trigger"][0]["path"] == str(data / "first.dat")
        # init again: everything kept, nothing overwritten.
        again = subprocess.run(
            [str(BIN / "triggerd"), "init", "--prefix", str(root)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 0 and "created " not in again.stdout, again.stdout
    finally:
        if daemon is not None:
            daemon.terminate()
            out, _ = daemon.communicate(timeout=60)
            assert daemon.returncode == 0, out[-3000:]


def _start_like_the_unit(root: Path, config: Path) -> subprocess.Popen:
    """As systemd starts triggerd.service: its ExecStart, in its WorkingDirectory."""
    service = _unit(root / "etc" / "systemd" / "system" / "triggerd.service")["Service"]
    assert service["ExecStart"] == f"{BIN / 'triggerd'} run --config {config}"
    workdir = Path(service["WorkingDirectory"])
    assert workdir.is_dir() and (workdir.stat().st_mode & 0o777) == 0o750
    daemon = subprocess.Popen(
        shlex.split(service["ExecStart"]),
        cwd=workdir,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(
        lambda: _ctl(["status"], config, Path("/")).returncode == 0, 60, "the daemon to answer"
    )
    return daemon


def _verify(root: Path, unit: str) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    units = root / "etc" / "systemd" / "system"
    # an instance: the template under the instance's name
    if "@" in unit and not (units / unit).exists():
        instance = unit.replace(
            "$(systemd-escape task,dag,workflow)",
            subprocess.check_output(["systemd-escape", "task,dag,workflow"], text=True).strip(),
        )
        shutil.copy(units / "triggerd-worker@.service", units / instance)
        unit = instance
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(units / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in done.stderr.splitlines() if "triggerd" in line]
    assert problems == [], done.stderr


def _ctl(args: list[str], config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "triggerctl"), *args, "--config", str(config)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
