"""NotifyTriggerTask on triggerd's file source: completion, renames, links, odd names, overflow.

Real files and real inotify in tmp_path; every wait is for a fact (a callback call), and a
file written last serves as a sentinel: events come in order, so once the sentinel is
reported, anything reported wrongly before it would be there too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import Background, wait_for

from triggerd.tasks import LightflowFilesystemPathError, NotifyTriggerTask

# The logger on which watchdog reports an inotify queue overflow (and nothing else does).
WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify_c"


def write(path: Path | bytes, data: bytes = b"x") -> str:
    """Create (or overwrite) a file: open, write, close."""
    with open(path, "wb") as file:
        file.write(data)
    return os.fsdecode(path)


def collect() -> tuple[list[list[str]], Callable]:
    """A callback that records the list of files it is given, and the list of those calls."""
    calls: list[list[str]] = []

    def callback(files, data, store, signal, context):
        calls.append(list(files))

    return calls, callback


def watch(path: Path, callback: Callable, **kwargs) -> Background:
    """Run a NotifyTriggerTask on ``path`` in the background, noticing a stop within 50 ms."""
    return Background(
        NotifyTriggerTask("watch", str(path), callback, event_trigger_time=0.05, **kwargs)
    )


def dirs(tmp_path: Path, *names: str) -> list[Path]:
    made = [tmp_path / name for name in names]
    for path in made:
        path.mkdir()
    return made


def test_a_slowly_written_file_is_reported_once_after_its_close(tmp_path):
    """A writer that pauses between two writes: the file comes once, after the close, whole."""
    seen: list[tuple[str, int]] = []

    def callback(files, data, store, signal, context):
        seen.extend((file, os.path.getsize(file)) for file in files)

    bg = watch(tmp_path, callback)
    slow = tmp_path / "slow.dat"
    with open(slow, "wb") as writer:
        writer.write(b"first half ")
        writer.flush()
        # While the writer pauses, a file closed meanwhile comes; the open one does not.
        meanwhile = write(tmp_path / "meanwhile.dat")
        wait_for(lambda: len(seen) == 1, what="the file closed meanwhile")
        writer.write(b"second half")
    wait_for(lambda: len(seen) == 2, what="the slow file, after its close")
    after = write(tmp_path / "after.dat")
    wait_for(lambda: len(seen) == 3, what="the sentinel")
    bg.stop()
    assert seen == [(meanwhile, 1), (str(slow), 22), (after, 1)]


def test_use_existing_leaves_a_file_still_being_written_to_its_close(tmp_path):
    """A file open for writing when the task starts is not listed as existing; its close
    reports it."""
    done = write(tmp_path / "done.dat")
    calls, callback = collect()
    with open(tmp_path / "busy.dat", "wb") as writer:
        writer.write(b"half")
        writer.flush()
        bg = watch(tmp_path, callback, use_existing=True)
        assert calls == [[done]]
    wait_for(lambda: len(calls) == 2, what="the busy file, after its close")
    bg.stop()
    assert calls == [[done], [str(tmp_path / "busy.dat")]]


def test_a_file_renamed_into_the_directory_is_reported(tmp_path):
    """A file moved in from elsewhere, and one written under a temporary name (excluded)
    then renamed, are each reported once under their final name."""
    watched, elsewhere = dirs(tmp_path, "watched", "elsewhere")
    calls, callback = collect()
    bg = watch(watched, callback, exclude_mask=r"\.part$")
    os.rename(write(elsewhere / "a.dat"), watched / "a.dat")
    os.rename(write(watched / "b.dat.part"), watched / "b.dat")
    wait_for(lambda: len(calls) == 2, what="both renamed files")
    sentinel = write(watched / "c.dat")
    wait_for(lambda: len(calls) == 3, what="the sentinel")
    bg.stop()
    assert calls == [[str(watched / "a.dat")], [str(watched / "b.dat")], [sentinel]]


def test_close_and_move_selectors_report_an_arrival_once(tmp_path):
    """With on_file_close and on_file_move, a rename gives both its ends once each (as in
    Lightflow), not the arrival a second time as a completed file."""
    calls, callback = collect()
    bg = watch(tmp_path, callback, on_file_move=True)
    first = write(tmp_path / "a.dat")
    wait_for(lambda: len(calls) == 1, what="the closed file")
    os.rename(first, tmp_path / "b.dat")
    wait_for(lambda: len(calls) == 3, what="both ends of the rename")
    sentinel = write(tmp_path / "c.dat")
    wait_for(lambda: [sentinel] in calls, what="the sentinel")
    bg.stop()
    assert calls == [[first], [first], [str(tmp_path / "b.dat")], [sentinel]]


def test_symbolic_links_are_not_followed_out_of_the_directory(tmp_path):
    """Links to a file and to a directory outside are neither listed nor followed; a link
    renamed into place is no file; writes through them are not seen."""
    watched, outside = dirs(tmp_path, "watched", "outside")
    secret = write(outside / "secret.dat")
    os.symlink(secret, watched / "link.dat")
    os.symlink(outside, watched / "linked_dir")
    real = write(watched / "real.dat")
    calls, callback = collect()
    bg = watch(watched, callback, use_existing=True)
    assert calls == [[real]]
    write(outside / "new.dat")  # watched/linked_dir/new.dat, through the link
    with open(watched / "link.dat", "ab") as through_link:
        through_link.write(b"more")
    os.symlink(secret, outside / "late.dat")
    os.rename(outside / "late.dat", watched / "late.dat")
    sentinel = write(watched / "after.dat")
    wait_for(lambda: len(calls) == 2, what="the sentinel")
    bg.stop()
    assert calls == [[real], [sentinel]]


def test_a_name_that_is_not_utf8_arrives_as_the_same_bytes(tmp_path):
    """Existing and new files with undecodable names come as str that encode back to the
    exact bytes, and open as they are."""
    directory = os.fsencode(tmp_path)
    old = write(os.path.join(directory, b"old-\xe9.dat"), b"old")
    new_name = os.path.join(directory, b"caf\xe9-\xff.dat")
    calls, callback = collect()
    bg = watch(tmp_path, callback, use_existing=True)
    write(new_name, b"new")
    wait_for(lambda: len(calls) == 2, what="the new file")
    bg.stop()
    assert calls == [[old], [os.fsdecode(new_name)]]
    reported = calls[1][0]
    assert isinstance(reported, str) and os.fsencode(reported) == new_name
    with open(reported, "rb") as file:
        assert file.read() == b"new"


def test_after_an_inotify_overflow_only_files_that_arrived_meanwhile_are_reported(tmp_path):
    """The rescan after an overflow reports a file whose event was lost, not a file that
    was there before the task started (use_existing is off)."""
    watched, elsewhere = dirs(tmp_path, "watched", "elsewhere")
    (watched / "sub").mkdir()
    old = write(watched / "old.dat")
    source = write(elsewhere / "source.dat")
    # File times come from a coarse clock: the task counts a file from up to 0.1 s before
    # its start as arrived with it. old.dat is to be older than that.
    wait_for(lambda: time.time_ns() - os.stat(old).st_ctime_ns > 300_000_000, what="time")
    calls, callback = collect()
    bg = watch(watched, callback)
    # A hard link: a complete file appears, with no close or rename for the watch to see.
    unseen = watched / "sub" / "unseen.dat"
    os.link(source, unseen)
    logging.getLogger(WATCHDOG_INOTIFY_LOGGER).warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    wait_for(lambda: calls, what="the rescan")
    bg.stop()
    # A rescan walks a directory's files before its subdirectories: old.dat came first if at all.
    assert calls == [[str(unseen)]]


@pytest.mark.parametrize(
    "selectors",
    [{}, {"on_file_create": True, "on_file_delete": True, "on_file_move": True}],
    ids=["close", "all-selectors"],
)
def test_a_stopped_task_leaves_no_thread_behind(tmp_path, selectors):
    """Every watch and thread the task started ends with it."""
    before = set(threading.enumerate())
    calls, callback = collect()
    bg = watch(tmp_path, callback, **selectors)
    write(tmp_path / "a.dat")
    wait_for(lambda: calls, what="the file")
    assert bg.stop() < 1.0
    assert set(threading.enumerate()) == before


def test_a_task_ended_by_an_error_leaves_no_thread_behind(tmp_path):
    """The watched directory removed: the task raises PathError and its threads are gone."""
    watched = tmp_path / "w"
    watched.mkdir()
    before = set(threading.enumerate())
    bg = watch(watched, lambda *args: None, on_file_delete=True)
    watched.rmdir()
    bg.thread.join(5)
    assert isinstance(bg.error, LightflowFilesystemPathError)
    assert set(threading.enumerate()) == before
