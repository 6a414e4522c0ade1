"""A real triggerd daemon as a subprocess in a scratch directory, and triggerctl to talk to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from support import stop_process, wait_for

from triggerd.daemon.client import ControlClient
from triggerd.errors import TriggerdError

BIN = Path(sys.executable).parent

RECORD_WORKFLOW = '''
"""Record which file triggered the run (a marker per run id, so a re-run overwrites it)."""
import os
from triggerd.flow import Dag, Option, Parameters, PythonTask

parameters = Parameters([Option("path"), Option("out"), Option("hold", default=0.0, type=float)])


def record(data, store, signal, context):
    import time
    time.sleep(store.get("hold"))
    marker = os.path.join(store.get("out"), context.workflow_id)
    with open(marker, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(store.get("path"))
    print("recorded", store.get("path"))


main = Dag("main")
main.define({PythonTask("record", record): None})
'''


class Daemon:
    """``with Daemon(tmp) as d:`` starts triggerd in ``tmp`` and stops it at the end."""

    def __init__(
        self,
        root: Path,
        *,
        rules: str | None = None,
        extra_config: str = "",
        hold: float = 0.0,
        executor: str = "local",
    ):
        self.root = root
        self.incoming = root / "incoming"
        self.out = root / "out"
        for d in (self.incoming, self.out, root / "workflows", root / "triggers"):
            d.mkdir(parents=True, exist_ok=True)
        (root / "workflows" / "record.py").write_text(RECORD_WORKFLOW)
        self.write_rules(rules or self.default_rules(hold=hold))
        (root / "triggerd.toml").write_text(
            textwrap.dedent(f"""
            [paths]
            state_dir = "{root / 'var'}"
            workflows = ["{root / 'workflows'}"]
            triggers = ["{root / 'triggers'}"]
            [executor]
            kind = "{executor}"
            workers = 2
            stop_grace = 1.0
            [log]
            format = "json"
            level = "info"
            [daemon]
            drain_timeout = 5.0
        """)
            + extra_config
        )
        self.proc: subprocess.Popen | None = None
        self.log = root / "daemon.log"

    def default_rules(
        self,
        *,
        hold: float = 0.0,
        name: str = "record",
        catch_up: str = "missed",
        extra: str = "",
        roots: Sequence[Path] = (),
        glob: str = "**/*",
        ignore: Sequence[str] = ("*.tmp", ".*"),
        files_extra: str = "",
    ) -> str:
        """The rule that runs ``record`` for every file under ``roots`` (default: incoming/).
        ``extra`` goes into the rule's table, ``files_extra`` (lines) into its [rule.files]."""
        as_toml = json.dumps  # a JSON string or list of strings is a TOML one
        return textwrap.dedent(f"""
            [[rule]]
            name = "{name}"
            workflow = "record"
            params = {{ path = "{{path}}", out = "{self.out}", hold = {hold} }}
            {extra}
            [rule.files]
            roots = {as_toml([str(r) for r in roots or [self.incoming]])}
            glob = {as_toml(glob)}
            ignore = {as_toml(list(ignore))}
            catch_up = "{catch_up}"
        """) + textwrap.dedent(files_extra)

    def write_rules(self, text: str, name: str = "rules.toml") -> None:
        (self.root / "triggers" / name).write_text(text)

    @property
    def socket(self) -> Path:
        return self.root / "var" / "triggerd.sock"

    def start(self, timeout: float = 20, env_extra: dict[str, str] | None = None) -> Daemon:
        env = {k: v for k, v in os.environ.items() if k not in ("TRIGGERD_CONFIG", "NOTIFY_SOCKET")}
        env.update(env_extra or {})
        self.proc = subprocess.Popen(
            [str(BIN / "triggerd"), "run", "--config", str(self.root / "triggerd.toml")],
            cwd=self.root,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_for(self._answers, timeout, "the daemon to answer its API", interval=0.05)
        except BaseException:  # no daemon left behind: __exit__ does not run for a failed start
            stop_process(self.proc, sig=signal.SIGKILL)
            self.proc = None
            raise
        return self

    def _answers(self) -> bool:
        """Whether the control API answers /status; fails the test if the daemon exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        if not self.socket.exists():
            return False
        try:  # what `triggerctl status` asks, without starting a process every time
            with ControlClient(self.socket, timeout=5.0) as client:
                client.get("/status")
        except (TriggerdError, httpx.HTTPError):
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        workers = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None
        # the worker processes of a killed daemon die with their pipes (they hold its store)
        wait_for(
            lambda: not any(_alive(pid) for pid in workers),
            10,
            f"the killed daemon's worker processes {workers} to exit",
        )

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.stop()

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
        done = subprocess.run(
            [str(BIN / "triggerctl"), *args, "--config", str(self.root / "triggerd.toml")],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"triggerctl {' '.join(args)} exited {done.returncode}: {done.stderr}"
            )
        return done

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json").stdout)

    def runs_db(self) -> list[dict[str, Any]]:
        """Every run row, straight from the state file (works with the daemon down too)."""
        conn = sqlite3.connect(self.root / "var" / "state.sqlite")
        try:
            rows = conn.execute(
                "SELECT run_id, rule, state, trigger FROM runs ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()
        return [
            {"run_id": r[0], "rule": r[1], "state": r[2], "trigger": json.loads(r[3])} for r in rows
        ]

    def markers(self) -> dict[str, str]:
        """run id -> the path it recorded."""
        return {
            p.name: p.read_bytes().decode("utf-8", "surrogateescape") for p in self.out.iterdir()
        }

    def wait_for(
        self, predicate, timeout: float = 20, what: str = "condition", *, interval: float = 0.05
    ) -> Any:
        """support.wait_for, with the daemon's log tail when it times out."""
        return wait_for(
            predicate,
            timeout,
            what,
            interval=interval,
            detail=lambda: self.log.read_text(errors="replace")[-3000:],
        )

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        """The event log's events of these kinds (or families: "source"), newest first."""
        args = [a for kind in kinds for a in ("--kind", kind)]
        return self.ctl_json("events", *args, "--limit", "500")

    def skipped(self, reason: str, path: Path | str | None = None) -> list[dict[str, Any]]:
        """The trigger.skipped events with ``data.reason`` ``reason`` (of file ``path``)."""
        return [
            e
            for e in self.events("trigger.skipped")
            if e["data"].get("reason") == reason
            and (path is None or e["data"].get("event", {}).get("path") == str(path))
        ]

    def caught_up(self) -> list[dict[str, Any]]:
        """The source.caught_up events (one per finished catch-up scan), oldest first."""
        return list(reversed(self.events("source.caught_up")))


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux: /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def write_file(path: Path, data: bytes = b"x") -> None:
    with open(path, "wb") as fh:
        fh.write(data)
