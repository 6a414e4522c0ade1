"""catch_up = "missed" decides by arrival, not by modification time: a file copied in with
its old mtime kept (cp -p, rsync -a) or renamed in from elsewhere while the daemon was
down runs at the next start; a file dispatched before the stop does not run again."""

from __future__ import annotations

import collections
import os
import shutil
import time

from daemon_harness import Daemon, write_file

from triggerd.sources import FileSource, FileWatch

DAY = 86_400.0


def test_files_that_arrived_while_down_with_an_old_mtime_run_at_the_next_start(tmp_path):
    d = Daemon(tmp_path)  # one rule over incoming/, catch_up = "missed"
    with d:
        write_file(d.incoming / "before.dat", b"before")
        d.wait_for(lambda: len(d.runs_db()) == 1, what="the first file's run")
    elsewhere = tmp_path / "elsewhere"  # the same filesystem: a rename, not a copy
    elsewhere.mkdir()
    day_ago = time.time() - DAY
    for name in ("original.dat", "moved.dat"):
        write_file(elsewhere / name, name.encode())
        os.utime(elsewhere / name, (day_ago, day_ago))
    shutil.copy2(elsewhere / "original.dat", d.incoming / "copied.dat")  # cp -p: the mtime kept
    os.rename(elsewhere / "moved.dat", d.incoming / "moved.dat")  # mv within the filesystem
    assert (d.incoming / "copied.dat").stat().st_mtime < time.time() - DAY / 2
    assert (d.incoming / "moved.dat").stat().st_mtime < time.time() - DAY / 2
    with d:
        d.wait_for(lambda: "catch-up scan found" in d.log.read_text(), what="the catch-up scan")
        d.wait_for(
            lambda: all(r["state"] == "succeeded" for r in d.runs_db()), what="the runs to end"
        )
        runs = d.runs_db()
    per_file = collections.Counter(os.path.basename(r["trigger"][0]["path"]) for r in runs)
    assert per_file == {"before.dat": 1, "copied.dat": 1, "moved.dat": 1}


def test_a_scan_by_arrival_counts_a_marker_files_marker(tmp_path):
    """A scan for what arrived since a moment leaves out older files, but takes an old
    data file whose marker arrived after that moment: it was complete only then."""
    (tmp_path / "old.h5").write_bytes(b"1")
    (tmp_path / "waited.h5").write_bytes(b"2")
    time.sleep(0.05)  # a ctime comes from a clock with a coarse tick
    since = time.time()
    time.sleep(0.05)
    (tmp_path / "old.h5.done").write_bytes(b"")
    os.utime(tmp_path / "old.h5.done", (since - DAY, since - DAY))  # the marker's own ctime is now
    (tmp_path / "waited.h5.done").touch()
    (tmp_path / "stale.h5").write_bytes(b"3")
    source = FileSource([], lambda event: None)
    closed, marker = FileWatch(str(tmp_path)), FileWatch(str(tmp_path), complete="marker")
    assert sorted(os.path.basename(e.path) for e in source.scan(closed, arrived_since=since)) == [
        "old.h5.done",
        "stale.h5",
        "waited.h5.done",
    ]
    assert sorted(os.path.basename(e.path) for e in source.scan(marker, arrived_since=since)) == [
        "old.h5",
        "waited.h5",
    ]
    assert len(list(source.scan(closed))) == 5  # without arrived_since: every file
