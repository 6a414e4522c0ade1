"""The file source against real files, real inotify and real polling observers."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from triggerd.errors import ConfigError
from triggerd.sources import FileSource, FileWatch, _scan
from triggerd.sources._inotify import describe
from triggerd.sources._settle import Poller
from triggerd.sources.events import FileEvent
from triggerd.sources.files import OVERFLOW_LOGGER


class Sink:
    """Collects emitted events; lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[FileEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: FileEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, done: Callable[[list[FileEvent]], bool], timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: done(self.events), timeout)

    def wait_paths(self, *paths: str, timeout: float = 2.0) -> bool:
        return self.wait(lambda evs: set(paths) <= {e.path for e in evs}, timeout)

    def of(self, path: str) -> list[FileEvent]:
        with self._cond:
            return [e for e in self.events if e.path == path]

    def paths(self) -> set[str]:
        with self._cond:
            return {e.path for e in self.events}


class Health:
    """Records on_health calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self._cond = threading.Condition()

    def __call__(self, root: str, state: str, message: str) -> None:
        with self._cond:
            self.calls.append((root, state, message))
            self._cond.notify_all()

    def states(self, root: str) -> list[str]:
        with self._cond:
            return [state for r, state, _ in self.calls if r == root]

    def wait(self, root: str, state: str, timeout: float = 2.0) -> bool:
        """Wait until ``root``'s latest reported state is ``state``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: [s for r, s, _ in self.calls if r == root][-1:] == [state], timeout
            )


@pytest.fixture
def make_source():
    """``make_source(watches, **kw) -> (source, sink, health)``, started; stopped at teardown."""
    sources: list[FileSource] = []

    def make(watches, *, start: bool = True, **kw):
        sink, health = Sink(), Health()
        source = FileSource(watches, sink, on_health=health, retry=kw.pop("retry", 0.1), **kw)
        sources.append(source)
        if start:
            source.start()
        return source, sink, health

    yield make
    for source in sources:
        source.stop()


def write(path: Path | str, data: bytes = b"data") -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_closed_file_is_emitted_once_with_its_stat(tmp_path, make_source):
    """A file written and closed gives one 'closed' event carrying its size, mtime and inode."""
    _, sink, _ = make_source([FileWatch(str(tmp_path))])
    path = write(tmp_path / "a.h5", b"x" * 100)
    assert sink.wait_paths(path)
    time.sleep(0.2)
    [event] = sink.of(path)
    st = os.stat(path)
    assert (event.kind, event.root, event.size, event.mtime_ns, event.inode) == (
        "closed",
        str(tmp_path),
        100,
        st.st_mtime_ns,
        st.st_ino,
    )


def test_file_still_open_is_not_emitted_until_closed(tmp_path, make_source):
    """Writing without closing triggers nothing; the close does."""
    _, sink, _ = make_source([FileWatch(str(tmp_path))])
    path = str(tmp_path / "open.h5")
    f = open(path, "wb")
    f.write(b"partial")
    f.flush()
    time.sleep(0.5)
    assert sink.of(path) == []
    f.write(b" and the rest")
    f.close()
    assert sink.wait_paths(path)
    assert [e.size for e in sink.of(path)] == [len(b"partial and the rest")]


def test_rename_into_place_is_emitted_once_as_moved(tmp_path, make_source):
    """'a.tmp' written then renamed to 'a.h5' gives exactly one 'moved' event for
    a.h5 and none for a.tmp."""
    _, sink, _ = make_source([FileWatch(str(tmp_path), ignore=("*.tmp",))])
    tmp = write(tmp_path / "a.tmp")
    os.rename(tmp, tmp_path / "a.h5")
    final = str(tmp_path / "a.h5")
    assert sink.wait_paths(final)
    time.sleep(0.3)
    assert [(e.path, e.kind) for e in sink.events] == [(final, "moved")]


