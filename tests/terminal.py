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

__all__ = ["Terminal", "TerminalResult", "run_in_terminal"]


@dataclass
class TerminalResult:
    returncode: int
    output: str  # stdout and stderr as the terminal showed them (CR LF turned into LF)


def run_in_terminal(
    argv: list[str],
    *,
    columns: int,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> TerminalResult:
    """Run ``argv`` to its end with stdin, stdout and stderr on a new pty ``columns`` wide."""
    terminal = Terminal(argv, columns=columns, cwd=cwd, env=env)
    try:
        returncode = terminal.finish(timeout)
    finally:
        terminal.close()
    return TerminalResult(returncode, terminal.output)


class Terminal:
    """A long-running command on a pseudo-terminal of its own, as in a person's terminal
    window: it is the terminal's foreground process, so Ctrl-C (``interrupt``) reaches
    it as SIGINT through the terminal, and what it prints can be waited for."""

    def __init__(
        self, argv: list[str], *, columns: int, cwd: Path, env: dict[str, str] | None = None
    ):
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        environ = dict(env if env is not None else os.environ)
        environ.pop("COLUMNS", None)  # the width comes from the terminal, as for a person
        environ.pop("LINES", None)
        environ["TERM"] = "xterm-256color"
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=environ,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                # the terminal becomes its controlling one
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
        finally:
            os.close(slave)
        self._seen = bytearray()

    @property
    def output(self) -> str:
        return self._seen.decode("utf-8", "replace").replace("\r\n", "\n")

    def _read(self, timeout: float) -> bool:
        """Take what was printed within ``timeout``; False once the terminal is closed."""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError as exc:  # EIO: the command has exited and closed the terminal
            if exc.errno != errno.EIO:
                raise
            return False
        self._seen += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30) -> None:
        """Wait until ``text`` has been printed (since the start)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{text!r} not printed within {timeout} s; the terminal shows:\n"
                    f"{self.output[-3000:]}"
                )
            if not self._read(0.1) and self.process.poll() is not None:
                raise AssertionError(
                    f"exited ({self.process.returncode}) before printing {text!r}:\n"
                    f"{self.output[-3000:]}"
                )

    def finish(self, timeout: float) -> int:
        """Take what it prints until every writer has closed the terminal; its exit status."""
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(
                    f"{self.process.args} did not finish in {timeout} s: {self.output[-2000:]!r}"
                )
        return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as typed; returns the exit status once the command has ended."""
        os.write(self._master, b"\x03")
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        if self.process.poll() is None:
            raise AssertionError(f"still running {timeout} s after Ctrl-C:\n{self.output[-3000:]}")
        while select.select([self._master], [], [], 0.2)[0] and self._read(0):  # its last words
            pass
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)
