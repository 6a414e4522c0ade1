"""The README's first walk-through, typed as a new user types it.

`make run`'s daemon runs in one pseudo-terminal, on the shipped config/triggerd.toml,
triggers/ and workflows/ (copied as a clone has them); the commands of the README's
second shell block run in others, 60, 120 and 250 columns wide, and piped. The
commands are read from the README itself, so the walk-through and this test cannot
drift apart. Then files with hostile names (bytes that are not UTF-8, a newline, ESC,
a bidi override) go through the same commands.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import wait_for
from terminal import Terminal, run_in_terminal

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WIDTHS = (60, 120, 250)
TABLES = ("runs", "status", "rules")  # the commands whose layout depends on the width

HOSTILE = {
    "non-UTF-8": b"caf\xff.h5",
    "newline": b"two\nrun 01M0000000000000000000000  succeeded.txt",
    "ESC": b"esc\x1b[2J\x1b[31mred.txt",
    "bidi": "bidi\u202etxt.exe".encode(),
}


def readme_commands() -> list[str]:
    """The command lines of the walk-through's shell block, comments dropped."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Two commands") : text.index("### triggerctl")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 2, "the README's walk-through has lost its shell blocks"
    return [line.split("  #")[0].strip() for line in blocks[1].splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """What a clone holds that the daemon reads, and `make run`'s var/incoming."""
    root = tmp_path_factory.mktemp("walkthrough")
    for name in ("config", "triggers", "workflows"):
        shutil.copytree(REPO / name, root / name)
    (root / "var" / "incoming").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def daemon_terminal(clone):
    terminal = Terminal([str(BIN / "triggerd"), "run"], columns=120, cwd=clone)
    try:
        terminal.expect("triggerd started", timeout=60)
        yield terminal
    finally:
        terminal.close()


def _argv(command: str, run_id: str | None) -> list[str]:
    words = command.split()
    if words[0].startswith(".venv/bin/"):
        words[0] = str(BIN / words[0].removeprefix(".venv/bin/"))
    return [run_id if w == "RUN" and run_id else w for w in words]


def _piped(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=60)


def _runs(clone: Path) -> list[dict]:
    done = _piped([str(BIN / "triggerctl"), "runs", "--json"], clone)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _wait_for_runs(clone: Path, count: int, timeout: float = 60) -> list[dict]:
    def all_ended() -> list[dict] | None:
        runs = _runs(clone)
        ended = [r for r in runs if r["state"] in ("succeeded", "failed")]
        return runs if len(ended) >= count else None

    return wait_for(all_ended, timeout, f"{count} runs to end", interval=0.2)


def test_the_readme_walkthrough_in_terminals(clone, daemon_terminal):
    commands = readme_commands()
    assert commands[0].startswith("echo hello > var/incoming/"), commands
    subprocess.run(["bash", "-c", commands[0]], cwd=clone, check=True)
    (run,) = _wait_for_runs(clone, 1)
    assert run["state"] == "succeeded", run
    for command in commands[1:]:
        argv = _argv(command, run["run_id"])
        name = argv[1]
        for columns in WIDTHS if name in TABLES else (120,):
            done = run_in_terminal(argv, columns=columns, cwd=clone)
            assert done.returncode == 0 and "Traceback" not in done.output, (
                command,
                columns,
                done.output,
            )
            if name == "runs" and "--json" not in argv:
                lines = done.output.splitlines()
                assert any(run["run_id"] in line and "succeeded" in line for line in lines), (
                    columns,
                    done.output,
                )
            if name in ("logs", "show", "explain"):
                assert "hello.txt" in done.output, (command, done.output)
        piped = _piped(argv, clone)
        assert piped.returncode == 0, (command, piped.stderr)
    # The daemon's terminal: a human log, the run in it.
    daemon_terminal.expect(f"file-info: {clone}/var/incoming/hello.txt")
    # What an operator meets next, on a terminal too.
    ctl = str(BIN / "triggerctl")
    for argv, says in (
        (["events", "--since", "1h", "--limit", "2"], "older events match too"),
        (["runs", "--failed"], "no runs match"),
        (["pause", "--help"], "Stop RULE from firing"),
    ):
        done = run_in_terminal([ctl, *argv], columns=80, cwd=clone)
        assert done.returncode == 0 and says in done.output, (argv, done.output)
    # The README's event-log block, line by line; `events -f` follows until Ctrl-C.
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The event log") :]
    (block,) = re.findall(r"```sh\n(.*?)```", section[: section.index("\n## ", 5)], re.S)
    for line in [
        re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()
    ]:
        argv = [
            str(BIN / "triggerctl"),
            *[run["run_id"] if w == "RUN" else w for w in line.split()[1:]],
        ]
        if argv[1:] == ["events", "-f"]:
            follower = Terminal(argv, columns=120, cwd=clone)
            try:
                follower.expect("triggerd started")
                assert follower.interrupt() == 0, follower.output
            finally:
                follower.close()
            continue
        done = run_in_terminal(argv, columns=120, cwd=clone)
        assert done.returncode == 0 and "Traceback" not in done.output, (line, done.output)
    # From another directory, --config finds the same daemon: the shipped config's relative
    # paths are relative to config/, not to the caller.
    elsewhere = clone / "workflows"
    done = run_in_terminal(
        [ctl, "status", "--config", str(clone / "config" / "triggerd.toml")],
        columns=120,
        cwd=elsewhere,
    )
    assert done.returncode == 0 and "taking triggers" in done.output, done.output


def test_hostile_names_through_every_command(clone, daemon_terminal):
    """A name's odd bytes reach JSON exactly (os.fsencode gives them back) and every text
    output escaped: nothing forges a line, clears the screen or reverses the text."""
    before = len(_runs(clone))
    incoming = clone / "var" / "incoming"
    for raw in HOSTILE.values():
        (incoming / os.fsdecode(raw)).write_bytes(b"x\n")
    runs = _wait_for_runs(clone, before + len(HOSTILE))
    by_name = {
        os.fsencode(r["trigger"][0]["path"]).rsplit(b"/", 1)[1]: r for r in runs if r["trigger"]
    }
    assert set(HOSTILE.values()) <= set(by_name), sorted(by_name)
    assert all(by_name[raw]["state"] == "succeeded" for raw in HOSTILE.values())

    ctl = str(BIN / "triggerctl")
    texts: dict[str, str] = {}
    for columns in WIDTHS:
        done = run_in_terminal([ctl, "runs"], columns=columns, cwd=clone)
        assert done.returncode == 0, done.output
        texts[f"runs at {columns}"] = done.output
    odd = incoming / os.fsdecode(HOSTILE["non-UTF-8"])
    run_id = by_name[HOSTILE["non-UTF-8"]]["run_id"]
    for argv in (
        ["explain", str(odd)],
        ["test-trigger", str(odd)],
        ["show", run_id],
        ["logs", run_id],
        ["events", "--limit", "100"],
    ):
        done = run_in_terminal([ctl, *argv], columns=120, cwd=clone)
        assert done.returncode == 0, (argv, done.output)
        texts[argv[0]] = done.output
        as_json = _piped([ctl, *argv, "--json"], clone)
        assert as_json.returncode == 0, (argv, as_json.stderr)
        found = json.dumps(json.loads(as_json.stdout))  # valid JSON
        if argv[0] in ("explain", "test-trigger"):  # the exact bytes: the odd one as \udcff
            assert os.fsencode(json.loads(as_json.stdout)["path"]).endswith(
                b"/" + HOSTILE["non-UTF-8"]
            )
        else:  # the event log keeps names readable, the odd byte as the text \xff
            assert "caf\\\\xff.h5" in found, (argv, found[:2000])
    for what, text in texts.items():
        for forged in ("\x1b[2J", "\u202e", "\x1b[31mred"):
            assert forged not in text, (what, forged, text)
        assert not any(line.startswith("run 01M0000") for line in text.splitlines()), (what, text)
    assert "caf\\xff.h5" in texts["explain"] and "caf\\xff.h5" in texts["test-trigger"]
    assert "caf\\xff.h5" in texts["logs"]  # what file_info printed of the name
    joined = "".join(texts["runs at 250"].split())  # a path may fold at narrower widths
    assert (
        "bidi\\u202etxt.exe" in joined
        and "esc\\x1b[2J\\x1b[31mred.txt" in joined
        and "two\\nrun" in joined
    )


def test_ctrl_c_stops_the_daemon_cleanly(clone, daemon_terminal):
    """Last: Ctrl-C in the daemon's terminal drains and stops it, exit status 0, and its
    log escaped the hostile names it reported."""
    assert daemon_terminal.interrupt() == 0, daemon_terminal.output[-3000:]
    log = daemon_terminal.output
    assert "caf\\xff.h5" in log and "bidi\\u202etxt.exe" in log


_EVERY_HELP = """
import sys
import click
from triggerd.cli.triggerctl_main import cli as triggerctl
from triggerd.cli.triggerd_main import cli as triggerd

def commands(group, prefix):
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found

shown = 0
for program, group in (("triggerctl", triggerctl), ("triggerd", triggerd)):
    for argv in commands(group, ()):
        try:
            group.main([*argv, "--help"], prog_name=program, standalone_mode=False)
        except Exception as exc:
            print("FAILED:", program, *argv, repr(exc))
        shown += 1
print("commands shown:", shown)
"""


def test_every_command_s_help_on_a_narrow_terminal(tmp_path):
    """`--help` of every command and subcommand of both programs, on a 60-column TTY:
    the code paths only a terminal takes (its width) run for each (in one process:
    the terminal is what matters here, not thirty interpreter starts)."""
    done = run_in_terminal(
        [str(BIN / "python"), "-c", _EVERY_HELP], columns=60, cwd=tmp_path, timeout=120
    )
    assert (
        done.returncode == 0 and "FAILED" not in done.output and "Traceback" not in done.output
    ), done.output
    shown = int(done.output.rsplit("commands shown:", 1)[1].split()[0])
    assert shown >= 25 and done.output.count("Usage:") == shown, done.output[-2000:]
    # laid out for the terminal's width
    assert max(len(line) for line in done.output.splitlines()) <= 60