def test_file_moved_in_from_outside_the_watch_is_emitted(tmp_path, make_source):
    """A file renamed in from an unwatched directory counts as moved into place (moved mode)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _, sink, _ = make_source([FileWatch(str(root), complete="moved")])
    write(root / "written-in-place.h5")
    os.rename(write(outside / "b.h5"), root / "b.h5")
    assert sink.wait_paths(str(root / "b.h5"))
    time.sleep(0.2)
    assert [(e.path, e.kind) for e in sink.events] == [(str(root / "b.h5"), "moved")]


def test_hidden_files_and_directories_are_ignored(tmp_path, make_source):
    """With ignore ('.*',) neither hidden files nor files in hidden directories are emitted."""
    _, sink, _ = make_source([FileWatch(str(tmp_path), ignore=(".*",))])
    write(tmp_path / ".hidden.h5")
    (tmp_path / ".cache").mkdir()
    write(tmp_path / ".cache" / "inside.h5")
    visible = write(tmp_path / "visible.h5")
    assert sink.wait_paths(visible)
    time.sleep(0.2)
    assert sink.paths() == {visible}


def test_files_written_right_after_mkdir_are_not_missed(tmp_path, make_source):
    """Files created in new subdirectories before their watch lands are still
    emitted (20 dirs x 5 files)."""
    _, sink, _ = make_source([FileWatch(str(tmp_path))])
    expected = set()
    for i in range(20):
        d = tmp_path / f"run{i}" / "raw"
        d.mkdir(parents=True)
        for j in range(5):
            expected.add(write(d / f"f{j}.h5"))
    assert sink.wait(lambda evs: expected <= {e.path for e in evs}, timeout=3.0), (
        expected - sink.paths()
    )
    assert sink.paths() == expected


def test_non_recursive_watch_ignores_subdirectories(tmp_path, make_source):
    """recursive=False emits files in the root only."""
    _, sink, _ = make_source([FileWatch(str(tmp_path), recursive=False)])
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "deep.h5")
    top = write(tmp_path / "top.h5")
    assert sink.wait_paths(top)
    time.sleep(0.2)
    assert sink.paths() == {top}


def test_file_deleted_before_close_gives_nothing(tmp_path, make_source):
    """Open, write, unlink, close: no event."""
    _, sink, _ = make_source([FileWatch(str(tmp_path))])
    path = tmp_path / "doomed.h5"
    with open(path, "wb") as f:
        f.write(b"x" * 10)
        f.flush()
        os.unlink(path)
    marker = write(tmp_path / "after.h5")
    assert sink.wait_paths(marker)
    time.sleep(0.2)
    assert sink.paths() == {marker}


def test_settled_mode_emits_once_after_the_file_stops_growing(tmp_path, make_source):
    """Polling: a file growing in three steps gives one 'settled' event with its final size; a file
    deleted early gives none."""
    _, sink, _ = make_source([FileWatch(str(tmp_path), complete="settled", settle=0.3, poll=0.1)])
    path = tmp_path / "growing.dat"
    gone = write(tmp_path / "gone.dat")
    for _ in range(3):
        with open(path, "ab") as f:
            f.write(b"x" * 1000)
        time.sleep(0.1)
    os.unlink(gone)
    assert sink.wait_paths(str(path))
    time.sleep(0.5)
    assert [(e.kind, e.size) for e in sink.events] == [("settled", 3000)]


def test_marker_mode_emits_the_data_file_when_its_marker_appears(tmp_path, make_source):
    """A '.done' marker (after or before the data) emits the data file once; markers and
    orphans give nothing."""
    _, sink, _ = make_source([FileWatch(str(tmp_path), complete="marker")])
    data = write(tmp_path / "scan1.h5")
    time.sleep(0.2)
    assert sink.events == []
    write(tmp_path / "scan1.h5.done", b"")
    write(tmp_path / "orphan.h5.done", b"")
    write(tmp_path / "scan2.h5.done", b"")
    data2 = write(tmp_path / "scan2.h5")
    assert sink.wait_paths(data, data2)
    time.sleep(0.2)
    assert sorted((e.path, e.kind) for e in sink.events) == [(data, "marker"), (data2, "marker")]


def test_missing_root_is_waited_for_then_watched(tmp_path, make_source):
    """A root that does not exist yet is 'waiting'; once it appears, files already in it and
    new ones are emitted."""
    root = tmp_path / "later"
    source, sink, health = make_source([FileWatch(str(root))])
    assert source.health()[0]["state"] == "waiting"
    root.mkdir()
    early = write(root / "early.h5")
    assert health.wait(str(root), "watching")
    late = write(root / "late.h5")
    assert sink.wait_paths(early, late)
    assert source.health()[0]["state"] == "watching"


def test_root_deleted_and_recreated_is_watched_again(tmp_path, make_source):
    """A root removed while watched goes back to 'waiting' and is watched again when it returns."""
    root = tmp_path / "root"
    root.mkdir()
    _, sink, health = make_source([FileWatch(str(root))])
    shutil.rmtree(root)
    assert health.wait(str(root), "waiting")
    root.mkdir()
    path = write(root / "again.h5")
    assert sink.wait_paths(path)
    assert health.states(str(root))[-1] == "watching"


def test_root_that_is_a_file_is_an_error_and_other_watches_keep_working(tmp_path, make_source):
    """A root that cannot be watched is reported as 'error' with a reason; the
    other watch still emits."""
    bad, good = tmp_path / "not-a-dir", tmp_path / "good"
    write(bad)
    good.mkdir()
    source, sink, health = make_source([FileWatch(str(bad)), FileWatch(str(good))])
    states = {row["root"]: row for row in source.health()}
    assert states[str(bad)]["state"] == "error"
    assert states[str(bad)]["message"] == f"not a directory: {bad}"
    assert ("error" in health.states(str(bad))) and states[str(good)]["state"] == "watching"
    path = write(good / "ok.h5")
    assert sink.wait_paths(path)


def test_permission_denied_root_is_an_error(tmp_path, make_source):
    """A root the daemon may not read is reported as 'permission denied'."""
    if os.geteuid() == 0:
        pytest.skip(
            "running as root: chmod 000 does not deny root (see the root-that-is-a-file test)"
        )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        source, _, _ = make_source([FileWatch(str(locked))])
        assert source.health()[0]["state"] == "error"
        assert source.health()[0]["message"] == f"permission denied: {locked}"
    finally:
        locked.chmod(0o755)


def test_hostile_file_names_are_emitted_with_exact_paths(tmp_path, make_source):
    """Spaces, quotes, ';', '$()', newlines and non-UTF-8 bytes in names come through unchanged."""
    _, sink, _ = make_source([FileWatch(str(tmp_path))])
    names = [
        "a b.h5",
        "q'\"x.h5",
        "semi;colon.h5",
        "$(touch pwned).h5",
        "new\nline.h5",
        os.fsdecode(b"caf\xe9.h5"),
    ]
    expected = {write(os.path.join(str(tmp_path), name)) for name in names}
    assert sink.wait(lambda evs: expected <= {e.path for e in evs}), expected - sink.paths()
    assert sink.paths() == expected
    assert not os.path.exists(tmp_path / "pwned")


def _links_and_loops(tmp_path: Path) -> str:
    """A tree with two link loops, a link to a file inside it and one to a file outside."""
    (tmp_path / "a").mkdir()
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(".", tmp_path / "a" / "self")
    real = write(tmp_path / "a" / "real.h5", b"12345")
    os.symlink(real, tmp_path / "link.h5")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.h5"
    outside.write_bytes(b"secret")
    os.symlink(outside, tmp_path / "out.h5")
    write(tmp_path / "skip.tmp")
    return real


def test_scan_ignores_symlinks_by_default(tmp_path, make_source):
    """scan() neither follows nor reports a symbolic link (a loop does not hang it); the
    live watch is fine with the loops too."""
    watch = FileWatch(str(tmp_path), ignore=("*.tmp",))
    source, sink, _ = make_source([watch])
    real = _links_and_loops(tmp_path)
    started = time.monotonic()
    found = {e.path: e for e in source.scan(watch)}
    assert time.monotonic() - started < 1.0
    assert set(found) == {real}
    later = write(tmp_path / "a" / "later.h5")
    assert sink.wait_paths(later)


def test_scan_following_symlinks_reports_links_inside_the_roots_once(tmp_path, make_source):
    """With follow_symlinks, a link to a file inside the roots is reported by its own path
    with its target's size and the target as link_to; the link out of the roots is not;
    each loop is walked once (nothing is reported twice or under a looped path)."""
    watch = FileWatch(str(tmp_path), ignore=("*.tmp",), follow_symlinks=True)
    source, _, _ = make_source([watch])
    real = _links_and_loops(tmp_path)
    started = time.monotonic()
    found = [e for e in source.scan(watch)]
    assert time.monotonic() - started < 1.0
    assert sorted(e.path for e in found) == sorted([real, str(tmp_path / "link.h5")])
    (link,) = [e for e in found if e.path.endswith("link.h5")]
    assert link.size == 5 and link.link_to == real and link.kind == "existing"


def test_scan_skips_files_still_open_and_the_watch_reports_them_on_close(tmp_path, make_source):
    """A file open for writing is left out of scan(); its close is then emitted by the watch."""
    watch = FileWatch(str(tmp_path), recursive=False)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "deep.h5")
    done = write(tmp_path / "done.h5")
    source, sink, _ = make_source([watch])
    busy = open(tmp_path / "busy.h5", "wb")
    busy.write(b"x")
    busy.flush()
    try:
        assert [e.path for e in source.scan(watch)] == [done]
    finally:
        busy.close()
    assert sink.wait_paths(str(tmp_path / "busy.h5"))


def test_overflow_warning_triggers_a_rescan_and_health_returns_to_watching(tmp_path, make_source):
    """watchdog's overflow warning makes the source rescan (files emitted as 'existing') and go
    overflow -> rescanning -> watching."""
    missed = [write(tmp_path / f"missed{i}.h5") for i in range(3)]
    source, sink, health = make_source([FileWatch(str(tmp_path))])
    time.sleep(0.1)
    assert sink.events == []
    # the message watchdog 7.1 logs in InotifyFD.handle_event on IN_Q_OVERFLOW
    logging.getLogger(OVERFLOW_LOGGER).warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    assert sink.wait_paths(*missed)
    assert {e.kind for e in sink.events} == {"existing"}
    assert health.wait(str(tmp_path), "watching")  # the latest state, after the rescan
    assert health.states(str(tmp_path))[-3:] == ["overflow", "rescanning", "watching"]
    assert source.health()[0]["state"] == "watching"


def test_reconcile_scan_finds_files_no_event_reported(tmp_path, make_source):
    """With reconcile set, a periodic quiet rescan emits files the watch never saw."""
    root = tmp_path / "root"
    root.mkdir()
    path = write(root / "unseen.h5")  # before start: no event will ever come
    _, sink, health = make_source([FileWatch(str(root))], reconcile=0.2)
    assert sink.wait_paths(str(path))
    assert health.states(str(root)) == ["watching"]


def test_update_adds_and_removes_watches_without_restarting_unchanged_ones(tmp_path, make_source):
    """update() starts a new watch and stops a dropped one while the unchanged one keeps every
    event and its counters."""
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    wa, wb, wc = FileWatch(str(a)), FileWatch(str(b)), FileWatch(str(c))
    source, sink, _ = make_source([wa, wb])
    first = write(a / "first.h5")
    assert sink.wait_paths(first)
    expected = {str(a / f"during{i}.h5") for i in range(30)}
    writer = threading.Thread(target=lambda: [write(p) for p in sorted(expected)])
    writer.start()
    source.update([wa, wc])
    writer.join()
    dropped, added = write(b / "dropped.h5"), write(c / "added.h5")
    assert sink.wait(lambda evs: expected | {added} <= {e.path for e in evs}), (
        expected - sink.paths()
    )
    time.sleep(0.2)
    assert dropped not in sink.paths()
    rows = {row["root"]: row for row in source.health()}
    assert set(rows) == {str(a), str(c)}
    assert rows[str(a)]["events"] == 31 and rows[str(c)]["events"] == 1


def test_health_reports_state_directories_and_event_counts(tmp_path, make_source):
    """health() gives root, complete, state, message, watched_dirs, events and
    last_event per watch."""
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2" / "s3").mkdir(parents=True)
    missing = tmp_path / "missing"
    source, sink, _ = make_source(
        [FileWatch(str(tmp_path)), FileWatch(str(missing), complete="settled")]
    )
    before = time.time()
    path = write(tmp_path / "s1" / "f.h5")
    assert sink.wait_paths(path)
    rows = {row["root"]: row for row in source.health()}
    assert rows[str(tmp_path)] == {
        "root": str(tmp_path),
        "complete": "closed",
        "state": "watching",
        "message": "",
        "watched_dirs": 4,
        "events": 1,
        "last_event": rows[str(tmp_path)]["last_event"],
    }
    assert rows[str(tmp_path)]["last_event"] >= before
    assert rows[str(missing)]["state"] == "waiting" and rows[str(missing)]["events"] == 0
    assert rows[str(missing)]["last_event"] is None and rows[str(missing)]["watched_dirs"] == 0


def test_stop_leaves_no_threads_behind(tmp_path, make_source):
    """start() then stop() with inotify, polling and waiting watches leaves
    threading.enumerate() as it was."""
    (tmp_path / "poll").mkdir()
    before = set(threading.enumerate())
    source, sink, _ = make_source(
        [
            FileWatch(str(tmp_path)),
            FileWatch(str(tmp_path / "poll"), complete="settled", settle=0.2, poll=0.1),
            FileWatch(str(tmp_path / "nope")),
        ]
    )
    path = write(tmp_path / "x.h5")
    assert sink.wait_paths(path)
    source.stop()
    assert set(threading.enumerate()) == before


def test_watch_settings_are_validated():
    """A relative root or an unknown completion mode is a ConfigError naming the key."""
    with pytest.raises(ConfigError) as excinfo:
        FileWatch("data/mx1")
    assert excinfo.value.key == "roots"
    with pytest.raises(ConfigError) as excinfo:
        FileWatch("/data", complete="quiet")
    assert excinfo.value.key == "complete"
    assert FileWatch("/data/mx1/").root == "/data/mx1"


def test_watch_errors_say_what_to_do():
    """Watch-limit, instance-limit and permission errors read as the brief's operator messages."""
    limit = describe(OSError(errno.ENOSPC, "inotify watch limit reached"), "/data")
    assert limit.startswith("inotify watch limit reached (fs.inotify.max_user_watches=")
    assert limit.endswith("): raise it, or use complete = 'settled' (polling)")
    assert "max_user_instances=" in describe(
        OSError(errno.EMFILE, "inotify instance limit reached"), "/data"
    )
    assert (
        describe(PermissionError(errno.EACCES, "Permission denied"), "/data")
        == "permission denied: /data"
    )


