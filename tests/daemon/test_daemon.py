"""The daemon as a user runs it: a real `triggerd run` subprocess, real files, triggerctl.

Each test starts its own daemon in a scratch directory (state, socket, workflows, rules),
writes files into the watched directory and checks what ran, through triggerctl and the
daemon's state file.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket

import pytest
from daemon_harness import Daemon, write_file


def succeeded_paths(daemon: Daemon) -> list[str]:
    return sorted(r["trigger"][0]["path"] for r in daemon.runs_db() if r["state"] == "succeeded")


def run_paths(daemon: Daemon) -> list[str]:
    """The path of every run, whatever its state, in the order they were triggered."""
    return [r["trigger"][0]["path"] for r in daemon.runs_db()]


def test_new_file_triggers_one_run_visible_in_triggerctl(tmp_path):
    """A file closed in the watched directory starts its workflow once; `triggerctl runs`
    shows it."""
    with Daemon(tmp_path) as d:
        target = d.incoming / "scan_001.h5"
        write_file(target, b"data")
        d.wait_for(lambda: succeeded_paths(d) == [str(target)], what="the run of scan_001.h5")
        runs = d.ctl_json("runs")
        assert [(r["state"], r["rule"], r["workflow"]) for r in runs] == [
            ("succeeded", "record", "record")
        ]
        assert list(d.markers().values()) == [str(target)]
        table = d.ctl("runs").stdout
        assert runs[0]["run_id"] in table and "succeeded" in table
        status = d.ctl_json("status")
        assert status["rules"][0]["fired"] == 1 and status["sources"][0]["state"] == "watching"
    assert d.log.exists()


def test_ignored_temporary_and_hidden_files_do_not_trigger_but_rename_into_place_does(tmp_path):
    """*.tmp and hidden files start nothing; renaming the .tmp into place triggers once."""
    with Daemon(tmp_path) as d:
        write_file(d.incoming / ".hidden")
        write_file(d.incoming / "part.tmp")
        os.rename(d.incoming / "part.tmp", d.incoming / "final.h5")
        d.wait_for(lambda: succeeded_paths(d) == [str(d.incoming / "final.h5")], what="final.h5")
        # The source reports a directory's files in the order the kernel saw them: a run
        # of .hidden or part.tmp would have been triggered before final.h5's.
        assert run_paths(d) == [str(d.incoming / "final.h5")]


@pytest.mark.parametrize(
    "name",
    [
        "with space.h5",
        "q'uo\"te.h5",
        "semi;colon.h5",
        "$(touch pwned).h5",
        "new\nline.h5",
        os.fsdecode(b"caf\xe9-latin1.h5"),
    ],
    ids=["space", "quotes", "semicolon", "subshell", "newline", "non-utf8"],
)
def test_hostile_file_names_trigger_verbatim_and_are_never_run_by_a_shell(tmp_path, name):
    """Names with spaces, quotes, ;, $(), newlines or non-UTF-8 bytes arrive unchanged in
    the workflow."""
    with Daemon(tmp_path) as d:
        target = os.path.join(d.incoming, name)
        write_file(target)
        d.wait_for(lambda: list(d.markers().values()) == [target], what=f"run of {name!r}")
        assert not (tmp_path / "pwned").exists() and not (d.incoming / "pwned").exists()


def test_rewritten_file_is_a_new_version_and_triggers_again(tmp_path):
    """The same path written twice (new size/mtime) triggers twice; a re-close without
    change does not."""
    with Daemon(tmp_path) as d:
        target = d.incoming / "again.h5"
        write_file(target, b"one")
        d.wait_for(lambda: len(succeeded_paths(d)) == 1, what="first version")
        write_file(target, b"two, longer")
        d.wait_for(lambda: len(succeeded_paths(d)) == 2, what="second version")
        version = target.stat().st_mtime_ns
        with open(target, "r+b"):  # opened for writing, closed unchanged: IN_CLOSE_WRITE
            pass
        assert target.stat().st_mtime_ns == version
        later = d.incoming / "later.h5"
        write_file(later)
        # later.h5 was closed after the re-close: its run means the re-close was handled
        d.wait_for(lambda: str(later) in succeeded_paths(d), what="the run of later.h5")
        assert run_paths(d) == [str(target), str(target), str(later)]


def test_deleted_before_completion_starts_nothing(tmp_path):
    """A file removed while still open for writing never triggers."""
    with Daemon(tmp_path) as d:
        path = d.incoming / "gone.h5"
        with open(path, "wb") as fh:
            fh.write(b"partial")
            os.unlink(path)
        write_file(d.incoming / "kept.h5")
        d.wait_for(lambda: succeeded_paths(d) == [str(d.incoming / "kept.h5")], what="kept.h5")
        # gone.h5's close came before kept.h5's: a run of it would be the first row
        assert run_paths(d) == [str(d.incoming / "kept.h5")]


def test_catch_up_runs_files_that_arrived_while_down_exactly_once(tmp_path):
    """Files written while the daemon was stopped trigger at the next start; old ones do
    not again."""
    d = Daemon(tmp_path)
    with d:
        write_file(d.incoming / "before.h5")
        d.wait_for(lambda: len(succeeded_paths(d)) == 1, what="before.h5")
    write_file(d.incoming / "while_down_1.h5")
    (d.incoming / "sub").mkdir()
    write_file(d.incoming / "sub" / "while_down_2.h5")
    with d:
        # the scan hands every file it found to the dispatcher before it reports
        (scan,) = d.wait_for(d.caught_up, what="the catch-up scan at the second start")
        assert (scan["data"]["files"], scan["data"]["dispatched_before"]) == (3, 1)
        d.wait_for(lambda: len(succeeded_paths(d)) == 3, what="catch-up")
    expected = sorted(
        str(p)
        for p in (
            d.incoming / "before.h5",
            d.incoming / "while_down_1.h5",
            d.incoming / "sub" / "while_down_2.h5",
        )
    )
    assert sorted(run_paths(d)) == expected  # one run each, none twice
    assert succeeded_paths(d) == expected


def test_first_start_with_missed_policy_ignores_old_files_but_all_policy_takes_them(tmp_path):
    """catch_up='missed' on a rule's first start ignores existing files; 'all' triggers each."""
    d = Daemon(tmp_path)
    write_file(d.incoming / "ancient.h5")
    with d:
        # the daemon decides on its catch-up scans as it reports that it started
        d.wait_for(lambda: d.events("daemon.started"), what="the daemon.started event")
        assert d.runs_db() == []
        d.write_rules(d.default_rules(name="backfill", catch_up="all"))
        assert d.ctl_json("reload")["ok"]
        d.wait_for(lambda: succeeded_paths(d) == [str(d.incoming / "ancient.h5")], what="backfill")
        (scan,) = d.wait_for(d.caught_up, what="the backfill's catch-up scan")
        # the one scan was the new rule's: "record" never scanned, never fired
        assert scan["data"]["rules"] == ["backfill"]
        assert {r["rule"] for r in d.runs_db()} == {"backfill"}


