"""Run a command as a person at a terminal does: its output is a pseudo-terminal of a given
width, so the code paths taken only on a TTY (terminal size, colours) run too."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TerminalResult", "run_in_terminal"]


@dataclass
class TerminalResult:
    returncode: int
    output: str  # stdout and stderr as the terminal showed them (CR LF turned into LF)


def run_in_terminal(argv: list[str], *, columns: int, cwd: Path, env: dict[str, str] | None = None,
                    timeout: float = 60) -> TerminalResult:
    """Run ``argv`` with stdin, stdout and stderr on a new pty ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = dict(env if env is not None else os.environ)
    environ.pop("COLUMNS", None)  # the width comes from the terminal, as for a person
    environ.pop("LINES", None)
    environ["TERM"] = "xterm-256color"
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=environ, stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{argv} did not finish in {timeout} s: {b''.join(chunks)[-2000:]!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer has closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return TerminalResult(returncode, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n"))
