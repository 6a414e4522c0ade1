"""The systemd unit files are valid (systemd-analyze verify) and carry the promised settings."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
BIN = Path(sys.executable).parent


def _parse(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(UNITS / name)
    return parser


def test_daemon_unit_is_notify_with_watchdog_restart_and_hardening():
    """triggerd.service is Type=notify with a watchdog, restarts on failure and runs confined."""
    service = _parse("triggerd.service")["Service"]
    assert service["Type"] == "notify" and service["WatchdogSec"]
    assert service["Restart"] == "on-failure"
    assert service["User"] == "triggerd" and service["ProtectSystem"] == "strict"
    assert "/var/lib/triggerd" in service["ReadWritePaths"]
    assert service["ExecReload"].endswith("-HUP $MAINPID")
    assert service["NoNewPrivileges"] == "true"


@pytest.mark.parametrize("unit", ["triggerd.service", "triggerd-worker@.service"])
def test_units_pass_systemd_analyze_verify(tmp_path, unit):
    """systemd-analyze verify finds no error in the unit (ExecStart pointed at this venv)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    text = (UNITS / unit).read_text().replace("/opt/triggerd/venv/bin/", f"{BIN}/")
    name = unit.replace("@.service", "@task.service")
    (tmp_path / name).write_text(text)
    (tmp_path / unit).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # In a container without a running systemd, verify still parses and checks the unit;
    # only lines about the unit itself count.
    problems = [line for line in done.stderr.splitlines() if name in line or unit in line]
    assert problems == [], done.stderr


# The exposure systemd-analyze security may score a unit at most: both units score 1.6
# ("OK"); 2.5 leaves room for one well-argued relaxation, not for dropping a group of
# settings (the worker unit scored 7.5, "EXPOSED", before issue 12).
MAX_EXPOSURE = 2.5


@pytest.mark.parametrize("unit", ["triggerd.service", "triggerd-worker@.service"])
def test_units_are_confined(tmp_path, unit):
    """systemd-analyze security --offline scores each unit at most MAX_EXPOSURE."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    assert found is not None, done.stdout + done.stderr
    assert float(found[1]) <= MAX_EXPOSURE, done.stdout
