"""Walking a watch root: ignore patterns, symbolic links, bounds, and "still being written?".

Private helpers of :mod:`triggerd.sources.files`. Paths stay ``str`` as Python gives them
(undecodable bytes as surrogate escapes); nothing here decodes or re-encodes a name.

Symbolic links are not files: by default a link is neither followed nor reported, in a
scan or as a live event. A watch that follows them (``follow_symlinks``) still counts a
link only when its target resolves inside the watch's ``within`` roots; a directory
reached twice (a link loop, a bind mount) is walked once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase

from triggerd.log import get_logger
from triggerd.sources.watch import FileWatch

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "TooMany",
    "arrival_ns",
    "complete_files",
    "count_dirs",
    "file_stat",
    "ignored",
    "inside",
    "open_for_writing",
    "regular_stat",
    "relative",
    "walk_files",
]

log = get_logger(__name__)

# Sent to us if a writer opens a file while we probe it: ignored by default, unlike SIGIO.
_LEASE_SIGNAL = signal.SIGURG

# Bounds of a walk of a watch root: no deeper than MAX_DEPTH directories below it, and the
# settled poller, which keeps what it saw of the whole tree between two walks, no more
# than MAX_ENTRIES entries: a tree beyond that is a mistake (a root set too high) or an
# attack (links multiplying a tree), reported as the watch's error, not memory growing.
MAX_DEPTH = 64
MAX_ENTRIES = 500_000


class TooMany(Exception):
    """A walk met more than its bound of entries; what it found so far was yielded."""


def inside(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or below one (plain text: resolve first)."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def relative(path: str, root: str) -> str | None:
    """``path`` under ``root`` with '/' separators, or None if it is not strictly below it."""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix) :] if path.startswith(prefix) and len(path) > len(prefix) else None


def ignored(rel: str, patterns: tuple[str, ...]) -> bool:
    """True if the basename or any directory component of ``rel`` matches one of ``patterns``."""
    return bool(patterns) and any(
        fnmatchcase(part, pat) for part in rel.split("/") for pat in patterns
    )


Signature = tuple[int, int, int]


def signature(st: os.stat_result) -> Signature:
    """What changes when a file is written to, truncated or replaced."""
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def arrival_ns(st: os.stat_result) -> int:
    """When the file arrived where it is, as far as its inode tells: the later of its
    ctime and its mtime.

    A copy that keeps the original's mtime (``cp -p``, ``rsync -a``) is a new inode, and
    a rename (``mv``, also rsync's last step) sets the ctime on Linux's filesystems, so
    the ctime says "now" where the mtime says "a day ago". The mtime counts too, for the
    rare file whose mtime was set into the future. Changing a file's owner or mode also
    sets its ctime: such a file counts as arrived then.
    """
    return max(st.st_ctime_ns, st.st_mtime_ns)


def regular_stat(path: str) -> os.stat_result | None:
    """``stat()`` following symlinks; None if the file is gone or not a regular file.
    Only for paths already resolved: a watched name goes through :func:`file_stat`."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # gone, dangling link, ELOOP, EACCES; ValueError: a NUL
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def file_stat(
    path: str, *, follow: bool = False, within: tuple[str, ...] = ()
) -> tuple[os.stat_result, str | None] | None:
    """A watched name's stat if it is a regular file, with None; if it is a symbolic link
    and ``follow``, its target's stat and resolved path, provided the target is a regular
    file inside ``within``; None for anything else (gone, a directory, a link not followed
    or leading out)."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(st.st_mode):
        return st, None
    if not (follow and stat.S_ISLNK(st.st_mode)):
        return None
    try:
        target = os.path.realpath(path, strict=True)  # raises on a loop or a dangling link
    except (OSError, ValueError):
        return None
    target_stat = (
        regular_stat(target)
        if inside(target, [os.path.realpath(root) for root in within])
        else None
    )
    return (target_stat, target) if target_stat is not None else None


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
    if (
        setlease is None
        or setsig is None
        or signal.getsignal(_LEASE_SIGNAL) not in (signal.SIG_DFL, signal.SIG_IGN)
    ):
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
    follow: bool = False,
    within: tuple[str, ...] = (),
    on_error: Callable[[str, OSError], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
    max_entries: int | None = None,
) -> Iterator[tuple[str, os.stat_result, str | None]]:
    """Regular files under ``top``: ``(path, stat, link target or None)``, depth first,
    in no set order.

    Never descends into a directory already visited (link loops, bind mounts), an ignored
    one, or one deeper than :data:`MAX_DEPTH`; symbolic links only with ``follow``, and
    then only to targets inside ``within`` (see :func:`file_stat`). ``ignore`` applies to
    every name met below ``top``; the caller checks ``top``'s own components. Ends early
    when ``stopping()`` turns true (checked at every entry), and raises :class:`TooMany`
    after ``max_entries`` entries, if given (the settled poller's bound).
    """
    within = tuple(os.path.realpath(root) for root in within)  # a root may itself be a link
    seen: set[tuple[int, int]] = set()
    stack = [(top, 0)]
    entries_met = 0
    while stack:
        directory, depth = stack.pop()
        listed = _list_dir(directory, on_error)
        if listed is None or listed[0] in seen:
            continue
        identity, entries = listed
        seen.add(identity)
        for entry in entries:
            entries_met += 1
            if stopping():
                return
            if max_entries is not None and entries_met > max_entries:
                raise TooMany(f"more than {max_entries} entries under {top}")
            if ignored(entry.name, ignore):
                continue
            kind = _entry_kind(entry, follow=follow, within=within)
            if kind is None:
                continue
            is_dir, target = kind
            if is_dir:
                if recursive and depth < MAX_DEPTH:
                    stack.append((entry.path, depth + 1))
                continue
            # The link was resolved and checked above: what file_stat would do again.
            found = regular_stat(target) if target is not None else _regular_entry(entry)
            if found is not None:
                yield entry.path, found, target


def _list_dir(
    directory: str, on_error: Callable[[str, OSError], None] | None
) -> tuple[tuple[int, int], list[os.DirEntry[str]]] | None:
    """The directory's identity (device, inode) and its entries, or None (reported to
    ``on_error``) when it cannot be read."""
    try:
        st = os.stat(directory)
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as exc:
        if on_error is not None:
            on_error(directory, exc)
        return None
    return (st.st_dev, st.st_ino), entries


def _entry_kind(
    entry: os.DirEntry[str], *, follow: bool, within: tuple[str, ...]
) -> tuple[bool, str | None] | None:
    """``(is a directory, link target or None)`` for an entry a walk counts; None for one
    it skips: unreadable, a link not followed, dangling, looping or leading outside
    ``within`` (real paths)."""
    try:
        is_link = entry.is_symlink()
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError:
        return None
    if not is_link:
        return is_dir, None
    if not follow:
        return None
    try:
        target = os.path.realpath(entry.path, strict=True)
    except (OSError, ValueError):
        return None  # dangling, or a loop of links
    if not inside(target, within):
        return None
    return os.path.isdir(target), target


def _regular_entry(entry: os.DirEntry[str]) -> os.stat_result | None:
    """The entry's own stat (not following a link) if it is a regular file."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def complete_files(
    spec: FileWatch,
    top: str,
    *,
    young: Callable[[str], None] | None = None,
    arrived_since_ns: int | None = None,
) -> Iterator[tuple[str, os.stat_result, str | None]]:
    """The files under ``top`` that ``spec`` counts as complete, as far as a scan can tell.

    ``marker``: files whose marker exists (never the markers). ``settled``: files whose
    mtime is ``settle`` seconds old; younger ones go to ``young`` (the running watch) and
    are left out. ``closed``/``moved``: files nobody holds open for writing; the others
    will have their close or rename seen by the running watch. With ``arrived_since_ns``,
    only files that arrived (:func:`arrival_ns`) since then; a marker-mode file also when
    its marker did, since that is when it became complete.
    """
    young_ns = time.time_ns() - int(spec.settle * 1e9)

    def unreadable(directory: str, exc: OSError) -> None:
        log.warning("cannot scan directory", directory=directory, error=str(exc))

    walk = walk_files(
        top,
        recursive=spec.recursive,
        ignore=spec.ignore,
        follow=spec.follow_symlinks,
        within=spec.within,
        on_error=unreadable,
    )
    for path, st, target in walk:
        arrived = arrival_ns(st)
        if spec.complete == "marker":
            if path.endswith(spec.marker_suffix):
                continue
            try:
                arrived = max(arrived, arrival_ns(os.lstat(path + spec.marker_suffix)))
            except (OSError, ValueError):
                continue  # no marker: not complete
        if arrived_since_ns is not None and arrived < arrived_since_ns:
            continue  # decided before opening the file: an old tree costs one lstat a file
        if spec.complete == "settled":
            if st.st_mtime_ns > young_ns:
                if young is not None:
                    young(path)
                continue
        elif spec.complete != "marker" and open_for_writing(path):
            continue
        yield path, st, target


def count_dirs(root: str, *, recursive: bool) -> int:
    """Directories inotify must watch for ``root``: itself and every real (non-symlink)
    one below."""
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
