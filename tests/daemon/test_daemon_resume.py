"""A daemon killed (kill -9) mid-run with the local executor: the run resumes at the next
start. Tasks that ended are not run again; the one that was running (its worker process
went with the daemon) runs again if it is idempotent, and fails the run, saying why, if
it is not."""

from __future__ import annotations

import json
import textwrap

import pytest
from daemon_harness import Daemon, write_file

CHAIN = '''
"""a -> b (slow) -> c; each task appends its name to the ledger when it starts."""
import json, os, time
from triggerd.flow import Dag, Option, Parameters, PythonTask

parameters = Parameters([Option("path"), Option("ledger")])


def step(data, store, signal, context):
    with open(store.get("ledger"), "a") as fh:
        fh.write(json.dumps({{"run": context.workflow_id, "task": context.task_name}}) + "\\n")
    if context.task_name == "b":
        time.sleep(3)


a = PythonTask("a", step)
b = PythonTask("b", step, idempotent={idempotent})
c = PythonTask("c", step)
main = Dag("main")
main.define({{a: b, b: c}})
'''


def daemon(tmp_path, *, idempotent: bool) -> Daemon:
    d = Daemon(tmp_path)
    (tmp_path / "workflows" / "chain.py").write_text(CHAIN.format(idempotent=idempotent))
    d.write_rules(
        textwrap.dedent(f"""
        [[rule]]
        name = "chain"
        workflow = "chain"
        params = {{ path = "{{path}}", ledger = "{tmp_path / 'ledger.jsonl'}" }}
        [rule.files]
        roots = ["{d.incoming}"]
        glob = "*.dat"
    """)
    )
    return d


def ledger(d: Daemon) -> list[str]:
    path = d.root / "ledger.jsonl"
    return (
        [json.loads(line)["task"] for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_run_resumes_after_kill_9_without_running_ended_tasks_again(tmp_path, idempotent):
    d = daemon(tmp_path, idempotent=idempotent)
    with d:
        write_file(d.incoming / "scan.dat", b"data")
        d.wait_for(lambda: ledger(d) == ["a", "b"], what="task b to start")
        d.kill()
        d.start()
        d.wait_for(
            lambda: [r["state"] for r in d.runs_db()] in (["succeeded"], ["failed"]),
            timeout=30,
            what="the run to end",
        )
        (run,) = d.ctl_json("runs")
        events = d.ctl_json("events", "--run", run["run_id"], "--limit", "500")
        shown = d.ctl("show", run["run_id"]).stdout
    started = [e for e in events if e["kind"] == "run.started"]
    assert [e["data"]["attempt"] for e in started] == [1, 2]
    assert "resumed (attempt 2): 1 tasks had ended" in started[1]["message"]
    # triggerctl show: the two attempts apart
    assert (
        "attempt 1 " in shown
        and "attempt 2 " in shown
        and "resumed: 1 tasks had ended, 1 were running or due" in shown
    )
    if idempotent:
        assert run["state"] == "succeeded"
        # a not again; b again (its worker went with the daemon)
        assert ledger(d) == ["a", "b", "b", "c"]
        assert any(e["kind"] == "task.retried" and e["task"] == "b" for e in events)
    else:
        assert run["state"] == "failed"
        assert ledger(d) == ["a", "b"]
        assert "was running when the daemon stopped, and it is not idempotent" in run["error"]
