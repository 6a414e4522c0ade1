"""Walking a watch root: ignore patterns, no symlinked directories, and "still being written?".

Private helpers of :mod:`triggerd.sources.files`. Paths stay ``str`` as Python gives them
(undecodable bytes as surrogate escapes); nothing here decodes or re-encodes a name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from triggerd.log import get_logger

if TYPE_CHECKING:
    from triggerd.sources.files import FileWatch

__all__ = ["complete_files", "count_dirs", "ignored", "open_for_writing", "regular_stat", "relative", "walk_files"]

log = get_logger(__name__)

# Sent to us if a writer opens a file while we probe it: ignored by default, unlike SIGIO.
_LEASE_SIGNAL = signal.SIGURG


def relative(path: str, root: str) -> str | None:
    """``path`` under ``root`` with '/' separators, or None if it is not strictly below it."""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix) :] if path.startswith(prefix) and len(path) > len(prefix) else None


def ignored(rel: str, patterns: tuple[str, ...]) -> bool:
    """True if the basename or any directory component of ``rel`` matches one of ``patterns``."""
    return bool(patterns) and any(fnmatchcase(part, pat) for part in rel.split("/") for pat in patterns)


Signature = tuple[int, int, int]


def signature(st: os.stat_result) -> Signature:
    """What changes when a file is written to, truncated or replaced."""
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def regular_stat(path: str) -> os.stat_result | None:
    """``stat()`` following symlinks; None if the file is gone or not a regular file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # gone, dangling link, ELOOP, EACCES; ValueError: a NUL
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def open_for_writing(path: str) -> bool | None:
    """Whether some process holds ``path`` open for writing; None when it cannot be told.

    Linux refuses a read lease (EAGAIN) while any descriptor of the file is open for
    writing, so taking one and releasing it at once answers without waiting. It needs a
    filesystem with lease support (local ones) and the daemon to own the file or hold
    CAP_LEASE; otherwise the answer is None and callers treat the file as complete.
    The lease is held for two system calls; a writer opening the file in that instant
    waits that long (or gets EAGAIN if it opens with O_NONBLOCK).
    """
    setlease, setsig = getattr(fcntl, "F_SETLEASE", None), getattr(fcntl, "F_SETSIG", None)
    # A writer opening the file while we hold the lease makes the kernel signal us, with
    # SIGIO unless told otherwise, and SIGIO's default action ends the process.
    if setlease is None or setsig is None or signal.getsignal(_LEASE_SIGNAL) not in (signal.SIG_DFL, signal.SIG_IGN):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except BlockingIOError:  # a writer holds a write lease
        return True
    except (OSError, ValueError):
        return None
    try:
        fcntl.fcntl(fd, setsig, _LEASE_SIGNAL)
        fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def walk_files(
    top: str,
    *,
    recursive: bool,
    ignore: tuple[str, ...],
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under ``top`` with their ``stat()``, depth first, in no set order.

    Never descends into a symlinked directory (so symlink loops cannot hang it), an ignored
    one, or one already visited (bind-mount loops). A symlink to a regular file is yielded
    under its own path, with its target's stat. ``ignore`` applies to every name met below
    ``top``; the caller checks ``top``'s own components.
    """
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            if on_error is not None:
                on_error(directory, exc)
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        for entry in entries:
            if ignored(entry.name, ignore):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if recursive:
                    stack.append(entry.path)
                continue
            file_stat = regular_stat(entry.path)
            if file_stat is not None:
                yield entry.path, file_stat


def complete_files(
    spec: FileWatch, top: str, *, young: Callable[[str], None] | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """The files under ``top`` that ``spec`` counts as complete, as far as a scan can tell.

    ``marker``: files whose marker exists (never the markers). ``settled``: files whose
    mtime is ``settle`` seconds old; younger ones go to ``young`` (the running watch) and
    are left out. ``closed``/``moved``: files nobody holds open for writing; the others
    will have their close or rename seen by the running watch.
    """
    young_ns = time.time_ns() - int(spec.settle * 1e9)

    def unreadable(directory: str, exc: OSError) -> None:
        log.warning("cannot scan directory", directory=directory, error=str(exc))

    for path, st in walk_files(top, recursive=spec.recursive, ignore=spec.ignore, on_error=unreadable):
        if spec.complete == "marker":
            if path.endswith(spec.marker_suffix) or not os.path.lexists(path + spec.marker_suffix):
                continue
        elif spec.complete == "settled":
            if st.st_mtime_ns > young_ns:
                if young is not None:
                    young(path)
                continue
        elif open_for_writing(path):
            continue
        yield path, st


def count_dirs(root: str, *, recursive: bool) -> int:
    """Directories inotify must watch for ``root``: itself and every real (non-symlink) one below."""
    if not recursive:
        return 1
    total, stack, seen = 0, [root], set()
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
            with os.scandir(directory) as it:
                subdirs = [e.path for e in it if _is_real_dir(e)]
        except OSError:
            total += 1
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += 1
        stack += subdirs
    return total


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False
