"""lightflow-filesystem's file tasks: list, walk, copy, move, remove, create, chmod, chown.

Same names and constructor signatures as ``lightflow_filesystem``; a workflow file runs
after ``from lightflow_filesystem import X`` becomes ``from triggerd.tasks import X``.
Every argument but the callbacks may be a value or a callable ``(data, store) -> value``,
evaluated when the task runs. A path may be a ``str`` or an ``os.PathLike``; where a list
of paths is accepted, a single path is a list of one.

Differences from lightflow-filesystem 1.6.1, on purpose:

* Errors are raised, never swallowed: RemoveTask, ChmodTask and ChownTask raise
  :class:`LightflowFilesystemRemoveError` / ``ChmodError`` / ``ChownError`` naming the
  path (Lightflow built the error and dropped it). A raised error fails the task and so
  the workflow.
* Every path must be absolute (:class:`LightflowFilesystemPathError`), for files as well
  as directories and for CopyTask too: a worker's working directory is nothing a
  workflow can rely on. Lightflow checked only some of them.
* CopyTask copies a directory *into* an existing destination directory, as
  ``destination/<name of the source>``, merging with what is there (Lightflow's
  ``copytree`` failed whenever the destination existed, which it required).
* ChmodTask and ChownTask leave symbolic links found inside a directory tree alone
  (Lightflow followed them, changing files outside the tree); a path given directly
  is followed as before. The top directory is changed last, so a mode without the
  ``x`` bit does not lock the task out of the tree it is still changing.
* MakeDirTask raises MkdirError if the path exists but is not a directory.
* GlobTask and WalkTask report names in sorted order (Lightflow: directory order).
"""

from __future__ import annotations

import glob
import grp
import logging
import os
import pwd
import shutil
from collections.abc import Callable, Iterator
from typing import Any

from triggerd.flow import Action, BaseTask, LightflowException, TaskParameters

__all__ = [
    "ChmodTask",
    "ChownTask",
    "CopyTask",
    "GlobTask",
    "LightflowFilesystemChmodError",
    "LightflowFilesystemChownError",
    "LightflowFilesystemConfigError",
    "LightflowFilesystemCopyError",
    "LightflowFilesystemMkdirError",
    "LightflowFilesystemMoveError",
    "LightflowFilesystemPathError",
    "LightflowFilesystemPermissionError",
    "LightflowFilesystemRemoveError",
    "MakeDirTask",
    "MoveTask",
    "RemoveTask",
    "WalkTask",
]

log = logging.getLogger(__name__)


# -- exceptions ---------------------------------------------------------------------------


class LightflowFilesystemConfigError(LightflowException):
    """A task argument is missing or invalid (e.g. ChownTask without user and group)."""


class LightflowFilesystemPathError(LightflowException):
    """A path is not absolute, does not exist, or is not of the kind the task needs."""


class LightflowFilesystemCopyError(LightflowException):
    """Copying a file or a directory failed."""


class LightflowFilesystemMoveError(LightflowException):
    """Moving a file or a directory failed."""


class LightflowFilesystemMkdirError(LightflowException):
    """Creating a directory failed."""


class LightflowFilesystemChownError(LightflowException):
    """Changing the owner of a path failed, or the user or group does not exist."""


class LightflowFilesystemChmodError(LightflowException):
    """Changing the permissions of a path failed."""


class LightflowFilesystemPermissionError(LightflowException):
    """Kept for import compatibility: lightflow-filesystem exports it but never raises it."""


class LightflowFilesystemRemoveError(LightflowException):
    """Removing a file or a directory failed."""


# -- helpers --------------------------------------------------------------------------------


def _path(value: Any, what: str = "path") -> str:
    """``value`` as an absolute path string, else PathError."""
    if not isinstance(value, (str, os.PathLike)):
        raise LightflowFilesystemPathError(
            f"The {what} must be a str or path, not {type(value).__name__}: {value!r}"
        )
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise LightflowFilesystemPathError(f"The {what} must be a non-empty str: {value!r}")
    if not os.path.isabs(path):
        raise LightflowFilesystemPathError(f"The {what} is not an absolute path: {path}")
    return path


