"""The lightflow-filesystem tasks of triggerd.tasks, run directly on real files in tmp_path."""

from __future__ import annotations

import inspect
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import Background, run_task, wait_for

import triggerd.tasks as tasks
from triggerd.flow import Action, LightflowException, MultiTaskData, TaskData
from triggerd.tasks import (
    ChmodTask,
    ChownTask,
    CopyTask,
    GlobTask,
    LightflowFilesystemChmodError,
    LightflowFilesystemChownError,
    LightflowFilesystemConfigError,
    LightflowFilesystemCopyError,
    LightflowFilesystemMkdirError,
    LightflowFilesystemMoveError,
    LightflowFilesystemPathError,
    LightflowFilesystemRemoveError,
    MakeDirTask,
    MoveTask,
    NewLineTriggerTask,
    NotifyTriggerTask,
    RemoveTask,
    WalkTask,
)

TASKS = [
    GlobTask,
    WalkTask,
    CopyTask,
    MoveTask,
    RemoveTask,
    MakeDirTask,
    ChmodTask,
    ChownTask,
    NotifyTriggerTask,
    NewLineTriggerTask,
]
ERRORS = [
    "LightflowFilesystemConfigError",
    "LightflowFilesystemPathError",
    "LightflowFilesystemCopyError",
    "LightflowFilesystemMoveError",
    "LightflowFilesystemMkdirError",
    "LightflowFilesystemChownError",
    "LightflowFilesystemChmodError",
    "LightflowFilesystemPermissionError",
    "LightflowFilesystemRemoveError",
]
NO_SUCH_USER = "triggerd-no-such-user-4711"


def run(task, data=None, signal=None) -> Action:
    """Run a task the way a worker does, without a store or context."""
    return run_task(task, data, signal)


def write(path: Path, text: str = "x") -> Path:
    """Create (or overwrite) a file: open, write, close — one close-after-write event."""
    with open(path, "w") as file:
        file.write(text)
    return path


def collect() -> tuple[list, Callable]:
    """A callback that records the list it is given, and the list of those calls."""
    calls: list = []

    def callback(items, data, store, signal, context):
        calls.append(list(items))

    return calls, callback


# -- the package surface --------------------------------------------------------------


def test_exports_and_exceptions_are_lightflow_exceptions():
    """Every task and exception is exported, and every exception is a LightflowException."""
    for task in TASKS:
        assert task.__name__ in tasks.__all__
    assert "ChunkingTask" in tasks.__all__
    for name in ERRORS:
        error = getattr(tasks, name)
        assert issubclass(error, LightflowException) and issubclass(error, RuntimeError)
        assert str(error("why")) == "why"


def test_constructors_take_lightflows_keyword_only_arguments():
    """Each task accepts queue, callback_init, callback_finally, force_run,
    propagate_skip by keyword only."""
    for task in TASKS:
        params = inspect.signature(task.__init__).parameters
        for name, default in [
            ("queue", "task"),
            ("callback_init", None),
            ("callback_finally", None),
            ("force_run", False),
            ("propagate_skip", True),
        ]:
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (task, name)
            assert params[name].default == default, (task, name)
    task = MakeDirTask("make", "/tmp", queue="io", force_run=True, propagate_skip=False)
    assert (task.queue, task.has_to_run, task.propagate_skip) == ("io", True, False)


# -- GlobTask ---------------------------------------------------------------------------


