"""A real MongoDB-wire server (SecantusDB, WiredTiger) for the tests that ask for it.

Started once per session on a free port of 127.0.0.1 with its data in a temporary
directory; ``stop()`` and ``start()`` (same port, same data) let a test take it away and
bring it back. Writes are synced on commit, so a killed server keeps what it confirmed.
A missing server binary is a failure, never a skip: CI must not pass without the real part.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import PyMongoError
from support import free_port, stop_process, wait_for

__all__ = ["MongoServer", "mongo_server"]

BINARY = "secantusd-py"


class MongoServer:
    """``secantusd-py`` as a subprocess; ``url`` reaches it (directConnection: it presents
    itself as a one-node replica set)."""

    def __init__(self, workdir: Path):
        beside_python = Path(sys.executable).parent / BINARY
        binary = str(beside_python) if beside_python.exists() else shutil.which(BINARY)
        if binary is None:
            pytest.fail(
                f"{BINARY} is not installed: the MongoDB tests need a real MongoDB-wire server "
                "(pip install -e '.[test]' installs secantusdb)",
                pytrace=False,
            )
        self.binary = binary
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.data = workdir / "data"
        self.log = workdir / "secantus.log"
        # An empty config file of our own: the server otherwise reads ./secantusd.toml,
        # ~/.secantus/secantusd.toml or /etc/secantus/secantusd.toml when it finds one.
        self.config = workdir / "secantusd.toml"
        self.config.write_text("")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        """Start (again, on the same port and data) and wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--config",
                    str(self.config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--storage-path",
                    str(self.data),
                    "--sync-on-commit",
                    "--log-level",
                    "WARNING",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data.parent,
            )
        self.wait_ready(timeout)

    def answers(self) -> bool:
        """Whether a ping gets a reply now."""
        client: pymongo.MongoClient = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=200)
        try:
            return bool(client.admin.command("ping").get("ok"))
        except PyMongoError:
            return False
        finally:
            client.close()

    def wait_ready(self, timeout: float = 20) -> None:
        def answered() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"{BINARY} exited with {self.process.returncode}:\n{self._log_tail()}")
            return self.answers()

        wait_for(
            answered, timeout, f"{BINARY} to answer on port {self.port}", detail=self._log_tail
        )

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self, *, kill: bool = False) -> None:
        """Shut down (SIGTERM, ~3 s), or ``kill=True``: SIGKILL at once, as a crash."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, sig=signal.SIGKILL if kill else signal.SIGTERM, timeout=15)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    server = MongoServer(tmp_path_factory.mktemp("mongodb"))
    server.start()
    yield server
    server.stop()
