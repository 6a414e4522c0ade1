"""Flower, as the README runs it, against real ``triggerd worker`` processes: it
names each triggerd task by workflow/DAG/task (queued or running) and shows how it ended
as Celery states: SUCCESS, FAILURE (a triggerd task that failed) and REVOKED (stopped)."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_fixture import MAIN_WORKER, CeleryCluster
from support import REPO, free_port, stop_process, wait_for

from triggerd.engine.protocol import TASK_NAME

pytest.importorskip(
    "flower", reason="flower is not installed (pip install -e '.[test]' installs it)"
)

HEADER = "from triggerd.flow import *\nimport time\n"
NOBODY = "flower_nobody"  # a queue no worker consumes: its job stays queued


def readme_commands() -> list[list[str]]:
    """The command lines of the README's Flower paragraph (comments removed)."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme[readme.index("**Flower**") :], re.S).group(1)  # type: ignore[union-attr]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


class Flower:
    """The README's ``celery flower`` command, over the test's own Redis on a free port
    (not persistent), API without auth."""

    def __init__(self, cluster: CeleryCluster, log: Any):
        self.url = f"http://127.0.0.1:{free_port()}"
        celery, *words = readme_commands()[-1]
        assert celery == "celery" and "flower" in words and "--address=127.0.0.1" in words, words
        # for the README's examples
        ours = {"--broker": cluster.redis.url, "--port": self.url.rpartition(":")[2]}
        words = [
            f"{w.split('=')[0]}={ours[w.split('=')[0]]}" if w.split("=")[0] in ours else w
            for w in words
        ]
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), *words, "--persistent=False"],
            env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._app = cluster.app

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def wait_listening(self) -> None:
        """Until Flower receives events: a probe event sent now and then shows in its tasks."""
        probe = f"probe-{uuid.uuid4().hex}"

        def seen() -> bool:
            assert self.process.poll() is None, f"flower exited with {self.process.returncode}"
            with self._app.events.default_dispatcher() as dispatcher:
                dispatcher.send("task-sent", uuid=probe, name="probe")
            try:
                return bool(self.get(f"/api/task/info/{probe}"))
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(seen, 20, "flower to receive events")

    def task(self, name: str) -> dict[str, Any] | None:
        """The one task Flower lists under ``name``, or None."""
        found = [t for t in self.get("/api/tasks").values() if t.get("name") == name]
        assert len(found) <= 1, found
        return found[0] if found else None

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def flower(celery_cluster, tmp_path) -> Iterator[Flower]:
    with (tmp_path / "flower.log").open("wb") as log:
        running = Flower(celery_cluster, log)
        try:
            running.wait_listening()
            yield running
        finally:
            running.stop()
    print((tmp_path / "flower.log").read_text()[-3000:])  # shown if the test failed


def test_the_readme_installs_what_flower_needs():
    """The README's pip line names Celery with its Redis extra: with plain ``redis``,
    Flower died importing Celery's Redis transport (it needs ``packaging`` too)."""
    (pip, install, *packages), _flower = readme_commands()
    assert [pip, install] == ["pip", "install"] and sorted(packages) == ["celery[redis]", "flower"]


def test_flower_names_triggerd_tasks_and_shows_how_they_ended(celery_cluster, flower, collector):
    """Four runs at once: a task that succeeds, one that fails, one stopped while it runs
    and one queued where no worker looks. Flower names each workflow/DAG/task and shows
    SUCCESS, FAILURE (with triggerd's reason), REVOKED, and the queued one as PENDING. A
    job the worker refuses (not sealed with our key) is a FAILURE too."""
    celery_cluster.write_workflow(
        "flower_ok", HEADER + 'd = Dag("d")\nd.define({PythonTask("fine"): None})\n'
    )
    celery_cluster.write_workflow(
        "flower_fail",
        HEADER
        + """
def broken(data, store, signal, context):
    raise ValueError("broken on purpose")
d = Dag("d")
d.define({PythonTask("broken", broken): None})
""",
    )
    celery_cluster.write_workflow(
        "flower_stop",
        HEADER
        + """
def patient(data, store, signal, context):
    while not signal.is_stopped:
        time.sleep(0.02)
    raise StopTask("stopped as asked")
d = Dag("d")
d.define({PythonTask("patient", patient): None})
""",
    )
    celery_cluster.write_workflow(
        "flower_queued",
        HEADER + f'd = Dag("d")\nd.define({{PythonTask("waiting", queue="{NOBODY}"): None}})\n',
    )
    executor = celery_cluster.executor(collector, stop_grace=1.0)
    try:
        runs = {
            name: executor.submit(name)
            for name in ("flower_ok", "flower_fail", "flower_stop", "flower_queued")
        }
        celery_cluster.app.send_task(
            TASK_NAME, args=[{"v": 3, "run_id": "forged"}], queue="task", shadow="forged/d:1/job"
        )
        wait_for(
            lambda: any(e.kind == "task.started" for e in collector.of(runs["flower_stop"].run_id)),
            20,
            "the patient task to start",
        )
        queued = _shown(flower, "flower_queued/d:1/waiting", {"PENDING"})
        executor.stop_run(runs["flower_stop"].run_id)
        results = {
            name: handle.wait(20) for name, handle in runs.items() if name != "flower_queued"
        }
    finally:
        executor.close()
        celery_cluster.redis.client.delete(NOBODY)
    assert [results[name].status for name in ("flower_ok", "flower_fail", "flower_stop")] == [
        "succeeded",
        "failed",
        "stopped",
    ]

    ok = _shown(flower, "flower_ok/d:1/fine", {"SUCCESS"})
    failed = _shown(flower, "flower_fail/d:1/broken", {"FAILURE"})
    stopped = _shown(flower, "flower_stop/d:1/patient", {"REVOKED"})
    assert ok["worker"] == failed["worker"] == stopped["worker"] == MAIN_WORKER
    assert (
        failed["exception"].startswith("TaskFailed(")
        and "ValueError: broken on purpose" in failed["exception"]
    )
    refused = _shown(flower, "forged/d:1/job", {"FAILURE"})
    assert refused["exception"].startswith("TaskFailed('the job was refused and nothing of it ran")
    assert queued["state"] == "PENDING" and queued.get("worker") is None
    # What Flower shows as a task's arguments names the run, not a message full of base64.
    assert ast.literal_eval(ok["args"])["run_id"] == runs["flower_ok"].run_id
    assert "triggerd.execute_task" not in flower.get("/api/task/types")["task-types"]


def _shown(flower: Flower, name: str, states: set[str]) -> dict[str, Any]:
    """The task Flower lists as ``name``, once it is in one of ``states``."""

    def in_state() -> dict[str, Any] | None:
        task = flower.task(name)
        return task if task is not None and task["state"] in states else None

    return wait_for(
        in_state,
        10,
        f"flower to show {name} in one of {states}",
        interval=0.05,
        detail=lambda: f"flower shows {name} as {(flower.task(name) or {}).get('state')}",
    )
