"""The control API and the daemon's files against a hostile local user (issue 12, part 4),
on the real daemon: request sizes and timeouts, query bounds, the socket path, secret
files, the state directory's modes, credentials in URLs, and reload validating as
`triggerd check` does."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import textwrap
import time

import pytest
from daemon_harness import BIN, Daemon
from support import free_port, rss_kib

pytestmark = pytest.mark.timeout(120)


def _connect(d: Daemon) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(30)
    conn.connect(str(d.socket))
    return conn


def _answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 30 s pass)."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _status_line(raw: bytes) -> str:
    return raw.split(b"\r\n", 1)[0].decode()


def test_request_bodies_and_heads_are_bounded(tmp_path):
    """A 100 MB body announced is a 413 before a byte of it is read; one streamed without
    a length is cut off soon after it passes 1 MiB (the daemon's RSS grows < 20 MB); a
    head sent half-way and a body that stalls are cut off after their timeouts; the API
    answers others meanwhile."""
    with Daemon(tmp_path) as d:
        assert d.proc is not None
        rss = rss_kib(d.proc.pid)
        with _connect(d) as conn:  # announced: refused before a byte of the body is read
            conn.sendall(
                b"POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 100000000\r\n\r\n{"
            )
            assert _status_line(_answer(conn)) == "HTTP/1.1 413 Request Entity Too Large"
        # chunked, no length: counted as it arrives, cut off past the limit
        with _connect(d) as conn:
            conn.sendall(
                b"POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            chunk = b"x" * 65536
            sent = 0
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                while sent < 100 << 20:
                    conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    sent += len(chunk)
            assert sent < 20 << 20, f"the daemon read {sent} bytes of a body"
        assert rss_kib(d.proc.pid) - rss < 20_000
        half_head, stalled = _connect(d), _connect(d)
        half_head.sendall(b"GET /status HTTP/1.1\r\nhost: x\r\n")  # and never the blank line
        stalled.sendall(
            b"POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 100\r\n\r\n{"wo'
        )
        started = time.monotonic()
        assert d.ctl("status").returncode == 0  # others are served meanwhile
        assert _answer(half_head) == b""  # closed without an answer
        assert _status_line(_answer(stalled)).startswith("HTTP/1.1 408")
        assert 8.0 < time.monotonic() - started < 25.0
        half_head.close()
        stalled.close()


QUERIES = [
    "/runs?limit=1e23",
    "/runs?limit=100000000000000000000000",
    "/runs?limit=0",
    "/runs?since=nan",
    "/events?limit=-1",
    "/events?wait=1e9",
    "/eventlog/runs?limit=999999999",
]


def test_query_values_out_of_range_are_a_400(tmp_path):
    with Daemon(tmp_path) as d:
        for query in QUERIES:
            with _connect(d) as conn:
                conn.sendall(
                    f"GET {query} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
                )
                raw = _answer(conn)
            assert _status_line(raw) == "HTTP/1.1 400 Bad Request", (query, raw[:500])
            assert b"bad request" in raw


def test_a_socket_path_that_is_a_regular_file_is_refused_not_deleted(tmp_path):
    d = Daemon(tmp_path)
    (tmp_path / "var").mkdir()
    precious = tmp_path / "var" / "triggerd.sock"
    precious.write_text("not a socket")
    with pytest.raises(AssertionError, match="exists and is not a socket: refusing to replace it"):
        d.start(timeout=10)
    assert precious.read_text() == "not a socket"


def test_a_stale_socket_is_replaced(tmp_path):
    d = Daemon(tmp_path)
    (tmp_path / "var").mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "var" / "triggerd.sock"))
    stale.close()  # bound, nobody listening: what a killed daemon leaves
    with d:
        assert d.ctl("status").returncode == 0


def _edit_config(d: Daemon, old: str, new: str) -> None:
    config = d.root / "triggerd.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


def _check(d: Daemon) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "triggerd"), "check", "--config", str(d.root / "triggerd.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=d.root,
    )


@pytest.mark.parametrize(
    ("token", "mode", "problem"),
    [
        (None, 0o600, "the API token file does not exist"),
        ("", 0o600, "the API token file is empty"),
        (
            "t0ken-t0ken",
            0o644,
            "accessible to group or others (mode 0644): make it private with: chmod 600",
        ),
    ],
    ids=["missing", "empty", "group-readable"],
)
def test_a_bad_token_file_is_reported_by_check_and_refused_by_run(tmp_path, token, mode, problem):
    token_file = tmp_path / "api.token"
    d = Daemon(tmp_path)
    _edit_config(
        d, "[daemon]\n", f'[daemon]\ntcp = "127.0.0.1:{free_port()}"\ntoken_file = "{token_file}"\n'
    )
    if token is not None:
        token_file.write_text(token)
        os.chmod(token_file, mode)
    checked = _check(d)
    assert checked.returncode == 1
    assert "key 'daemon.token_file'" in checked.stdout and problem in checked.stdout
    with pytest.raises(AssertionError, match=problem.split("(")[0].strip()):
        d.start(timeout=10)


def test_check_reports_a_short_inline_key_and_a_group_readable_key_file(tmp_path):
    d = Daemon(tmp_path, extra_config='[security]\nhmac_key = "short"\n')
    checked = _check(d)
    assert (
        checked.returncode == 1
        and "key 'security.hmac_key': the HMAC key must be at least 16 bytes long" in checked.stdout
    )
    key_file = tmp_path / "shared.key"
    key_file.write_text("k" * 32)
    os.chmod(key_file, 0o640)
    (tmp_path / "triggerd.toml").write_text(
        (tmp_path / "triggerd.toml")
        .read_text()
        .replace('hmac_key = "short"', f'hmac_key_file = "{key_file}"')
    )
    checked = _check(d)
    assert (
        checked.returncode == 1 and "HMAC key: " in checked.stdout and "chmod 600" in checked.stdout
    )
    with pytest.raises(AssertionError, match="accessible to group or others"):
        d.start(timeout=10)


def test_the_state_directory_and_its_files_are_private_whatever_the_umask(tmp_path):
    """Run by hand with umask 022: the state directory triggerd creates is 0700 and every
    file in it 0600 (the socket keeps its own mode, 0660)."""
    d = Daemon(tmp_path)
    old = os.umask(0o022)
    try:
        with d:
            write = d.incoming / "a.dat"
            write.write_bytes(b"x")
            d.wait_for(lambda: len(d.markers()) == 1, 20, "a run")
            state = tmp_path / "var"
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if not p.is_dir()
            }
            assert modes.pop("triggerd.sock") == 0o660
            assert {"state.sqlite", "journal.sqlite", "hmac.key", "triggerd.lock"} <= set(modes)
            assert set(modes.values()) == {0o600}, modes
    finally:
        os.umask(old)


def test_a_configured_state_dir_mode_is_used(tmp_path):
    d = Daemon(tmp_path)
    _edit_config(d, "[paths]\n", '[paths]\nstate_dir_mode = "0750"\n')
    with d:
        assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o750


def test_credentials_in_broker_urls_are_masked_and_a_query_password_is_a_clear_error(tmp_path):
    """config show masks user:password@ and ?password=; a query password (which Celery's
    Redis transport crashes on) is refused by key, with the form that works."""
    config = tmp_path / "triggerd.toml"
    config.write_text(
        textwrap.dedent("""
        [executor]
        kind = "celery"
        [celery]
        broker_url = "redis://beam:s3cret@127.0.0.1:6399/0"
        result_backend = "redis://127.0.0.1:6399/1?token=t0p&db=1"
    """)
    )
    shown = subprocess.run(
        [str(BIN / "triggerd"), "config", "show", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert "s3cret" not in shown.stdout and "t0p" not in shown.stdout
    assert "redis://beam:***@127.0.0.1:6399/0" in shown.stdout and "token=***&db=1" in shown.stdout
    config.write_text(
        config.read_text().replace(
            "beam:s3cret@127.0.0.1:6399/0", "127.0.0.1:6399/0?password=s3cret"
        )
    )
    for command in (["triggerd", "run"], ["triggerd", "worker"], ["triggerd", "check"]):
        done = subprocess.run(
            [str(BIN / command[0]), *command[1:], "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert done.returncode != 0
        assert (
            "key 'celery.broker_url'" in done.stderr
            and "redis://:PASSWORD@host:6379/0" in done.stderr
        )
        assert "s3cret" not in done.stderr and "Traceback" not in done.stderr


BROKEN = "from triggerd.flow import *\nraise RuntimeError('broken at import')\n"


def test_reload_refuses_what_check_refuses(tmp_path):
    """A rule naming a workflow that raises at import: `triggerd check` reports it, and a
    reload is refused, keeping the running rules."""
    with Daemon(tmp_path) as d:
        (tmp_path / "workflows" / "broken.py").write_text(BROKEN)
        d.write_rules(
            d.default_rules(name="record")
            + textwrap.dedent(f"""
            [[rule]]
            name = "broken"
            workflow = "broken"
            [rule.files]
            roots = ["{tmp_path / 'other'}"]
        """)
        )
        checked = _check(d)
        assert (
            checked.returncode == 1
            and "workflow broken: " in checked.stdout
            and "broken at import" in checked.stdout
        )
        done = d.ctl("reload", check=False)
        assert done.returncode != 0 and "broken at import" in done.stderr
        assert [r["name"] for r in d.ctl_json("rules")] == ["record"]
        as_json = d.ctl("reload", "--json", check=False)  # a script sees the refusal too
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["ok"] is False
        status = d.ctl("status").stdout  # and so does whoever looks later
        assert (
            "the last reload" in status and "was refused" in status and "broken at import" in status
        )
        assert d.ctl_json("status")["last_reload"]["ok"] is False
