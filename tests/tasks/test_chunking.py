"""ChunkingTask: the pure grouping function, and the task's run against a fake signal."""

from __future__ import annotations

import re

import pytest

from triggerd.flow import BaseTask, MultiTaskData, TaskData
from triggerd.tasks import ChunkingTask
from triggerd.tasks.chunking import chunk_names

SCAN = r"(scan_\d+)_\d+\.h5$"


def scan_files(*scans: tuple[int, int]) -> list[str]:
    """``scan_files((1, 2), (2, 1))`` -> scan_001_0001.h5, scan_001_0002.h5, scan_002_0001.h5."""
    return [
        f"scan_{scan:03d}_{frame:04d}.h5" for scan, count in scans for frame in range(1, count + 1)
    ]


class FakeSignal:
    """Records start_dag/join_dags; start_dag returns running names like the runner."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.started: list[tuple[str, MultiTaskData]] = []
        self.joined: list[list[str]] = []
        self._stop_after = stop_after

    def start_dag(self, dag, *, data=None):
        if self._stop_after is not None and len(self.started) >= self._stop_after:
            return None
        self.started.append((dag, data))
        return f"{dag}:{len(self.started)}"

    def join_dags(self, names=None):
        self.joined.append(list(names))
        return True

    @property
    def is_stopped(self) -> bool:
        return False

    def stop_workflow(self) -> bool:
        return True


def run_task(task: ChunkingTask, names, signal: FakeSignal | None = None):
    data = MultiTaskData(dataset=TaskData({"files": names}))
    signal = signal or FakeSignal()
    action = task._run(data, None, signal, None)
    return action.data, signal


# -- chunk_names ----------------------------------------------------------------------


def test_consecutive_names_of_one_key_form_one_chunk_each():
    """Files of three scans arriving in order give three chunks, in order, names in order."""
    names = scan_files((1, 4), (2, 4), (3, 2))
    assert chunk_names(names, SCAN, True) == [
        ("scan_001", names[0:4]),
        ("scan_002", names[4:8]),
        ("scan_003", names[8:10]),
    ]


def test_unmatched_names_are_left_out_and_do_not_split_a_chunk():
    """Names the pattern does not match belong to no chunk and do not end the current one."""
    names = ["scan_001_0001.h5", "README", "scan_001_0002.h5", "scan_002_0001.h5", "x.txt"]
    assert chunk_names(names, SCAN, True) == [
        ("scan_001", ["scan_001_0001.h5", "scan_001_0002.h5"]),
        ("scan_002", ["scan_002_0001.h5"]),
    ]


def test_force_consecutive_starts_a_new_chunk_when_a_key_comes_back():
    """With force_consecutive a key that reappears after another key starts a second chunk."""
    names = ["scan_001_0001.h5", "scan_002_0001.h5", "scan_001_0002.h5"]
    assert chunk_names(names, SCAN, True) == [
        ("scan_001", ["scan_001_0001.h5"]),
        ("scan_002", ["scan_002_0001.h5"]),
        ("scan_001", ["scan_001_0002.h5"]),
    ]


def test_without_force_consecutive_each_key_is_one_chunk_in_first_seen_order():
    """Without force_consecutive interleaved keys are gathered, chunks ordered by first sight."""
    names = ["scan_002_0001.h5", "scan_001_0001.h5", "scan_002_0002.h5", "scan_001_0002.h5"]
    assert chunk_names(names, SCAN, False) == [
        ("scan_002", ["scan_002_0001.h5", "scan_002_0002.h5"]),
        ("scan_001", ["scan_001_0001.h5", "scan_001_0002.h5"]),
    ]


def test_named_group_key_wins_over_group_one():
    """A named group 'key' is the key even when another group comes first."""
    pattern = r"^(run\d)_(?P<key>[a-z]+)_\d+$"
    names = ["run1_dark_1", "run2_dark_2", "run1_light_1"]
    assert chunk_names(names, pattern, True) == [
        ("dark", ["run1_dark_1", "run2_dark_2"]),
        ("light", ["run1_light_1"]),
    ]


def test_pattern_is_searched_and_may_be_compiled():
    """The pattern is searched anywhere in the name (full paths work) and may be precompiled."""
    names = ["/data/scan_007_0001.h5", "/data/scan_007_0002.h5"]
    assert chunk_names(names, re.compile(r"(scan_\d+)_"), True) == [("scan_007", names)]


def test_a_key_group_that_took_no_part_counts_as_unmatched():
    """A name matched without its (optional) key group gets no chunk."""
    assert chunk_names(["a_1", "b", "a_2"], r"(a)?_?\d?", True) == [("a", ["a_1", "a_2"])]


def test_empty_input_and_no_match_give_no_chunks():
    """No names, or only non-matching names, give an empty list."""
    assert chunk_names([], SCAN, True) == []
    assert chunk_names(["notes.txt", "log"], SCAN, False) == []


def test_pattern_without_a_group_is_refused():
    """A pattern with neither a 'key' group nor a group 1 raises ValueError naming it."""
    with pytest.raises(ValueError, match="has no group") as err:
        chunk_names(["scan_1"], r"scan_\d+", True)
    assert "scan_" in str(err.value)


# -- ChunkingTask ----------------------------------------------------------------------


def test_task_is_a_base_task_with_lightflow_keyword_arguments():
    """ChunkingTask takes BaseTask's keyword-only arguments and keeps them."""
    task = ChunkingTask("chunk", "sub", SCAN, queue="files", force_run=True, propagate_skip=False)
    assert isinstance(task, BaseTask)
    assert (task.name, task.queue, task.has_to_run, task.propagate_skip) == (
        "chunk",
        "files",
        True,
        False,
    )


