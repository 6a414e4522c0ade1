"""The daemon's protocols with its surroundings: systemd notify and the TCP control API."""

from __future__ import annotations

import signal
import socket
import time

import httpx
from daemon_harness import Daemon
from support import free_port


def _receive_until(sock: socket.socket, wanted: str, timeout: float = 15) -> list[str]:
    """Datagrams received until one contains ``wanted``."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if wanted in message:
            return seen
    raise AssertionError(f"no {wanted!r} among {seen}")


def test_systemd_notify_ready_status_watchdog_reload_and_stopping(tmp_path):
    """Under systemd the daemon sends READY with a STATUS line, WATCHDOG pings, RELOADING,
    STOPPING."""
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    d = Daemon(tmp_path)
    try:
        d.start(env_extra={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        ready = _receive_until(sock, "READY=1")[-1]
        assert "STATUS=1 rules, 0 running, 0 queued" in ready
        _receive_until(sock, "WATCHDOG=1", timeout=3)
        d.proc.send_signal(signal.SIGHUP)
        _receive_until(sock, "RELOADING=1")
        _receive_until(sock, "READY=1")
        d.proc.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1")
        assert d.proc.wait(30) == 0
        d.proc = None
    finally:
        if d.proc is not None:
            d.stop()
        sock.close()


def test_tcp_control_api_requires_the_bearer_token(tmp_path):
    """With daemon.tcp set, the API answers on loopback TCP only to clients sending the token."""
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-for-tests\n")
    # a token others can read is refused (tests/daemon/test_api_boundaries.py)
    token_file.chmod(0o600)
    extra = f'token_file = "{token_file}"\ntcp = "127.0.0.1:{port}"\n'
    with Daemon(tmp_path, extra_config=extra):
        url = f"http://127.0.0.1:{port}/status"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
        answer = httpx.get(url, headers={"authorization": "Bearer s3cret-token-for-tests"})
        assert answer.status_code == 200 and answer.json()["runs"]["queued"] == 0


def test_control_socket_is_not_world_accessible(tmp_path):
    """The unix socket gets daemon.socket_mode (0660): other users cannot control the daemon."""
    with Daemon(tmp_path) as d:
        assert d.socket.stat().st_mode & 0o777 == 0o660


def test_second_daemon_on_the_same_state_directory_refuses_to_start(tmp_path):
    """Two daemons must never share an outbox: the second exits 2 naming the first's pid."""
    import subprocess

    from daemon_harness import BIN

    with Daemon(tmp_path) as first:
        second = subprocess.run(
            [str(BIN / "triggerd"), "run", "--config", str(tmp_path / "triggerd.toml")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert f"another triggerd (pid {first.proc.pid})" in second.stderr
        assert first.ctl_json("status")["pid"] == first.proc.pid  # the first one is unharmed
