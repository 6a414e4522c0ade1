"""triggerctl in a real terminal (a pseudo-terminal of 60, 120 and 250 columns), not only piped."""

from __future__ import annotations

import pytest
from daemon_harness import BIN, Daemon, write_file
from terminal import run_in_terminal


@pytest.fixture(scope="module")
def daemon_with_a_run(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("terminal")) as daemon:
        write_file(daemon.incoming / "hello.txt", b"hello")
        daemon.wait_for(lambda: [r for r in daemon.runs_db() if r["state"] == "succeeded"], what="a run")
        yield daemon


@pytest.mark.parametrize("columns", [60, 120, 250])
@pytest.mark.parametrize("command", ["runs", "status", "rules"])
def test_listing_commands_work_on_a_terminal(daemon_with_a_run, command, columns):
    """`triggerctl runs|status|rules` on a TTY exits 0 and prints its table (no traceback)."""
    daemon = daemon_with_a_run
    done = run_in_terminal([str(BIN / "triggerctl"), command, "--config", str(daemon.root / "triggerd.toml")],
                           columns=columns, cwd=daemon.root)
    assert done.returncode == 0, done.output
    assert "Traceback" not in done.output
    assert "record" in done.output  # the rule's name, in every one of the three