def test_bad_pattern_fails_when_the_task_is_defined():
    """A literal pattern without a group is rejected at definition time, not at run time."""
    with pytest.raises(ValueError):
        ChunkingTask("chunk", "sub", r"scan_\d+")


def test_run_starts_one_dag_per_chunk_with_its_names_and_joins_them():
    """Each chunk starts dag_name with {out_key: names, 'chunk_key': key}; all are joined."""
    names = [*scan_files((1, 2), (2, 3)), "notes.txt"]
    task = ChunkingTask("chunk", "sub", SCAN, out_key="chunk_files")
    data, signal = run_task(task, names)
    assert [dag for dag, _ in signal.started] == ["sub", "sub"]
    sent = [(d.default_dataset.data, len(d)) for _, d in signal.started]
    assert sent == [
        ({"chunk_files": names[0:2], "chunk_key": "scan_001"}, 1),
        ({"chunk_files": names[2:5], "chunk_key": "scan_002"}, 1),
    ]
    assert signal.joined == [["sub:1", "sub:2"]]
    assert (data["unmatched"], data["chunk_dags"], data["held_back"]) == (1, ["sub:1", "sub:2"], [])
    assert data["files"] == names  # the input list is passed on untouched


def test_flush_on_end_false_holds_back_the_last_chunk():
    """flush_on_end=False does not dispatch the chunk of the last name and reports its names."""
    names = scan_files((1, 2), (2, 2))
    data, signal = run_task(ChunkingTask("chunk", "sub", SCAN, flush_on_end=False), names)
    assert [d["chunk_key"] for _, d in signal.started] == ["scan_001"]
    assert data["held_back"] == names[2:]


def test_flush_on_end_false_without_consecutive_holds_back_the_key_seen_last():
    """Without force_consecutive the held-back chunk is the whole chunk of the last name's key."""
    names = ["scan_002_0001.h5", "scan_001_0001.h5", "scan_002_0002.h5", "notes.txt"]
    task = ChunkingTask("chunk", "sub", SCAN, force_consecutive=False, flush_on_end=False)
    data, signal = run_task(task, names)
    assert [d["chunk_key"] for _, d in signal.started] == ["scan_001"]
    assert data["held_back"] == ["scan_002_0001.h5", "scan_002_0002.h5"]


def test_parameters_may_be_callables_of_data_and_store():
    """Arguments given as callables (data, store) are evaluated when the task runs."""
    task = ChunkingTask(
        "chunk", lambda data, store: data["target"], SCAN, flush_on_end=lambda d, s: False
    )
    data = MultiTaskData(dataset=TaskData({"files": scan_files((1, 1), (2, 1)), "target": "other"}))
    signal = FakeSignal()
    task._run(data, None, signal, None)
    assert [(dag, d["chunk_key"]) for dag, d in signal.started] == [("other", "scan_001")]


def test_no_chunk_starts_nothing_and_joins_nothing():
    """A list without matching names starts no DAG and does not call join_dags."""
    data, signal = run_task(ChunkingTask("chunk", "sub", SCAN), ["a.txt", "b.txt"])
    assert (signal.started, signal.joined) == ([], [])
    assert (data["unmatched"], data["chunk_dags"]) == (2, [])


def test_a_stopped_workflow_ends_dispatching_and_joins_what_started():
    """When start_dag returns None (workflow stopping), no more DAGs start;
    started ones are joined."""
    names = scan_files((1, 1), (2, 1), (3, 1))
    data, signal = run_task(ChunkingTask("chunk", "sub", SCAN), names, FakeSignal(stop_after=1))
    assert signal.joined == [["sub:1"]]
    assert data["chunk_dags"] == ["sub:1"]


def test_missing_or_wrong_input_key_raises_naming_it():
    """No list under in_key raises KeyError naming the key; a plain string raises TypeError."""
    task = ChunkingTask("chunk", "sub", SCAN, in_key="scans")
    with pytest.raises(KeyError, match="scans"):
        run_task(task, ["x"])
    with pytest.raises(TypeError, match="files"):
        run_task(ChunkingTask("chunk", "sub", SCAN), "scan_001_0001.h5")
