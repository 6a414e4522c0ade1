"""Files only the service user may read: the state directory, its databases, secrets.

Under systemd the unit sets the state directory's mode (StateDirectoryMode) and a umask;
run by hand, a umask of 022 made the state directory 0755 and its databases 0644, so
any local user could read runs, events and the data store. Here a directory triggerd
creates gets ``mode`` (default 0700) and every file it creates there is 0600, whatever
the umask; an existing directory keeps the mode its owner gave it.

Secrets (the HMAC key, the API token) are refused when group or others may access them,
as ssh refuses a private key: a key others can read is no longer a secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from triggerd.errors import ConfigError

__all__ = ["DIR_MODE", "check_private", "create_private_file", "make_private_dir", "read_secret"]

DIR_MODE = 0o700


def make_private_dir(path: Path, mode: int = DIR_MODE) -> None:
    """Create ``path`` (and missing parents) with ``mode``; an existing one is left as it is."""
    path = Path(path)
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return  # created meanwhile by another process
    os.chmod(path, mode)  # mkdir's mode is masked by the umask


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (before SQLite opens it:
    its journal and WAL files take the database file's mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def read_secret(path: Path, *, what: str, key: str) -> str:
    """The stripped text of a secret file; :class:`ConfigError` naming ``key`` when it is
    missing, unreadable, empty, or accessible to group or others."""
    path = Path(path)
    try:
        st = os.stat(path)
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"the {what} file does not exist", source=str(path), key=key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the {what} file: {exc}", source=str(path), key=key
        ) from None
    check_private(path, st, what=what, key=key)
    if not text:
        raise ConfigError(f"the {what} file is empty", source=str(path), key=key)
    return text


def check_private(path: Path, st: os.stat_result, *, what: str, key: str) -> None:
    """Refuse a secret file that group or others may read, write or execute."""
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"the {what} file is accessible to group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): make it private with: chmod 600 {path}",
            source=str(path),
            key=key,
        )
