"""A real soft IOC (pythonSoftIOC) on loopback for the PV source tests.

Channel Access on these machines stays on 127.0.0.0/8 (../shared/INFRA.md): the
``EPICS_CA*``/``EPICS_PVAS*`` variables below are set in ``os.environ`` when this module is
imported (conftest imports it, so before any test module and before pyepics creates its
CA context, which reads them once), with a free server and repeater port for the session.
The IOC subprocess inherits them and runs ``iocInit(..., enable_pva=False)``: without it
softioc's PV Access server binds every interface.

Records (prefix ``TEST:``): ``ACQ`` (longOut, 0), ``VAL`` (aOut, 0.0; HIHI 100 with
severity INVALID), ``NAME`` (longStringOut: a 256-element CHAR waveform, what
areaDetector's ``FullFileName_RBV`` is), ``CAPTURE`` (boolOut, an enum Done/Capture, as
areaDetector's ``Capture_RBV``). Tests set values with pyepics ``caput``.
``stop()`` kills the IOC; ``start()`` starts it again on the same port with the initial
values. Missing softioc is a failure, never a skip.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import free_port, wait_for

__all__ = ["SoftIoc", "soft_ioc"]


CA_SERVER_PORT = free_port()
CA_REPEATER_PORT = free_port()
# A daemon's status PVs ([status_pvs] port): a second server on loopback needs its own
# port, since a unicast search reaches only one of the sockets sharing a UDP port.
STATUS_PV_PORT = free_port()
LOOPBACK_ENV = {
    "EPICS_CA_ADDR_LIST": f"127.0.0.1 127.0.0.1:{STATUS_PV_PORT}",
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_SERVER_PORT": str(CA_SERVER_PORT),
    "EPICS_CA_REPEATER_PORT": str(CA_REPEATER_PORT),
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
}
if "epics" in sys.modules and getattr(sys.modules["epics"].ca, "libca", None) is not None:
    raise RuntimeError(
        "pyepics started Channel Access before ioc_fixture set the loopback environment"
    )
os.environ.update(LOOPBACK_ENV)

_IOC_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from softioc import asyncio_dispatcher, builder, softioc

    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    builder.SetDeviceName(sys.argv[1])
    builder.longOut("ACQ", initial_value=0)
    builder.aOut("VAL", initial_value=0.0, HIHI=100, HHSV="INVALID")
    builder.longStringOut("NAME", initial_value="", length=256)
    # areaDetector's Capture_RBV
    builder.boolOut("CAPTURE", ZNAM="Done", ONAM="Capture", initial_value=0)
    builder.LoadDatabase()
    softioc.iocInit(dispatcher, enable_pva=False)  # PVA would bind every interface
    print("IOC READY", flush=True)
    threading.Event().wait()
    """
)


class SoftIoc:
    """The IOC subprocess: ``prefix`` (``"TEST:"``), ``pv(name)``, ``stop()``, ``start()``."""

    RECORDS = ("ACQ", "VAL", "NAME", "CAPTURE")

    def __init__(self, workdir: Path, prefix: str = "TEST") -> None:
        # find_spec, not import: softioc loads epicscorelibs' libCom and libca into this
        # process next to pyepics' own copies, and CA callbacks then only arrive at exit.
        if importlib.util.find_spec("softioc") is None:
            pytest.fail(
                "softioc is not installed: the PV tests need a real IOC (pip install -e '.[test]')",
                pytrace=False,
            )
        self.prefix = prefix + ":"
        self.workdir = workdir
        self.script = workdir / "ioc.py"
        self.script.write_text(_IOC_SCRIPT)
        self.log = workdir / "ioc.log"
        self.port = CA_SERVER_PORT
        self.process: subprocess.Popen[bytes] | None = None
        self._prefix = prefix

    def pv(self, name: str) -> str:
        return self.prefix + name

    def start(self, timeout: float = 30.0) -> None:
        """Start the IOC (again, on the same port) and wait until every record answers a caget.

        pyepics shares one CA channel per name in the process, so after a restart this also
        waits for the test process's channels to reconnect (2-8 s, INFRA.md).
        """
        import epics

        assert self.process is None, "IOC already running"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(self.script), self._prefix],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **LOOPBACK_ENV},
                cwd=self.workdir,
            )
        process = self.process

        def serving() -> bool:
            assert process.poll() is None, f"the soft IOC exited with {process.returncode}"
            return all(
                epics.caget(self.pv(record), connection_timeout=0.5, timeout=1.0) is not None
                for record in self.RECORDS
            )

        try:
            wait_for(
                serving,
                timeout,
                "the soft IOC to serve every record",
                detail=lambda: self.log.read_text(errors="replace")[-3000:],
            )
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the IOC (like a crash: no goodbye to the clients)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def soft_ioc(tmp_path_factory):
    """One soft IOC for the session, on loopback (see the module doc)."""
    ioc = SoftIoc(tmp_path_factory.mktemp("ioc"))
    ioc.start()
    yield ioc
    ioc.stop()