def test_catch_up_fires_only_the_rules_that_ask_and_summarises_known_files(tmp_path):
    """A catch-up scan for one rule does not fire another rule (catch_up = 'none') on the
    same files; files dispatched before are counted in one line, not logged one by one."""
    d = Daemon(tmp_path)
    d.write_rules(
        d.default_rules(name="backfill", catch_up="all")
        + d.default_rules(name="live_only", catch_up="none")
    )
    write_file(d.incoming / "old_1.h5")
    write_file(d.incoming / "old_2.h5")
    with d:
        (scan,) = d.wait_for(d.caught_up, what="the backfill's catch-up scan")
        assert scan["data"]["rules"] == ["backfill"]
        d.wait_for(lambda: len(succeeded_paths(d)) == 2, what="the backfill of two files")
        assert {r["rule"] for r in d.runs_db()} == {"backfill"}
    with d:
        # the second start's scan: it reports after handing over what it found
        d.wait_for(lambda: len(d.caught_up()) == 2, what="the catch-up scan at the second start")
        d.wait_for(
            lambda: "catch-up scan found 2 files, 2 of them dispatched before" in d.log.read_text(),
            what="the catch-up summary",
        )
        assert len(d.runs_db()) == 2
    assert len(d.runs_db()) == 2
    assert "skipped: this version of the file was dispatched before" not in d.log.read_text()


def test_kill_9_during_a_burst_then_restart_runs_every_file_exactly_once(tmp_path):
    """kill -9 mid-burst of 1000 files, restart: each file ran to success exactly once."""
    d = Daemon(tmp_path)
    names = []
    with d:
        for i in range(1000):
            name = d.incoming / f"f{i:04d}.dat"
            write_file(name, str(i).encode())
            names.append(str(name))
            if i == 400:
                d.kill()
        d.start()
        # the restart's catch-up scan has handed over every file written while it was down
        d.wait_for(d.caught_up, what="the catch-up scan after the restart")
        d.wait_for(lambda: len(succeeded_paths(d)) >= 1000, timeout=100, what="all 1000 runs")
    rows = d.runs_db()
    paths = [r["trigger"][0]["path"] for r in rows]
    assert sorted(paths) == sorted(names)  # one run row per file, no duplicates
    assert {r["state"] for r in rows} == {"succeeded"}
    assert sorted(d.markers().values()) == sorted(names)


