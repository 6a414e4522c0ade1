"""The console's buttons and who may press them: pause and resume, stop and replay as
plain forms, through ``triggerctl ui`` (a real subprocess proxying to the daemon's socket)
and on TCP with the operator's and the viewer's tokens.

One daemon (socket and TCP) and one ``triggerctl ui`` serve the tests of this module; the
streaming test and the token-file checks start their own.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import select
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_harness import BIN, Daemon, write_file
from support import free_port, stop_process

OPERATOR_TOKEN = "operator-token-for-console-tests"
VIEWER_TOKEN = "viewer-token-for-console-tests"
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
ME = f"{getpass.getuser()}@{socket.gethostname()}"


def start_ui(config: Path, port: int, stderr: Path) -> tuple[subprocess.Popen, str]:
    """``triggerctl ui`` serving the daemon of ``config``; it and the URL it printed."""
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERD_CONFIG"}
    proc = subprocess.Popen(
        [str(BIN / "triggerctl"), "ui", "--port", str(port), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=stderr.open("wb"),
        text=True,
        env=env,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("console at "):
        stop_process(proc, sig=signal.SIGKILL)
        raise AssertionError(f"triggerctl ui said {line!r}: {stderr.read_text()}")
    return proc, line.split()[2]


class Site:
    """The daemon, a browser on ``triggerctl ui`` and clients on its socket and TCP."""

    def __init__(self, daemon: Daemon, ui_url: str, tcp_port: int):
        self.daemon = daemon
        self.ui_origin = ui_url.removesuffix("/ui/")
        self.tcp_origin = f"http://127.0.0.1:{tcp_port}"
        self.browser = httpx.Client(base_url=self.ui_origin, timeout=30)
        self.socket = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://triggerd"
        )

    def tcp(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.tcp_origin, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    def paused(self) -> bool:
        return next(r["paused"] for r in self.socket.get("/rules").json() if r["name"] == "record")

    def pauses(self) -> list[str]:
        """Who paused the rule (``data.by`` of its rule.paused events), the newest first."""
        answer = self.socket.get("/events", params={"kind": "rule.paused", "newest": "true"})
        return [e["data"]["by"] for e in answer.json()]

    def next_pause_by(self, seen: int) -> str:
        """Who paused the rule, once the event log has more than ``seen`` pauses."""

        def newest() -> str | None:
            pauses = self.pauses()
            return pauses[0] if len(pauses) > seen else None

        return self.daemon.wait_for(newest, what="a new rule.paused event")

    def press(self, client: httpx.Client, url: str, origin: str, **headers: str) -> httpx.Response:
        """Press the button that POSTs to ``url`` on the page ``client`` reads first."""
        page = client.get(_page_of(url)).text
        token = FORM_TOKEN.search(page)
        assert token is not None, f"no form on {_page_of(url)}"
        return client.post(
            url, data={"form_token": token[1]}, headers={"origin": origin, **headers}
        )


def _page_of(action: str) -> str:
    """The page a button's URL is on: a rule's on the overview, a run's on its page."""
    return "/ui/" if action.startswith("/ui/rules/") else action.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("actions")
    tokens = {}
    for name, token in (("operator", OPERATOR_TOKEN), ("viewer", VIEWER_TOKEN)):
        tokens[name] = root / f"{name}.token"
        tokens[name].write_text(token + "\n")
        tokens[name].chmod(0o600)
    tcp_port = free_port()
    extra = (
        f'token_file = "{tokens["operator"]}"\nviewer_token_file = "{tokens["viewer"]}"\n'
        f'tcp = "127.0.0.1:{tcp_port}"\n'
    )
    with Daemon(root, extra_config=extra) as daemon:
        proc, url = start_ui(root / "triggerd.toml", free_port(), root / "ui.stderr")
        s = Site(daemon, url, tcp_port)
        try:
            yield s
        finally:
            s.browser.close()
            s.socket.close()
            stop_process(proc, sig=signal.SIGINT)