def test_glob_lists_matching_files_absolute_or_by_name(tmp_path):
    """GlobTask calls back once with the sorted matches of every path, absolute or base names."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/2.dat", "a/1.dat", "a/x.txt", "b/3.dat"):
        write(tmp_path / name)
    calls, callback = collect()
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    action = run(GlobTask("glob", paths, callback, pattern="*.dat"))
    assert isinstance(action, Action)
    run(GlobTask("glob", str(tmp_path / "a"), callback, pattern="*.dat", return_abs=False))
    assert calls == [
        [str(tmp_path / "a/1.dat"), str(tmp_path / "a/2.dat"), str(tmp_path / "b/3.dat")],
        ["1.dat", "2.dat"],
    ]


def test_glob_recursive_and_callable_arguments(tmp_path):
    """'**' reaches subdirectories when recursive, and paths/pattern may be
    callables of data and store."""
    (tmp_path / "d" / "e").mkdir(parents=True)
    write(tmp_path / "d" / "top.h5")
    write(tmp_path / "d" / "e" / "deep.h5")
    calls, callback = collect()
    data = MultiTaskData(dataset=TaskData({"dir": str(tmp_path / "d")}))
    task = GlobTask(
        "glob", lambda d, s: d["dir"], callback, pattern=lambda d, s: "**/*.h5", recursive=True
    )
    run(task, data)
    assert sorted(calls[0]) == [str(tmp_path / "d/e/deep.h5"), str(tmp_path / "d/top.h5")]


def test_glob_relative_path_is_a_path_error():
    """A relative directory is refused with LightflowFilesystemPathError before any callback."""
    calls, callback = collect()
    with pytest.raises(LightflowFilesystemPathError, match="not an absolute path: data"):
        run(GlobTask("glob", ["data"], callback))
    assert calls == []


# -- WalkTask ---------------------------------------------------------------------------


def test_walk_reports_files_and_links_but_does_not_follow_them(tmp_path):
    """WalkTask hands DirEntry objects of non-directories; recursive descends, a
    dir symlink is a file."""
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.txt", "12345")
    write(tmp_path / "sub" / "b.txt")
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    seen: list[tuple[str, bool]] = []

    def callback(entry, data, store, signal, context):
        seen.append((os.path.relpath(entry.path, tmp_path), entry.is_symlink()))

    run(WalkTask("walk", str(tmp_path), callback, recursive=True))
    assert seen == [("a.txt", False), ("link", True), ("sub/b.txt", False)]
    seen.clear()
    run(WalkTask("walk", lambda d, s: str(tmp_path), callback))
    assert seen == [("a.txt", False), ("link", True)]


def test_walk_of_a_missing_directory_is_a_path_error(tmp_path):
    """A path that is not an existing directory raises PathError."""
    with pytest.raises(LightflowFilesystemPathError, match="not a directory"):
        run(WalkTask("walk", str(tmp_path / "missing"), lambda *a: None))


# -- CopyTask ---------------------------------------------------------------------------


def test_copy_files_with_callable_sources_and_destination(tmp_path):
    """Files are copied into the destination directory; sources and destination may be callables."""
    out = tmp_path / "out"
    out.mkdir()
    files = [str(write(tmp_path / "1.txt", "one")), str(write(tmp_path / "2.txt", "two"))]
    data = MultiTaskData(dataset=TaskData({"files": files}))
    run(CopyTask("copy", lambda d, s: d["files"], lambda d, s: str(out)), data)
    assert (out / "1.txt").read_text() == "one"
    assert (out / "2.txt").read_text() == "two"
    assert os.path.exists(files[0])


def test_copy_directory_into_an_existing_directory_merges(tmp_path):
    """A directory lands as destination/<name>, and copying again over it works (dirs_exist_ok)."""
    src = tmp_path / "scan"
    (src / "sub").mkdir(parents=True)
    write(src / "sub" / "f.dat", "v1")
    dest = tmp_path / "backup"
    dest.mkdir()
    run(CopyTask("copy", str(src), str(dest)))
    assert (dest / "scan" / "sub" / "f.dat").read_text() == "v1"
    write(src / "sub" / "f.dat", "v2")
    write(src / "g.dat")
    run(CopyTask("copy", [str(src)], str(dest)))
    assert (dest / "scan" / "sub" / "f.dat").read_text() == "v2"
    assert (dest / "scan" / "g.dat").exists()


def test_copy_errors(tmp_path):
    """A directory needs an existing destination dir (PathError); a missing file is a CopyError;
    relative is PathError."""
    (tmp_path / "dir").mkdir()
    with pytest.raises(LightflowFilesystemPathError, match="not an existing directory"):
        run(CopyTask("copy", str(tmp_path / "dir"), str(tmp_path / "nowhere")))
    with pytest.raises(LightflowFilesystemCopyError, match="missing.txt"):
        run(CopyTask("copy", str(tmp_path / "missing.txt"), str(tmp_path)))
    with pytest.raises(LightflowFilesystemCopyError, match="into itself"):
        run(CopyTask("copy", str(tmp_path / "dir"), str(tmp_path / "dir")))
    with pytest.raises(LightflowFilesystemPathError, match="source path is not an absolute path"):
        run(CopyTask("copy", "relative.txt", str(tmp_path)))


# -- MoveTask ---------------------------------------------------------------------------


def test_move_files_and_directories(tmp_path):
    """Files and a directory move into the destination directory and are gone from the source."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "inner")
    f = write(tmp_path / "f.txt", "moved")
    run(MoveTask("move", [str(f), str(tmp_path / "d")], str(out)))
    assert (out / "f.txt").read_text() == "moved" and not f.exists()
    assert (out / "d" / "inner").exists() and not (tmp_path / "d").exists()


