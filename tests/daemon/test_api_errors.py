"""Each refusal of the control API has its status code and says what to do: the daemon
raises typed errors (RunNotFound, RuleNotFound, RunEnded, ...) mapped in one place."""

from __future__ import annotations

import json
import socket

import pytest
from daemon_harness import Daemon, write_file

pytestmark = pytest.mark.timeout(120)


def _request(d: Daemon, method: str, path: str, body: object = None) -> tuple[int, dict]:
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(d.socket))
        conn.sendall(head.encode() + payload)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1])
    return status, json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"{}")


def test_each_refusal_has_its_status_code_and_message(tmp_path):
    with Daemon(tmp_path) as d:
        write_file(d.incoming / "a.dat")
        ended = d.wait_for(
            lambda: [r for r in d.ctl_json("runs") if r["state"] == "succeeded"], what="a run"
        )[0]["run_id"]

        assert _request(d, "POST", "/runs/nope/stop") == (
            404,
            {"error": "no run nope (see: triggerctl runs)"},
        )
        assert _request(d, "POST", "/runs/nope/replay")[0] == 404
        assert _request(d, "GET", "/runs/nope")[0] == 404
        assert _request(d, "POST", "/rules/nope/pause") == (
            404,
            {"error": "no rule 'nope' (see: triggerctl rules)"},
        )
        assert _request(d, "POST", "/rules/record/frobnicate")[0] == 404
        assert _request(d, "POST", f"/runs/{ended}/stop") == (
            409,
            {"error": f"run {ended} already ended (succeeded)"},
        )
        status, answer = _request(d, "POST", "/runs", {"workflow": "nope"})
        assert status == 400 and "nope" in answer["error"]
        status, answer = _request(d, "GET", "/events?since=yesterday")
        assert status == 400 and "not 'yesterday'" in answer["detail"]

        assert _request(d, "POST", "/rules/record/pause") == (
            200,
            {"rule": "record", "paused": True},
        )
        assert _request(d, "POST", f"/runs/{ended}/replay")[0] == 200

        stopped = d.ctl("stop", "nope", check=False)
        assert stopped.returncode != 0 and "no run nope" in stopped.stderr
