"""Status PVs (``[status_pvs]``, triggerd/daemon/status_pvs.py) through a real daemon and
real clients.

Two Channel Access clients look at them: pyepics (libca, as caget, caput and CSS) shows
the access rights a client is given; caproto's sync client puts whatever it is asked to,
so it shows what the server itself refuses. It asserts the user and host names it finds
(``getpass.getuser()``, ``socket.gethostname()``); a test that plays another client sets
those two. Everything stays on 127.0.0.1 (tests/ioc_fixture.py sets the environment).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import epics
import pytest
from caproto import ErrorResponseReceived
from caproto.sync import client as caproto_client
from daemon_harness import Daemon, write_file
from ioc_fixture import STATUS_PV_PORT

from triggerd.config import StatusPvSettings
from triggerd.daemon.status_pvs import may_write

# A value for each read-only PV that differs from anything the daemon shows in these tests.
SPOOFS = {
    "RUNNING": 0,
    "DRAINING": 1,
    "RUNS_ACTIVE": 7,
    "RUNS_QUEUED": 7,
    "RUNS_FAILED": 7,
    "OUTBOX": 7,
    "LAST_TRIGGER": "spoofed",
    "LAST_RULE": "spoofed",
    "record:FIRED": 99,
}


def config(prefix: str, *lines: str, port: int | None = STATUS_PV_PORT) -> str:
    port_line = [] if port is None else [f"port = {port}"]
    return (
        "\n[status_pvs]\n"
        + "\n".join([f'prefix = "{prefix}"', *port_line, "interval = 0.2", *lines])
        + "\n"
    )


def get(pv: str):
    return epics.caget(pv, connection_timeout=5, timeout=5, use_monitor=False)


def rights(pv: str) -> tuple[bool, bool]:
    """(read, write) access as libca reports it to a client: what caget -a / CSS show."""
    channel = epics.PV(pv, auto_monitor=False, connection_timeout=5)
    try:
        assert channel.wait_for_connection(5), f"{pv} not connected"
        return bool(channel.read_access), bool(channel.write_access)
    finally:
        channel.disconnect()


def raw_put(pv: str, value) -> str | None:
    """Put with caproto's client, which ignores access rights: the CA error's name,
    or None if it worked."""
    try:
        caproto_client.write(pv, value, notify=True, timeout=5, repeater=False)
    except ErrorResponseReceived as exc:
        return exc.args[0].status.name
    return None


@contextlib.contextmanager
def client_as(monkeypatch: pytest.MonkeyPatch, user: str, host: str) -> Iterator[None]:
    """caproto's client asserts ``user`` on ``host`` (a CA client says who it
    is; nothing checks)."""
    with monkeypatch.context() as m:
        m.setenv("LOGNAME", user)  # the first name getpass.getuser() looks at
        m.setattr(socket, "gethostname", lambda: host)
        yield


def events(d: Daemon, kind: str) -> list[dict]:
    return d.ctl_json("events", "--kind", kind, "--limit", "500")


def paused(d: Daemon) -> bool:
    (rule,) = d.ctl_json("rules")
    return rule["paused"]


def test_only_pause_is_writable_other_status_pvs_refuse_puts_and_keep_their_values(tmp_path):
    """Clients get RUNNING, DRAINING, the counters, LAST_* and <rule>:FIRED read-only (libca's
    caput says "Write access denied"); a put sent anyway fails with ECA_PUTFAIL, leaves the
    value and is recorded naming the PV; <rule>:PAUSE stays writable and pauses and resumes
    the rule."""
    prefix = "TDRO:"
    d = Daemon(tmp_path, extra_config=config(prefix))
    with d:
        d.wait_for(lambda: get(prefix + "RUNNING") == 1, 10, "RUNNING = 1")
        write_file(d.incoming / "a.dat")
        d.wait_for(
            lambda: get(prefix + "LAST_RULE") == "record" and get(prefix + "record:FIRED") == 1,
            20,
            "LAST_RULE, FIRED",
        )
        d.wait_for(lambda: get(prefix + "RUNS_ACTIVE") == 0, 20, "the run's end")
        for name, spoof in SPOOFS.items():
            before = get(prefix + name)
            assert rights(prefix + name) == (True, False), name
            with pytest.raises(epics.ca.CASeverityException, match="Write access denied"):
                epics.caput(prefix + name, spoof, wait=True, timeout=5)  # libca refuses on its side
            assert raw_put(prefix + name, spoof) == "ECA_PUTFAIL", name
            # read at once: before any refresh could restore it
            assert get(prefix + name) == before, name
        refused = events(d, "daemon.status_pv_refused")
        assert sorted(e["data"]["pv"] for e in refused) == sorted(prefix + name for name in SPOOFS)
        assert {e["data"]["reason"] for e in refused} == {"read-only"}
        # one warning line a refusal, no caproto traceback
        assert "Invalid write request" not in d.log.read_text()

        assert rights(prefix + "record:PAUSE") == (True, True)
        assert epics.caput(prefix + "record:PAUSE", 1, wait=True, timeout=5) == 1
        assert paused(d) and get(prefix + "record:PAUSE") == 1
        assert raw_put(prefix + "record:PAUSE", 0) is None
        assert not paused(d)
        assert get(prefix + "RUNNING") == 1


def test_writers_limit_pause_to_the_listed_users_and_hosts(tmp_path, monkeypatch):
    """writers = ["beamline@*", "bl13-ws1"]: visitor@bl13-guest sees PAUSE read-only, its put is
    refused and recorded naming it, the rule stays active; visitor on bl13-ws1 (here fully
    qualified) pauses it, beamline on any host resumes it; this test's own user and host are
    not listed, so libca shows it no write access."""
    prefix = "TDW:"
    writers = ["beamline@*", "bl13-ws1"]
    assert not may_write(writers, socket.gethostname(), getpass.getuser()), (
        "this machine is listed: rename the writers"
    )
    d = Daemon(tmp_path, extra_config=config(prefix, f"writers = {json.dumps(writers)}"))
    pause = prefix + "record:PAUSE"
    with d:
        d.wait_for(lambda: get(prefix + "RUNNING") == 1, 10, "RUNNING = 1")
        assert rights(pause) == (True, False)
        with client_as(monkeypatch, "visitor", "bl13-guest"):
            assert raw_put(pause, 1) == "ECA_PUTFAIL"
        assert not paused(d) and get(pause) == 0
        (refused,) = events(d, "daemon.status_pv_refused")
        assert refused["rule"] == "record" and refused["data"]["by"] == "visitor@bl13-guest"
        assert refused["level"] == "warning" and "writers" in refused["message"]

        with client_as(monkeypatch, "visitor", "BL13-WS1.example.org"):
            assert raw_put(pause, 1) is None
        assert paused(d) and get(pause) == 1
        (by,) = [e["data"]["by"] for e in events(d, "rule.paused")]
        assert by == "Channel Access client visitor@BL13-WS1.example.org"
        with client_as(monkeypatch, "beamline", "anywhere"):
            assert raw_put(pause, 0) is None
        assert not paused(d) and get(pause) == 0


def test_writers_syntax():
    """user@host, host, user@* and * as documented; host names without case, a short name also
    matches the FQDN that begins with it (not an IP address); other entries are config errors."""
    writers = ["ops@ws1", "ws2.example.org", "blctl@*", "10"]
    assert may_write(writers, "ws1", "ops") and may_write(writers, "WS1.example.org", "ops")
    assert not may_write(writers, "ws1", "visitor") and not may_write(writers, "ws10", "ops")
    assert may_write(writers, "ws2.EXAMPLE.org", "anyone") and not may_write(
        writers, "ws2", "anyone"
    )
    assert may_write(writers, "anywhere", "blctl") and not may_write(writers, "10.0.0.5", "x")
    assert (
        not may_write(writers, None, None)
        and may_write(["*"], None, None)
        and may_write([], None, None)
    )
    assert may_write(["*@ws3"], "ws3", "anyone")
    for bad in ("@ws1", "ops@", "a b", "a@b@c", ""):
        with pytest.raises(ValueError, match="user@host"):
            StatusPvSettings(prefix="X:", writers=[bad])


def test_a_taken_port_is_an_error_that_names_the_setting(tmp_path):
    """Another server holds the status PV port: the daemon runs on without status PVs and says
    why, naming status_pvs.port, in its event log and triggerctl status (caproto alone would
    move to a random port no client searches)."""
    prefix = "TDP:"
    d = Daemon(tmp_path, extra_config=config(prefix))
    with socket.socket() as other:
        # as a CA server: past the last test's TIME_WAIT
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", STATUS_PV_PORT))
        other.listen()
        with d:
            (failed,) = d.wait_for(
                lambda: events(d, "daemon.status_pvs_failed"), 10, "daemon.status_pvs_failed"
            )
            assert (
                "status_pvs.port" in failed["message"]
                and f"port {STATUS_PV_PORT}" in failed["message"]
            )
            shown = d.ctl_json("status")["status_pvs"]
            assert shown["prefix"] == prefix and "status_pvs.port" in shown["error"]
            assert "not served" in d.ctl("status").stdout
            write_file(d.incoming / "a.dat")
            d.wait_for(lambda: d.markers(), 20, "a run all the same")


CLIENT = """
import json, sys, epics
print(json.dumps({pv: epics.caget(pv, connection_timeout=5, timeout=5) for pv in sys.argv[1:]}))
"""


def test_next_to_an_ioc_a_client_finds_both_with_the_address_triggerctl_status_announces(
    tmp_path, soft_ioc
):
    """Only `prefix` set, an IOC serving on this host's CA server port: the status PVs get a port
    of their own (the default, 5069), the log and triggerctl status name the EPICS_CA_ADDR_LIST
    entry, and a client with the IOC's host plus that entry reads PVs of both."""
    default_port = StatusPvSettings().port
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", default_port))
        except OSError:
            pytest.fail(
                f"127.0.0.1:{default_port} is taken by another program; "
                "this test needs the default port"
            )
    prefix = "TDD:"
    d = Daemon(tmp_path, extra_config=config(prefix, port=None))
    with d:
        shown = d.ctl_json("status")["status_pvs"]
        entry = f"127.0.0.1:{default_port}"
        assert (
            shown["ca_addr_list"] == entry
            and shown["port"] == default_port
            and shown["writers"] == []
        )
        assert f"clients add {entry} to EPICS_CA_ADDR_LIST" in d.ctl("status").stdout
        assert entry in d.log.read_text()  # the start-up log line
        env = {
            **os.environ,
            "EPICS_CA_ADDR_LIST": f"127.0.0.1 {shown['ca_addr_list']}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
        }
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CLIENT,
                soft_ioc.pv("ACQ"),
                prefix + "RUNNING",
                prefix + "record:PAUSE",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        values = json.loads(done.stdout.splitlines()[-1])
        assert values[soft_ioc.pv("ACQ")] is not None, (
            f"the IOC's PV not found ({time.monotonic() - started:.1f} s)"
        )
        assert values[prefix + "RUNNING"] == 1 and values[prefix + "record:PAUSE"] == 0, values
