"""Symbolic links never lead out of a rule's roots, and the state directory never triggers
(issue 12, part 1). Against the real daemon, in every completion mode, live and in the
catch-up scan at start."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from daemon_harness import Daemon, write_file
from support import cpu_seconds, rss_kib

from triggerd.daemon.client import ControlClient

pytestmark = pytest.mark.timeout(120)

MODES = ["closed", "moved", "settled", "marker"]


def rules(
    d: Daemon,
    mode: str,
    *,
    follow: bool = False,
    roots: list[Path] | None = None,
    ignore: tuple[str, ...] = ("*.tmp", ".*"),
) -> str:
    return d.default_rules(
        roots=roots or [],
        ignore=ignore,
        catch_up="all",
        files_extra=f"""
        complete = "{mode}"
        settle = "0.3s"
        poll = "0.2s"
        follow_symlinks = {str(follow).lower()}
    """,
    )


def complete(mode: str, path: Path, data: bytes = b"x") -> None:
    """Make ``path`` complete the way ``mode`` sees it."""
    if mode == "moved":
        draft = path.with_name(path.name + ".tmp")
        write_file(draft, data)
        os.rename(draft, path)
    else:
        write_file(path, data)
    if mode == "marker":
        write_file(path.with_name(path.name + ".done"))


def place_link(mode: str, target: Path, link: Path) -> None:
    """Put a symbolic link at ``link`` as a writer would in ``mode`` (renamed into place
    for 'moved', with its marker for 'marker')."""
    if mode == "moved":
        draft = link.parent.parent / f"{link.name}.staged"
        os.symlink(target, draft)
        os.rename(draft, link)
    else:
        os.symlink(target, link)
    if mode == "marker":
        write_file(link.with_name(link.name + ".done"))


def hostile_links(d: Daemon, mode: str) -> None:
    """A link to a directory outside (with files), to the daemon's HMAC key, to a file
    outside, to an ancestor, and a pair of self-links."""
    outside = d.root / "outside"
    outside.mkdir(exist_ok=True)
    for i in range(3):
        write_file(outside / f"secret{i}.dat", b"secret")
    place_link(mode, outside, d.incoming / "e")
    place_link(mode, d.root / "var" / "hmac.key", d.incoming / "key.dat")
    place_link(mode, outside / "secret0.dat", d.incoming / "s.dat")
    place_link(mode, d.root, d.incoming / "up")
    os.symlink(".", d.incoming / "a")
    os.symlink(".", d.incoming / "b")


def recorded(d: Daemon) -> set[str]:
    return set(d.markers().values())


@pytest.mark.parametrize("mode", MODES)
def test_links_never_trigger_by_default_live_or_at_catch_up(tmp_path, mode):
    """Links placed while the daemon runs, then seen again by the catch-up scan of a
    restart: only the real control file ever starts a run."""
    d = Daemon(tmp_path)
    d.write_rules(rules(d, mode))
    with d:
        hostile_links(d, mode)
        control = d.incoming / "control.dat"
        complete(mode, control)
        d.wait_for(lambda: recorded(d) == {str(control)}, 20, "the control file's run")
        # The watch reports in the order it sees things (inotify: the kernel's; settled:
        # the same poll at the latest): a run of a link would be there before control's.
        assert len(d.runs_db()) == 1
    with d:  # catch_up = "all": the scan at start sees every link again
        later = d.incoming / "later.dat"
        complete(mode, later)
        d.wait_for(lambda: len(d.caught_up()) == 2, 20, "the catch-up scan of the restart")
        d.wait_for(lambda: str(later) in recorded(d), 20, "the file written after the restart")
        assert recorded(d) == {str(control), str(later)}
        assert len(d.runs_db()) == 2


@pytest.mark.parametrize("mode", ["closed", "settled"])
def test_followed_links_count_only_inside_the_roots(tmp_path, mode):
    """follow_symlinks = true: a link to a file inside the roots triggers (its path is the
    link's); links to the key, to files outside and to ancestors never do; loops are
    walked once."""
    d = Daemon(tmp_path)
    d.write_rules(rules(d, mode, follow=True))
    inside = d.incoming / "data"
    inside.mkdir()
    complete("closed", inside / "frame.dat")
    with d:
        d.wait_for(lambda: recorded(d) == {str(inside / "frame.dat")}, 20, "the real file's run")
        hostile_links(d, "closed")
        os.symlink(inside / "frame.dat", d.incoming / "alias.dat")
        if mode == "closed":  # a link is never closed after writing: the scan at start finds it
            d.stop()
            d.start()
            # the scan hands over all it found (the hostile links too) before it reports
            d.wait_for(lambda: len(d.caught_up()) == 2, 20, "the catch-up scan of the restart")
        d.wait_for(
            lambda: str(d.incoming / "alias.dat") in recorded(d), 20, "the link inside the roots"
        )
        # settled: the hostile links were placed before the alias, so seen no later
        assert len(d.runs_db()) == 2
        assert recorded(d) == {str(inside / "frame.dat"), str(d.incoming / "alias.dat")}


def test_a_self_link_pair_leaves_a_following_settled_watch_flat_and_a_reload_prompt(tmp_path):
    """`ln -s . a; ln -s . b` under a settled watch that follows links: RSS and CPU stay
    flat, the API answers at once; a reload that drops the rule returns promptly and
    SIGTERM still ends the daemon."""
    d = Daemon(tmp_path)
    d.write_rules(rules(d, "settled", follow=True))
    with d:
        assert d.proc is not None
        pid = d.proc.pid
        os.symlink(".", d.incoming / "a")
        os.symlink(".", d.incoming / "b")
        time.sleep(1.0)  # the input: a second of polls before measuring, then 4 s measured
        rss, cpu, t0 = rss_kib(pid), cpu_seconds(pid), time.monotonic()
        time.sleep(4.0)
        used = (cpu_seconds(pid) - cpu) / (time.monotonic() - t0)
        grown = rss_kib(pid) - rss
        assert used < 0.25, f"the daemon used {used:.0%} of a core with two self-links"
        assert grown < 10_000, f"RSS grew by {grown} KiB in 4 s"
        # timed in this process: a triggerctl process's own start-up is no part of the answer
        with ControlClient(d.socket) as client:
            asked = time.monotonic()
            client.get("/status")
            assert time.monotonic() - asked < 3.0
            (d.root / "other").mkdir()
            d.write_rules(rules(d, "closed", roots=[d.root / "other"]))  # the settled rule goes
            asked = time.monotonic()
            assert client.post("/reload")["ok"]  # what `triggerctl reload` sends
            assert time.monotonic() - asked < 5.0
        assert d.stop(timeout=10) == 0


def test_the_daemons_own_files_never_trigger(tmp_path):
    """A rule whose root holds the daemon's state directory: the daemon's own writes there
    (state, journal, key) and a file planted among them start nothing, not even in the
    scan at start; a file in a subdirectory of the state directory (where the default
    layout keeps var/incoming) and one beside it do."""
    d = Daemon(tmp_path)
    d.write_rules(
        rules(
            d,
            "closed",
            roots=[tmp_path],
            ignore=("out", "*.log", "*.tmp", "*.toml", "workflows", "triggers"),
        )
    )
    with d:
        write_file(tmp_path / "var" / "planted.dat")
        (tmp_path / "var" / "incoming").mkdir()
        inside = tmp_path / "var" / "incoming" / "scan.dat"
        write_file(inside)
        beside = tmp_path / "beside.dat"
        write_file(beside)
        d.wait_for(
            lambda: {str(beside), str(inside)} <= recorded(d),
            20,
            "the files in a subdirectory and beside",
        )
        # planted.dat was closed before the others: a run of it would be there by now
        assert len(d.runs_db()) == 2
    with d:
        d.wait_for(lambda: len(d.caught_up()) == 2, 20, "the catch-up scan of the restart")
        assert recorded(d) == {str(beside), str(inside)}
        assert len(d.runs_db()) == 2


def test_explain_says_why_a_link_or_a_state_file_does_not_trigger(tmp_path):
    d = Daemon(tmp_path)
    d.write_rules(rules(d, "closed"))
    with d:
        os.symlink(d.root / "var" / "hmac.key", d.incoming / "key.dat")
        (why,) = [
            r["why"] for r in d.ctl_json("test-trigger", str(d.incoming / "key.dat"))["rules"]
        ]
        assert why == "'key.dat' is a symbolic link (follow_symlinks = false)"
        d.write_rules(rules(d, "closed", follow=True))
        d.ctl("reload")
        (why,) = [
            r["why"] for r in d.ctl_json("test-trigger", str(d.incoming / "key.dat"))["rules"]
        ]
        assert "is a symbolic link to" in why and "outside the rule's roots" in why
        d.write_rules(rules(d, "closed", roots=[tmp_path]))
        d.ctl("reload")
        (result,) = d.ctl_json("test-trigger", str(d.root / "var" / "state.sqlite"))["rules"]
        assert result["matches"] is False and "the daemon's own files" in result["why"]


def test_the_default_layout_watches_inside_the_state_directory(tmp_path):
    """As the shipped config and `make run` lay it out: state in var/, files dropped into
    var/incoming/. A file there triggers; a link there to the daemon's key does not."""
    d = Daemon(tmp_path)
    incoming = tmp_path / "var" / "incoming"
    incoming.mkdir(parents=True)
    d.write_rules(rules(d, "closed", roots=[incoming]))
    with d:
        os.symlink(tmp_path / "var" / "hmac.key", incoming / "key.dat")
        dropped = incoming / "scan.dat"
        write_file(dropped)
        d.wait_for(lambda: recorded(d) == {str(dropped)}, 20, "the dropped file's run")
    with d:  # the catch-up scan (catch_up = "all") sees the link too
        d.wait_for(lambda: len(d.caught_up()) == 2, 20, "the catch-up scan of the restart")
        assert recorded(d) == {str(dropped)} and len(d.runs_db()) == 1