def _paths(value: Any, what: str = "path") -> list[str]:
    """One path or a list (tuple) of paths, as a list of absolute path strings."""
    if isinstance(value, (str, os.PathLike)):
        return [_path(value, what)]
    if isinstance(value, (list, tuple)):
        return [_path(item, what) for item in value]
    raise LightflowFilesystemPathError(
        f"The {what}s must be a path or a list of paths, not {type(value).__name__}: {value!r}"
    )


def _tree(path: str, recursive: bool, only_dirs: bool) -> Iterator[str]:
    """What Chmod/Chown change under directory ``path`` (not ``path`` itself), deepest first.

    Recursive: every file (unless ``only_dirs``) and subdirectory of the tree; else the
    files directly in ``path`` (unless ``only_dirs``). Symbolic links are left out.
    """
    if not recursive:
        if only_dirs:
            return
        with os.scandir(path) as entries:
            names = sorted(e.path for e in entries if not e.is_symlink() and not e.is_dir())
        yield from names
        return

    def fail(err: OSError) -> None:
        raise err

    for root, dirs, files in os.walk(path, topdown=False, onerror=fail):
        if not only_dirs:
            for name in sorted(files):
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    yield full
        for name in sorted(dirs):
            full = os.path.join(root, name)
            if not os.path.islink(full):
                yield full


# -- listing ------------------------------------------------------------------------------