def test_open_file_probe_survives_a_writer_opening_the_file_mid_probe(tmp_path):
    """Scans probe 'still open for writing?' with a read lease; a writer breaking it must not
    kill the process (SIGIO)."""
    script = textwrap.dedent(
        """
        import subprocess, sys, time
        from triggerd.sources._scan import open_for_writing
        path = sys.argv[1]
        open(path, "wb").close()
        loop = f"import time\\nend = time.time() + 1.2\\nwhile time.time() < end: \
open({path!r}, 'ab').close()"
        writer = subprocess.Popen([sys.executable, "-c", loop])
        end = time.time() + 1.0
        while time.time() < end:
            open_for_writing(path)
        sys.exit(writer.wait())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "contended.h5")], timeout=30
    )
    assert done.returncode == 0


def test_a_poller_stops_within_a_second_in_the_middle_of_an_endless_walk():
    """However large the tree, stop() returns within a second: the walk checks at every
    entry whether it is asked to stop."""
    walking = threading.Event()

    def endless(stopping):
        walking.set()
        while not stopping():
            time.sleep(0.001)
            yield "/x", os.stat("/")

    poller = Poller(
        endless,
        1.0,
        changed=lambda path: None,
        gone=lambda path: None,
        on_walked=lambda trouble: None,
    )
    poller.start()
    assert walking.wait(5)
    asked = time.monotonic()
    poller.stop(timeout=5)
    assert time.monotonic() - asked < 1.0
    assert not poller._thread.is_alive()


def test_a_settled_watch_over_too_many_entries_says_so(tmp_path, make_source, monkeypatch):
    """More entries than the bound: the watch shows an error naming it, and what the walk
    found until then still settles and triggers."""
    monkeypatch.setattr(_scan, "MAX_ENTRIES", 20)
    for i in range(30):
        write(tmp_path / f"old{i:02d}.dat")
    watch = FileWatch(str(tmp_path), complete="settled", settle=0.2, poll=0.1)
    source, sink, health = make_source([watch])
    deadline = time.monotonic() + 10
    while not [row for row in source.health() if row["state"] == "error"]:
        assert time.monotonic() < deadline, source.health()
        time.sleep(0.05)
    (row,) = source.health()
    assert (
        "more than 20 entries" in row["message"]
        and "only part of the tree is polled" in row["message"]
    )
