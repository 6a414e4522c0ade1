"""The daemon's own side: reloads in a loop during a burst, and the state directory's
disk full while files arrive. Nothing lost, nothing doubled."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployment import FULL, ApiProbe, Deployment, Load
from report import record
from support import wait_for

pytestmark = pytest.mark.timeout(900 if FULL else 300)

BURST = Load(files=300, rate=50.0, outage=0.0) if FULL else Load(files=100, rate=50.0, outage=0.0)
FULL_DISK = Load(files=150, rate=5.0, outage=30.0) if FULL else Load(files=40, rate=5.0, outage=5.0)


def test_sighup_in_a_loop_during_a_burst_loses_no_file(tmp_path):
    """SIGHUP every 0.2 s (reload: config and rules read again) while files arrive at
    50/s: every file runs once."""
    with Deployment(tmp_path) as d:
        assert d.daemon is not None
        pid = d.daemon.pid
        paths = d.drop(
            BURST.files,
            BURST.rate,
            "hup",
            during=lambda i: os.kill(pid, signal.SIGHUP) if i % 10 == 0 else None,
        )
        reloads = d.status()["reloads"]
        d.wait_settled(paths, timeout=180)
        audit = d.audit(paths)
    record(
        "SIGHUP loop",
        load=BURST.describe(),
        injected=f"SIGHUP every 0.2 s ({reloads} reloads)",
        audit=audit,
        recovery=None,
        reproduce="make faults FAULTS_ARGS='-k sighup'",
    )
    audit.assert_clean()
    assert reloads >= BURST.files // 10 - 2


@contextlib.contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` at ``where`` (root only: this suite runs as root in CI)."""
    where.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            "cannot mount a small tmpfs for the state directory (needs root): "
            + done.stderr.strip()
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the disk is full."""
    chunk = b"\0" * (1 << 16)
    with path.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    with contextlib.suppress(OSError):  # the last bytes too
        with path.open("ab") as f:
            while True:
                f.write(b"\0")
                f.flush()


def test_state_directory_disk_full_waits_and_loses_nothing(tmp_path):
    """The state directory's disk fills up while files arrive: the daemon says so
    (status, dependency.down), keeps the triggers in memory in order, answers its API,
    and when space returns writes them and runs every file once."""
    with small_disk(tmp_path / "state", 16) as state, Deployment(tmp_path, state_dir=state) as d:
        ballast = state / "ballast"
        full_at: list[float] = []
        seen_down: set[str] = set()

        def during(i: int) -> None:
            if i == FULL_DISK.files // 4:
                fill(ballast)
                full_at.append(time.monotonic())
            if full_at and ballast.exists():
                seen_down.update(
                    dep["name"] for dep in d.status()["dependencies"] if dep["state"] == "down"
                )
                if time.monotonic() - full_at[0] > FULL_DISK.outage:
                    ballast.unlink()

        with ApiProbe(d) as probe:
            paths = d.drop(FULL_DISK.files, FULL_DISK.rate, "full", during=during)
            if ballast.exists():
                ballast.unlink()
            freed = time.monotonic()
            settled = d.wait_settled(paths, timeout=180)
        audit = d.audit(paths)
        wait_for(
            lambda: all(dep["state"] != "down" for dep in d.status()["dependencies"]),
            30,
            "the state file up again",
        )
    record(
        "state disk full",
        load=FULL_DISK.describe(),
        injected=f"state directory's disk (tmpfs) full {FULL_DISK.outage:g} s",
        audit=audit,
        recovery=settled - freed,
        api_slowest=probe.slowest,
        reproduce="make faults FAULTS_ARGS='-k disk_full'",
    )
    audit.assert_clean()
    assert "state file" in seen_down, seen_down
    assert probe.slowest < 1.0 and not probe.failures, (probe.slowest, probe.failures[:3])