def test_sighup_with_invalid_rules_keeps_the_old_ones_and_valid_rules_take_effect(tmp_path):
    """A broken rule file on reload is refused (old rules keep working); a valid one is applied."""
    with Daemon(tmp_path) as d:
        d.write_rules("[[rule]]\nname = 'bad'\nworkflow = 'nope'\n", name="broken.toml")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: "reload failed" in d.log.read_text(), what="reload failure in the log")
        write_file(d.incoming / "still.h5")
        d.wait_for(lambda: len(succeeded_paths(d)) == 1, what="old rule still working")
        (d.root / "triggers" / "broken.toml").unlink()
        d.write_rules(d.default_rules(name="second"), name="second.toml")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(
            lambda: {r["name"] for r in d.ctl_json("rules")} == {"record", "second"},
            what="second rule",
        )
        write_file(d.incoming / "both.h5")
        d.wait_for(
            lambda: (
                sum(
                    1
                    for r in d.runs_db()
                    if r["trigger"][0]["path"].endswith("both.h5") and r["state"] == "succeeded"
                )
                == 2
            ),
            what="both rules fired",
        )


def test_sigterm_drains_and_exits_zero(tmp_path):
    """SIGTERM lets a running run finish (within drain_timeout) and exits 0."""
    d = Daemon(tmp_path, hold=1.0)
    with d:
        write_file(d.incoming / "slow.h5")
        d.wait_for(lambda: any(r["state"] == "running" for r in d.runs_db()), what="run started")
        assert d.stop() == 0
    assert [r["state"] for r in d.runs_db()] == ["succeeded"]


def test_test_trigger_and_explain_say_which_rules_match_and_why(tmp_path):
    """test-trigger renders the params without running; explain shows the watcher, ledger
    and run."""
    with Daemon(tmp_path) as d:
        probe = d.incoming / "probe.h5"
        dry = d.ctl_json("test-trigger", str(probe))
        assert dry["rules"][0]["matches"] and dry["rules"][0]["params"]["path"] == str(probe)
        assert d.runs_db() == []
        ignored = d.ctl_json("test-trigger", str(d.incoming / "x.tmp"))
        assert not ignored["rules"][0]["matches"] and "*.tmp" in ignored["rules"][0]["why"]
        write_file(probe)
        d.wait_for(lambda: len(succeeded_paths(d)) == 1, what="probe run")
        why = d.ctl_json("explain", str(probe))
        (entry,) = why["ledger"]
        assert (
            entry["rule"] == "record"
            and entry["run_state"] == "succeeded"
            and entry["current_version"]
        )
        assert any(o["what"].startswith("complete") for o in why["observed"])
        assert "ledger" in d.ctl("explain", str(probe)).stdout


def test_pause_resume_start_stop_replay_and_drain(tmp_path):
    """Operators pause a rule (files skipped), start and stop runs by hand, replay, and drain."""
    with Daemon(tmp_path, hold=30.0) as d:
        d.ctl("pause", "record")
        write_file(d.incoming / "paused.h5")
        d.wait_for(lambda: d.skipped("paused", d.incoming / "paused.h5"), what="the paused skip")
        # who paused: triggerctl names its user, which the daemon believes on its socket
        (paused,) = d.events("rule.paused")
        assert paused["data"]["by"] == f"{getpass.getuser()}@{socket.gethostname()} (triggerctl)"
        assert d.runs_db() == []
        d.ctl("resume", "record")
        run_id = d.ctl(
            "start", "record", f"path={d.incoming / 'manual'}", f"out={d.out}", "hold=30"
        ).stdout.strip()
        d.wait_for(lambda: d.ctl_json("runs")[0]["state"] == "running", what="manual run running")
        d.ctl("stop", run_id)
        d.wait_for(lambda: d.ctl_json("runs")[0]["state"] == "stopped", what="manual run stopped")
        replayed = d.ctl_json("replay", run_id)
        assert replayed["replay_of"] == run_id
        d.ctl("stop", replayed["run_id"])
        assert d.ctl_json("drain")["draining"]
        write_file(d.incoming / "after_drain.h5")
        after_drain = d.incoming / "after_drain.h5"
        d.wait_for(lambda: d.skipped("draining", after_drain), what="the draining skip")
        assert all("after_drain" not in str(r["trigger"]) for r in d.runs_db())
        bad = d.ctl("start", "no_such_workflow", check=False)
        assert bad.returncode == 2 and "no_such_workflow" in bad.stderr


def test_triggerctl_without_daemon_says_how_to_start_it(tmp_path):
    """With no daemon running, triggerctl exits 2 and says how to start one."""
    d = Daemon(tmp_path)
    done = d.ctl("status", check=False)
    assert done.returncode == 2
    assert "daemon not running" in done.stderr and "triggerd run" in done.stderr
