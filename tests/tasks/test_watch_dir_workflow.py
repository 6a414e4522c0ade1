"""The watch_dir example runs on the local executor: files written into input/
are copied to output/."""

from __future__ import annotations

import threading
import time


def test_watch_dir_copies_two_files_and_stops_itself(run_workflow, tmp_path):
    """Two files written into input/ are copied by a files_dag copy; stop_after=2 stops the run."""
    root = tmp_path / "root"
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["out"] = run_workflow(
                "watch_dir", {"root": str(root), "stop_after": "2"}, timeout=30
            )
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    runner = threading.Thread(target=target, daemon=True)
    runner.start()
    deadline = time.monotonic() + 20
    while not (root / "input").is_dir():
        assert runner.is_alive(), outcome
        assert time.monotonic() < deadline, "input/ was never created"
        time.sleep(0.02)
    for name, text in (("first.dat", "one"), ("second.dat", "two")):
        (root / "input" / name).write_text(text)
    runner.join(30)
    assert not runner.is_alive(), "the run did not end"
    assert "error" not in outcome, outcome
    out = outcome["out"]

    # The callback stopped the workflow: the run is 'stopped' (not failed), with no error
    # beyond the reason, and every task that ran succeeded.
    assert out.status == "stopped", (out.status, out.result.error, out.result.failures)
    assert out.result.error == "DAG 'main_dag:1' stopped the workflow"
    assert out.result.failures == []
    assert out.states("main_dag:1") == {"make_dirs": "succeeded", "watch_input": "succeeded"}
    assert out.states("files_dag:1") == {"copy_files": "succeeded", "record_files": "succeeded"}

    output = root / "output"
    expected = [str(output / "first.dat"), str(output / "second.dat")]
    assert sorted(out.store["data"]["copied"]) == expected
    assert out.store["data"]["seen"] == 2
    assert (output / "first.dat").read_text() == "one"
    assert (output / "second.dat").read_text() == "two"