def test_move_errors(tmp_path):
    """A dir needs an existing destination dir; an existing target is a MoveError; relative
    paths are PathErrors."""
    (tmp_path / "d").mkdir()
    with pytest.raises(LightflowFilesystemPathError, match="not an existing directory"):
        run(MoveTask("move", str(tmp_path / "d"), str(tmp_path / "nowhere")))
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    write(out / "d" / "x")
    with pytest.raises(LightflowFilesystemMoveError, match="already exists"):
        run(MoveTask("move", str(tmp_path / "d"), str(out)))
    with pytest.raises(
        LightflowFilesystemPathError, match="destination path is not an absolute path"
    ):
        run(MoveTask("move", str(tmp_path / "d"), "out"))


# -- RemoveTask -------------------------------------------------------------------------


def test_remove_files_trees_and_links(tmp_path):
    """Files and directory trees are removed; a symlink to a directory goes, its target stays."""
    keep = tmp_path / "keep"
    keep.mkdir()
    write(keep / "k")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    write(tmp_path / "tree" / "sub" / "f")
    f = write(tmp_path / "f")
    (tmp_path / "link").symlink_to(keep)
    data = MultiTaskData(dataset=TaskData({"n": 1}))
    action = run(
        RemoveTask("rm", lambda d, s: [str(f), str(tmp_path / "tree"), str(tmp_path / "link")]),
        data,
    )
    assert action.data["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    assert (keep / "k").exists()


def test_remove_of_a_missing_path_raises_remove_error(tmp_path):
    """The OSError is raised as RemoveError naming the path (Lightflow swallowed it)."""
    missing = tmp_path / "missing"
    with pytest.raises(
        LightflowFilesystemRemoveError, match=re.escape(f"Cannot remove {missing}")
    ) as info:
        run(RemoveTask("rm", str(missing)))
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(LightflowFilesystemPathError):
        run(RemoveTask("rm", "missing"))


# -- MakeDirTask ------------------------------------------------------------------------


def test_make_dir_creates_parents_and_keeps_existing(tmp_path):
    """Missing parents are created; an existing directory and its content are left as they are."""
    write(tmp_path / "marker")
    run(MakeDirTask("mkdir", [str(tmp_path / "a" / "b" / "c"), str(tmp_path)]))
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert (tmp_path / "marker").exists()


def test_make_dir_errors(tmp_path):
    """A file in the way is a MkdirError, a relative path a PathError."""
    write(tmp_path / "file")
    with pytest.raises(LightflowFilesystemMkdirError, match="file"):
        run(MakeDirTask("mkdir", str(tmp_path / "file")))
    with pytest.raises(LightflowFilesystemMkdirError):
        run(MakeDirTask("mkdir", str(tmp_path / "file" / "sub")))
    with pytest.raises(LightflowFilesystemPathError, match="not an absolute path: rel/dir"):
        run(MakeDirTask("mkdir", "rel/dir"))


# -- ChmodTask --------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def make_tree(root: Path) -> Path:
    """root/{f, sub/{g}} with mode 600 files and 700 dirs."""
    (root / "sub").mkdir(parents=True)
    for path in (write(root / "f"), write(root / "sub" / "g")):
        path.chmod(0o600)
    for path in (root, root / "sub"):
        path.chmod(0o700)
    return root


def test_chmod_recursive_non_recursive_and_only_dirs(tmp_path):
    """Recursive changes the whole tree; non-recursive the dir and its files;
    only_dirs skips files."""
    tree = make_tree(tmp_path / "t1")
    run(ChmodTask("chmod", str(tree), "755"))
    assert {mode(p) for p in (tree, tree / "f", tree / "sub", tree / "sub" / "g")} == {0o755}

    tree = make_tree(tmp_path / "t2")
    run(ChmodTask("chmod", str(tree), 0o750, recursive=False))
    assert [mode(p) for p in (tree, tree / "f", tree / "sub", tree / "sub" / "g")] == [
        0o750,
        0o750,
        0o700,
        0o600,
    ]

    tree = make_tree(tmp_path / "t3")
    run(ChmodTask("chmod", lambda d, s: [str(tree)], lambda d, s: "711", only_dirs=True))
    assert [mode(p) for p in (tree, tree / "f", tree / "sub", tree / "sub" / "g")] == [
        0o711,
        0o600,
        0o711,
        0o600,
    ]


def test_chmod_errors_are_raised(tmp_path):
    """A missing path raises ChmodError naming it; a non-octal permission is a
    ConfigError on definition."""
    missing = tmp_path / "missing"
    with pytest.raises(LightflowFilesystemChmodError, match=re.escape(str(missing))):
        run(ChmodTask("chmod", str(missing), "644"))
    with pytest.raises(LightflowFilesystemConfigError, match="octal"):
        ChmodTask("chmod", str(tmp_path), "rwx")
    with pytest.raises(LightflowFilesystemPathError):
        run(ChmodTask("chmod", "relative", "644"))


# -- ChownTask --------------------------------------------------------------------------


def test_chown_to_the_current_owner_by_id_and_name(tmp_path):
    """Chown with the current uid/gid (or user name) succeeds on a tree and
    leaves ownership as it was."""
    import pwd

    tree = make_tree(tmp_path / "t")
    uid, gid = os.getuid(), os.getgid()
    run(ChownTask("chown", str(tree), user=uid, group=gid))
    run(ChownTask("chown", str(tree), user=lambda d, s: pwd.getpwuid(uid).pw_name, recursive=False))
    assert {(os.stat(p).st_uid, os.stat(p).st_gid) for p in (tree, tree / "sub" / "g")} == {
        (uid, gid)
    }


def test_chown_errors_are_raised(tmp_path):
    """Unknown user or missing path raise ChownError naming it; neither user nor
    group is a ConfigError."""
    write(tmp_path / "f")
    with pytest.raises(
        LightflowFilesystemChownError,
        match=f"{re.escape(str(tmp_path / 'f'))}.*no user '{NO_SUCH_USER}'",
    ):
        run(ChownTask("chown", str(tmp_path / "f"), user=NO_SUCH_USER))
    missing = tmp_path / "missing"
    with pytest.raises(LightflowFilesystemChownError, match=re.escape(str(missing))):
        run(ChownTask("chown", str(missing), user=os.getuid()))
    with pytest.raises(LightflowFilesystemConfigError, match="user or the group"):
        ChownTask("chown", str(tmp_path))
    with pytest.raises(LightflowFilesystemConfigError, match="user or the group"):
        run(ChownTask("chown", str(tmp_path), user=lambda d, s: None))


# -- NotifyTriggerTask ------------------------------------------------------------------


def test_notify_aggregates_closed_files_and_stops_within_a_second(tmp_path):
    """aggregate=2 hands closed files in FIFO pairs; a flipped stop flag ends
    the task within ~1 s."""
    calls, callback = collect()
    bg = Background(NotifyTriggerTask("watch", str(tmp_path), callback, aggregate=2))
    for name in ("1.dat", "2.dat", "3.dat", "4.dat", "5.dat"):
        write(tmp_path / name)
    wait_for(lambda: len(calls) == 2)
    time.sleep(0.1)
    assert bg.stop() < 1.0
    assert calls == [
        [str(tmp_path / "1.dat"), str(tmp_path / "2.dat")],
        [str(tmp_path / "3.dat"), str(tmp_path / "4.dat")],
    ]
    assert isinstance(bg.result, Action)


def test_notify_exclude_mask_and_callable_path_and_start_dag(tmp_path):
    """Paths matching exclude_mask are dropped; path may be a callable; the
    callback can start DAGs."""

    def callback(files, data, store, signal, context):
        signal.start_dag("files_dag", data=MultiTaskData(dataset=TaskData({"files": files})))

    data = MultiTaskData(dataset=TaskData({"dir": str(tmp_path)}))
    task = NotifyTriggerTask(
        "watch", lambda d, s: d["dir"], callback, exclude_mask=r"\.tmp$", event_trigger_time=0.05
    )
    bg = Background(task, data)
    write(tmp_path / "a.tmp")
    write(tmp_path / "b.dat")
    wait_for(lambda: len(bg.signal.started) == 1)
    bg.stop()
    assert [(dag, d["files"]) for dag, d in bg.signal.started] == [
        ("files_dag", [str(tmp_path / "b.dat")])
    ]


def test_notify_use_existing_with_and_without_flush(tmp_path):
    """flush_existing hands all existing files at once; without it they head the
    aggregated chunks."""
    for name in ("a", "b", "c"):
        write(tmp_path / name)
    calls, callback = collect()
    bg = Background(
        NotifyTriggerTask(
            "watch",
            str(tmp_path),
            callback,
            aggregate=2,
            use_existing=True,
            event_trigger_time=0.05,
        )
    )
    assert calls == [[str(tmp_path / n) for n in ("a", "b", "c")]]
    write(tmp_path / "d")
    write(tmp_path / "e")
    wait_for(lambda: len(calls) == 2)
    bg.stop()
    assert calls[1] == [str(tmp_path / "d"), str(tmp_path / "e")]

    calls.clear()
    bg = Background(
        NotifyTriggerTask(
            "watch",
            str(tmp_path),
            callback,
            aggregate=2,
            use_existing=True,
            flush_existing=False,
            exclude_mask="[de]$",
            event_trigger_time=0.05,
        )
    )
    assert calls == [[str(tmp_path / "a"), str(tmp_path / "b")]]
    write(tmp_path / "f")
    wait_for(lambda: len(calls) == 2)
    bg.stop()
    assert calls[1] == [str(tmp_path / "c"), str(tmp_path / "f")]


def test_notify_never_reports_directories_and_honours_recursive(tmp_path):
    """Created subdirectories are not reported; their files are when recursive, not otherwise."""
    (tmp_path / "old").mkdir()
    calls, callback = collect()
    bg = Background(
        NotifyTriggerTask(
            "watch",
            str(tmp_path),
            callback,
            on_file_create=True,
            on_file_close=False,
            event_trigger_time=0.05,
        )
    )
    (tmp_path / "new").mkdir()
    write(tmp_path / "old" / "f")
    write(tmp_path / "top")
    wait_for(lambda: [str(tmp_path / "top")] in calls)
    bg.stop()
    assert calls == [[str(tmp_path / "old" / "f")], [str(tmp_path / "top")]]

    calls.clear()
    bg = Background(
        NotifyTriggerTask(
            "watch", str(tmp_path), callback, recursive=False, event_trigger_time=0.05
        )
    )
    write(tmp_path / "old" / "g")
    write(tmp_path / "top2")
    wait_for(lambda: len(calls) == 1)
    time.sleep(0.1)
    bg.stop()
    assert calls == [[str(tmp_path / "top2")]]


def test_notify_delete_and_move_selectors_and_skip_duplicate(tmp_path):
    """on_file_delete reports removed files, on_file_move both ends inside the tree;
    skip_duplicate drops repeats."""
    a, b = write(tmp_path / "a"), write(tmp_path / "b")
    calls, callback = collect()
    bg = Background(
        NotifyTriggerTask(
            "watch",
            str(tmp_path),
            callback,
            on_file_close=False,
            on_file_delete=True,
            on_file_move=True,
            event_trigger_time=0.05,
        )
    )
    os.remove(a)
    os.rename(b, tmp_path / "b2")
    wait_for(lambda: len(calls) == 3)
    bg.stop()
    assert calls == [[str(a)], [str(b)], [str(tmp_path / "b2")]]

    calls.clear()
    bg = Background(
        NotifyTriggerTask(
            "watch",
            str(tmp_path),
            callback,
            aggregate=2,
            skip_duplicate=True,
            event_trigger_time=0.05,
        )
    )
    for text in ("1", "2", "3"):
        write(tmp_path / "same", text)
    write(tmp_path / "other")
    wait_for(lambda: len(calls) == 1)
    bg.stop()
    assert calls == [[str(tmp_path / "same"), str(tmp_path / "other")]]


def test_notify_argument_errors(tmp_path):
    """Relative or missing paths are PathErrors; no selected event, bad aggregate or bad
    regex are ConfigErrors."""
    _, callback = collect()
    with pytest.raises(LightflowFilesystemPathError, match="not an absolute path"):
        run(NotifyTriggerTask("watch", "input", callback))
    with pytest.raises(LightflowFilesystemPathError, match="not a directory"):
        run(NotifyTriggerTask("watch", str(tmp_path / "missing"), callback))
    with pytest.raises(LightflowFilesystemConfigError, match="No event selected"):
        run(NotifyTriggerTask("watch", str(tmp_path), callback, on_file_close=False))
    with pytest.raises(LightflowFilesystemConfigError, match="aggregate"):
        NotifyTriggerTask("watch", str(tmp_path), callback, aggregate=0)
    with pytest.raises(LightflowFilesystemConfigError, match="regular expression"):
        NotifyTriggerTask("watch", str(tmp_path), callback, exclude_mask="(")


def test_notify_raises_when_the_watched_directory_is_removed(tmp_path):
    """Removing the watched directory ends the task with a PathError instead of watching nothing."""
    watched = tmp_path / "w"
    watched.mkdir()
    bg = Background(
        NotifyTriggerTask("watch", str(watched), lambda *a: None, event_trigger_time=0.05)
    )
    watched.rmdir()
    bg.thread.join(2)
    assert isinstance(bg.error, LightflowFilesystemPathError)


# -- NewLineTriggerTask -----------------------------------------------------------------


def test_newline_reports_new_lines_with_newline_in_chunks(tmp_path):
    """Only lines written after the start come, with their '\\n', in chunks of aggregate;
    a partial line waits."""
    log = write(tmp_path / "log.txt", "old line\n")
    calls, callback = collect()
    bg = Background(
        NewLineTriggerTask("tail", str(log), callback, aggregate=2, event_trigger_time=0.05)
    )
    with open(log, "a") as file:
        file.write("one\ntwo\r\nthr")
    wait_for(lambda: len(calls) == 1)
    with open(log, "a") as file:
        file.write("ee\nfour\n")
    wait_for(lambda: len(calls) == 2)
    bg.stop()
    assert calls == [["one\n", "two\n"], ["three\n", "four\n"]]


def test_newline_use_existing_flush_and_stop(tmp_path):
    """use_existing+flush_existing hands every existing line at once; None waits 0.5 s
    and stops within ~1 s."""
    log = write(tmp_path / "log.txt", "a\nb\nc\n")
    calls, callback = collect()
    bg = Background(
        NewLineTriggerTask(
            "tail",
            lambda d, s: str(log),
            callback,
            aggregate=2,
            use_existing=True,
            event_trigger_time=None,
        )
    )
    assert calls == [["a\n", "b\n", "c\n"]]
    assert bg.stop() < 1.0

    calls.clear()
    bg = Background(
        NewLineTriggerTask(
            "tail",
            str(log),
            callback,
            aggregate=2,
            use_existing=True,
            flush_existing=False,
            event_trigger_time=0.05,
        )
    )
    with open(log, "a") as file:
        file.write("d\n")
    wait_for(lambda: len(calls) == 2)
    bg.stop()
    assert calls == [["a\n", "b\n"], ["c\n", "d\n"]]


def test_newline_path_errors(tmp_path):
    """A relative path or a missing file is a PathError."""
    with pytest.raises(LightflowFilesystemPathError, match="not an absolute path"):
        run(NewLineTriggerTask("tail", "log.txt", lambda *a: None))
    with pytest.raises(LightflowFilesystemPathError, match="Cannot read"):
        run(NewLineTriggerTask("tail", str(tmp_path / "missing.txt"), lambda *a: None))