class GlobTask(BaseTask):
    """List the files matching ``pattern`` in one or more directories.

    Calls ``callback(files, data, store, signal, context)`` once with the combined list:
    for each path in turn, the sorted matches of ``glob(join(path, pattern))``
    (``**`` matches across directories when ``recursive``); absolute paths, or only
    the base names with ``return_abs=False``. A directory that does not exist matches
    nothing. ``callback`` may be None (then the task only checks its arguments).
    """

    def __init__(
        self,
        name: str,
        paths: Any,
        callback: Callable | None,
        pattern: Any = "*",
        recursive: Any = False,
        return_abs: Any = True,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        self.params = TaskParameters(
            paths=paths, pattern=pattern, recursive=recursive, return_abs=return_abs
        )
        self._callback = callback

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        files: list[str] = []
        for path in _paths(params.paths):
            found = sorted(
                glob.glob(
                    os.path.join(glob.escape(path), params.pattern),
                    recursive=bool(params.recursive),
                )
            )
            files.extend(found if params.return_abs else [os.path.basename(f) for f in found])
        if self._callback is not None:
            self._callback(files, data, store, signal, context)
        return Action(data)


class WalkTask(BaseTask):
    """Call ``callback(entry, data, store, signal, context)`` for every file of a directory.

    ``entry`` is an :class:`os.DirEntry`; everything that is not a directory counts as a
    file (a symbolic link to a directory too, and it is not followed). With
    ``recursive=True`` the subdirectories are walked as well, depth first, in name
    order. ``path`` must be an existing directory (else PathError).
    """

    def __init__(
        self,
        name: str,
        path: Any,
        callback: Callable | None,
        recursive: Any = False,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        self.params = TaskParameters(path=path, recursive=recursive)
        self._callback = callback

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        path = _path(params.path)
        if not os.path.isdir(path):
            raise LightflowFilesystemPathError(f"The path is not a directory: {path}")
        self._walk(path, bool(params.recursive), (data, store, signal, context))
        return Action(data)

    def _walk(self, path: str, recursive: bool, args: tuple) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    self._walk(entry.path, recursive, args)
            elif self._callback is not None:
                self._callback(entry, *args)


# -- copy and move ------------------------------------------------------------------------


class CopyTask(BaseTask):
    """Copy files and directories to ``destination``.

    ``sources`` is a path or a list of paths. A file is copied with its metadata
    (``shutil.copy2``) to ``destination``: into it if it is a directory, else as that
    name. A directory is copied *into* ``destination``, which must be an existing
    directory (else PathError), as ``destination/<its name>``; files already there are
    overwritten, others kept. Any OS error raises CopyError naming the source.
    """

    def __init__(
        self,
        name: str,
        sources: Any,
        destination: Any,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        self.params = TaskParameters(sources=sources, destination=destination)

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        destination = _path(params.destination, "destination path")
        for source in _paths(params.sources, "source path"):
            log.info("Copy %s to %s", source, destination)
            if os.path.isdir(source):
                if not os.path.isdir(destination):
                    raise LightflowFilesystemPathError(
                        f"The destination of the directory {source} is not an existing directory: "
                        f"{destination}"
                    )
                target = os.path.join(destination, os.path.basename(os.path.normpath(source)))
                real_source = os.path.realpath(source)
                if os.path.commonpath([real_source, os.path.realpath(target)]) == real_source:
                    raise LightflowFilesystemCopyError(
                        f"Cannot copy the directory {source} into itself ({target})"
                    )
                try:
                    shutil.copytree(source, target, dirs_exist_ok=True)
                except OSError as err:
                    raise LightflowFilesystemCopyError(
                        f"Cannot copy {source} to {target}: {err}"
                    ) from err
            else:
                try:
                    shutil.copy2(source, destination)
                except OSError as err:
                    raise LightflowFilesystemCopyError(
                        f"Cannot copy {source} to {destination}: {err}"
                    ) from err
        return Action(data)


class MoveTask(BaseTask):
    """Move files and directories to ``destination`` (``shutil.move``).

    A directory source needs an existing destination directory (else PathError) and ends
    up inside it; a file moves into ``destination`` if that is a directory, else to that
    name. Any OS error (e.g. the target already exists in the destination directory)
    raises MoveError naming the source.
    """

    def __init__(
        self,
        name: str,
        sources: Any,
        destination: Any,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        self.params = TaskParameters(sources=sources, destination=destination)

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        destination = _path(params.destination, "destination path")
        for source in _paths(params.sources, "source path"):
            log.info("Move %s to %s", source, destination)
            if os.path.isdir(source) and not os.path.isdir(destination):
                raise LightflowFilesystemPathError(
                    f"The destination of the directory {source} is not an existing directory: "
                    f"{destination}"
                )
            try:
                shutil.move(source, destination)
            except OSError as err:
                raise LightflowFilesystemMoveError(
                    f"Cannot move {source} to {destination}: {err}"
                ) from err
        return Action(data)


# -- remove and create --------------------------------------------------------------------


class RemoveTask(BaseTask):
    """Remove files and whole directory trees.

    A directory is removed with everything in it; a file or a symbolic link (also one
    to a directory: the link goes, its target stays) is unlinked. A path that does not
    exist, or any other OS error, raises RemoveError naming the path.
    """

    def __init__(
        self,
        name: str,
        paths: Any,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        self.params = TaskParameters(paths=paths)

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> None:
        params = self.params.eval(data, store)
        for path in _paths(params.paths):
            log.info("Remove %s", path)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except OSError as err:
                raise LightflowFilesystemRemoveError(f"Cannot remove {path}: {err}") from err
        return None


class MakeDirTask(BaseTask):
    """Create directories, with their missing parents; an existing directory is kept.

    A path that exists but is not a directory, or any OS error, raises MkdirError.
    """

    def __init__(
        self,
        name: str,
        paths: Any,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        self.params = TaskParameters(paths=paths)

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        for path in _paths(params.paths):
            if os.path.isdir(path):
                log.info("Directory %s already exists. Skip creation.", path)
                continue
            try:
                os.makedirs(path)
            except OSError as err:
                raise LightflowFilesystemMkdirError(
                    f"Cannot create the directory {path}: {err}"
                ) from err
        return Action(data)


# -- permissions and ownership ------------------------------------------------------------


def _mode(permission: Any) -> int:
    """An octal string such as ``'755'`` (as in Lightflow), or an int mode such as 0o755."""
    if isinstance(permission, bool):
        raise LightflowFilesystemConfigError(f"Invalid permission {permission!r}")
    if isinstance(permission, int):
        mode = permission
    elif isinstance(permission, str):
        try:
            mode = int(permission, 8)
        except ValueError:
            raise LightflowFilesystemConfigError(
                f"Invalid permission {permission!r}: expected an octal string such as '755'"
            ) from None
    else:
        raise LightflowFilesystemConfigError(
            f"Invalid permission {permission!r}: expected an octal string such as '755'"
        )
    if not 0 <= mode <= 0o7777:
        raise LightflowFilesystemConfigError(f"Invalid permission {permission!r}: out of range")
    return mode


def _apply(
    paths: list[str],
    recursive: bool,
    only_dirs: bool,
    change: Callable[[str], None],
    error: type[LightflowException],
    verb: str,
) -> None:
    """Call ``change`` on every path (directories: their tree first, then themselves)."""
    for path in paths:
        current = path
        try:
            if os.path.isdir(path):
                for current in _tree(path, recursive, only_dirs):
                    change(current)
                current = path
            change(path)
        except OSError as err:
            raise error(f"Cannot {verb} {err.filename or current}: {err.strerror or err}") from err


class ChmodTask(BaseTask):
    """Change the permissions of files and directories.

    ``permission`` is an octal string (``'755'``) or an int mode (``0o755``). A file path
    is changed; a directory path is changed together with, when ``recursive`` (default),
    every file and subdirectory below it, else the files directly in it.
    ``only_dirs=True`` leaves files out (except a file given directly). Any OS error
    raises ChmodError naming the path.
    """

    def __init__(
        self,
        name: str,
        paths: Any,
        permission: Any,
        recursive: Any = True,
        only_dirs: Any = False,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        if not callable(permission):
            _mode(permission)  # a wrong mode is a definition error: fail on load
        self.params = TaskParameters(
            paths=paths, permission=permission, recursive=recursive, only_dirs=only_dirs
        )

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> None:
        params = self.params.eval(data, store)
        mode = _mode(params.permission)
        paths = _paths(params.paths)
        log.info("Change the permissions of %s to %o", ", ".join(paths), mode)
        _apply(
            paths,
            bool(params.recursive),
            bool(params.only_dirs),
            lambda p: os.chmod(p, mode),
            LightflowFilesystemChmodError,
            f"change the permissions to {mode:o} of",
        )
        return None


def _owner_id(value: Any, kind: str, paths: list[str]) -> int:
    """The numeric id of a user or group given by name or id; -1 (unchanged) for None."""
    if value is None:
        return -1
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return pwd.getpwnam(value).pw_uid if kind == "user" else grp.getgrnam(value).gr_gid
        except KeyError:
            raise LightflowFilesystemChownError(
                f"Cannot change the owner of {', '.join(paths)}: there is no {kind} {value!r}"
            ) from None
    raise LightflowFilesystemConfigError(f"The {kind} must be a name or an id, not {value!r}")


class ChownTask(BaseTask):
    """Change the owning user and/or group of files and directories.

    ``user`` and ``group`` are names or numeric ids; at least one is required
    (ConfigError). An unknown user or group raises ChownError before anything changes.
    Traversal is as for :class:`ChmodTask`; any OS error raises ChownError naming the
    path.
    """

    def __init__(
        self,
        name: str,
        paths: Any,
        user: Any = None,
        group: Any = None,
        recursive: Any = True,
        only_dirs: Any = False,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        if user is None and group is None:
            raise LightflowFilesystemConfigError(
                "At least the user or the group has to be specified"
            )
        self.params = TaskParameters(
            paths=paths, user=user, group=group, recursive=recursive, only_dirs=only_dirs
        )

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> None:
        params = self.params.eval(data, store)
        if params.user is None and params.group is None:
            raise LightflowFilesystemConfigError(
                "At least the user or the group has to be specified"
            )
        paths = _paths(params.paths)
        uid = _owner_id(params.user, "user", paths)
        gid = _owner_id(params.group, "group", paths)
        log.info("Change the owner of %s to %s:%s", ", ".join(paths), params.user, params.group)
        owner = ":".join(str(x) for x in (params.user, params.group) if x is not None)
        _apply(
            paths,
            bool(params.recursive),
            bool(params.only_dirs),
            lambda p: os.chown(p, uid, gid),
            LightflowFilesystemChownError,
            f"change the owner to {owner} of",
        )
        return None