def test_pause_through_triggerctl_ui_names_who_did_it(site):
    """The overview's pause button pauses the rule; the event log names the user running
    ``triggerctl ui``, not who the browser claims to be; the page says what was done, once."""
    seen = len(site.pauses())
    done = site.press(
        site.browser,
        "/ui/rules/record/pause",
        site.ui_origin,
        **{"x-triggerd-user": "mallory@elsewhere"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/"
    assert site.paused()
    assert site.next_pause_by(seen) == f"{ME} (console)"
    page = site.browser.get("/ui/").text
    assert "rule record paused" in page and 'class="said alert ok"' in page
    assert "⏸</span> paused" in page and 'action="/ui/rules/record/resume"' in page
    assert "rule record paused" not in site.browser.get("/ui/").text  # said once

    # resume, from a browser that sends Referer but no Origin
    token = FORM_TOKEN.search(page)[1]
    done = site.browser.post(
        "/ui/rules/record/resume",
        data={"form_token": token},
        headers={"referer": f"{site.ui_origin}/ui/"},
    )
    assert done.status_code == 303 and not site.paused()


@pytest.mark.parametrize(
    ("form", "headers", "problem"),
    [
        ({}, "own", "no valid form token"),
        ({"form_token": "guessed"}, "own", "no valid form token"),
        # the daemon refuses these before the form is read (as for its JSON API)
        ("valid", {"origin": "http://evil.example"}, "a page of another site"),
        ("valid", {"origin": "null"}, "a page of another site"),
        ("valid", {"referer": "http://evil.example/page"}, "not sent from this console"),
        ("valid", {}, "not sent from this console"),  # neither Origin nor Referer
    ],
    ids=["no-token", "wrong-token", "foreign-origin", "null-origin", "foreign-referer", "none"],
)
def test_a_post_not_from_the_console_is_refused_and_changes_nothing(site, form, headers, problem):
    token = FORM_TOKEN.search(site.browser.get("/ui/").text)[1]
    data = {"form_token": token} if form == "valid" else form
    sent = {"origin": site.ui_origin} if headers == "own" else headers
    refused = site.browser.post("/ui/rules/record/pause", data=data, headers=sent)
    assert refused.status_code == 403 and problem in refused.text
    assert not site.paused()


def test_other_sites_and_names_cannot_reach_the_daemon_through_a_browser(site):
    """A page of another site cannot use the JSON API through the browser either, and a
    name pointed at 127.0.0.1 (DNS rebinding) is refused by the proxy and by the daemon."""
    refused = site.browser.post("/rules/record/pause", headers={"origin": "http://evil.example"})
    assert refused.status_code == 403 and "another site" in refused.json()["error"]
    port = site.ui_origin.rsplit(":", 1)[1]
    rebound = site.browser.get("/ui/", headers={"host": f"evil.example:{port}"})
    assert rebound.status_code == 403 and "is not this console" in rebound.text
    # straight to the socket, as through `ssh -L 8080:SOCKET`
    rebound = site.socket.get("/ui/", headers={"host": "evil.example:8080"})
    assert rebound.status_code == 403 and "not a local name" in rebound.json()["error"]
    assert site.socket.get("/status", headers={"host": "x"}).status_code == 200  # not a browser
    assert not site.paused()


def test_on_tcp_the_viewer_reads_and_only_the_operator_acts(site):
    with site.tcp(VIEWER_TOKEN) as viewer, site.tcp(OPERATOR_TOKEN) as operator:
        page = viewer.get("/ui/")
        assert page.status_code == 200 and "record" in page.text
        assert "form_token" not in page.text and "read-only console" in page.text
        assert viewer.get("/status").status_code == 200
        token = FORM_TOKEN.search(operator.get("/ui/").text)[1]  # even with the form's token
        for url, data in (
            ("/ui/rules/record/pause", {"form_token": token}),
            ("/rules/record/pause", None),
        ):
            refused = viewer.post(url, data=data, headers={"origin": site.tcp_origin})
            assert refused.status_code == 403, url
            assert refused.json()["error"] == (
                "the viewer token may not pause/stop/replay/start: use the operator token"
            )
        assert not site.paused()

        assert "operator console" in operator.get("/ui/").text
        # on TCP the header naming a user is not believed
        seen = len(site.pauses())
        done = site.press(
            operator,
            "/ui/rules/record/pause",
            site.tcp_origin,
            **{"x-triggerd-user": "mallory@elsewhere"},
        )
        assert done.status_code == 303 and site.paused()
        assert site.next_pause_by(seen) == "an operator over TCP (console)"
        assert site.press(operator, "/ui/rules/record/resume", site.tcp_origin).status_code == 303
        assert not site.paused()


def test_stop_and_replay_from_a_run_page(site):
    daemon = site.daemon
    held = site.socket.post(
        "/runs",
        json={"workflow": "record", "params": {"path": "held", "out": str(daemon.out), "hold": 60}},
    ).json()["run_id"]
    daemon.wait_for(lambda: site.socket.get(f"/runs/{held}").json()["state"] == "running")
    done = site.press(site.browser, f"/ui/runs/{held}/stop", site.ui_origin)
    assert done.status_code == 303 and done.headers["location"] == f"/ui/runs/{held}"
    page = site.browser.get(done.headers["location"]).text
    assert f"run {held} stopp" in page  # stopped, or stopping
    daemon.wait_for(lambda: site.socket.get(f"/runs/{held}").json()["state"] == "stopped")
    assert f'action="/ui/runs/{held}/stop"' not in site.browser.get(f"/ui/runs/{held}").text

    write_file(daemon.incoming / "again.h5")
    original = daemon.wait_for(
        lambda: [r["run_id"] for r in daemon.runs_db() if r["state"] == "succeeded"],
        what="the dropped file's run to succeed",
    )[0]
    done = site.press(site.browser, f"/ui/runs/{original}/replay", site.ui_origin)
    assert done.status_code == 303
    replay = done.headers["location"].removeprefix("/ui/runs/")
    assert replay != original and site.socket.get(f"/runs/{replay}").json()["replay_of"] == original
    assert f"this run replays run {original}" in site.browser.get(done.headers["location"]).text

    # a run that has ended cannot be stopped: said on its page, nothing else happens
    token = FORM_TOKEN.search(site.browser.get(f"/ui/runs/{original}").text)[1]
    done = site.browser.post(
        f"/ui/runs/{original}/stop", data={"form_token": token}, headers={"origin": site.ui_origin}
    )
    assert done.status_code == 303
    page = site.browser.get(done.headers["location"]).text
    assert 'class="said alert bad"' in page and "already ended (succeeded)" in page


def test_triggerctl_ui_answers_a_long_poll_when_the_event_comes(site):
    """``/events?wait=`` through the proxy returns as soon as the event is there, not
    after the wait."""
    newest = site.socket.get("/events", params={"newest": "true", "limit": 1}).json()
    after = newest[0]["id"]
    answer: dict[str, Any] = {}

    def poll() -> None:
        began = time.monotonic()
        query = {"after": after, "wait": 20, "kind": "rule.paused"}
        found = site.browser.get("/events", params=query).json()
        answer.update(found=found, took=time.monotonic() - began)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    site.socket.post("/rules/record/pause")
    site.socket.post("/rules/record/resume")
    poller.join(25)
    assert answer["found"] and answer["found"][0]["kind"] == "rule.paused"
    assert answer["took"] < 5


class _SlowStream(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stand-in for the daemon on a unix socket: ``/status`` answers at once, any other
    path sends one chunk, then the second only when ``release`` is set."""

    daemon_threads = True

    def __init__(self, path: Path):
        self.release = threading.Event()
        super().__init__(str(path), _SlowHandler)


class _SlowHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.rfile.read(1)
        if head.startswith(b"GET /status "):
            body = json.dumps({"ok": True}).encode()
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
            return
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        self.wfile.write(b"d\r\ndata: first\n\n\r\n")
        self.wfile.flush()
        self.server.release.wait(20)
        self.wfile.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")


def test_triggerctl_ui_relays_a_stream_chunk_by_chunk_and_ends_quietly(tmp_path):
    """The first chunk of a stream reaches the browser while the daemon still holds the
    second; ``--port 0`` takes a free port and prints its URL; Ctrl-C ends it with 0."""
    fake = tmp_path / "fake.sock"
    (tmp_path / "triggerd.toml").write_text(f'[daemon]\nsocket = "{fake}"\n')
    server = _SlowStream(fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc, url = start_ui(tmp_path / "triggerd.toml", 0, tmp_path / "ui.stderr")
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/", url) and not url.endswith(":0/ui/")
        with httpx.stream("GET", url.replace("/ui/", "/ui/live"), timeout=10) as answer:
            chunks = answer.iter_raw()
            assert next(chunks) == b"data: first\n\n"  # the second is not sent yet
            server.release.set()
            assert b"".join(chunks) == b"data: second\n\n"
    finally:
        server.release.set()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(10)
        server.shutdown()
        server.server_close()
    assert code == 0
    assert (tmp_path / "ui.stderr").read_text() == ""


def test_a_bad_viewer_token_file_is_reported_by_check_and_refused_by_run(tmp_path):
    operator, viewer = tmp_path / "operator.token", tmp_path / "viewer.token"
    operator.write_text(OPERATOR_TOKEN)
    viewer.write_text(VIEWER_TOKEN)
    operator.chmod(0o600)
    viewer.chmod(0o640)
    extra = (
        f'token_file = "{operator}"\nviewer_token_file = "{viewer}"\n'
        f'tcp = "127.0.0.1:{free_port()}"\n'
    )
    d = Daemon(tmp_path, extra_config=extra)

    def check() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "triggerd"), "check", "--config", str(tmp_path / "triggerd.toml")],
            capture_output=True,
            text=True,
            timeout=60,
        )

    checked = check()
    assert checked.returncode == 1 and "key 'daemon.viewer_token_file'" in checked.stdout
    assert "the viewer token file is accessible to group or others (mode 0640)" in checked.stdout
    viewer.chmod(0o600)
    viewer.write_text(OPERATOR_TOKEN + "\n")
    checked = check()
    assert checked.returncode == 1 and "the viewer token is the operator token" in checked.stdout
    with pytest.raises(AssertionError, match="the viewer token is the operator token"):
        d.start(timeout=10)
