"""Where the one HMAC key comes from: the config, or a private file beside the state.

The daemon (and ``triggerctl run``) takes the key inline from ``security.hmac_key``, else
from ``security.hmac_key_file``, creating that file (mode 0600) at its first start:
:func:`hmac_key`. A worker never creates one (a key of its own would make it refuse every
job as tampered): it waits for the daemon's, :func:`wait_for_hmac_key`. What the key
signs, and how, is :mod:`triggerd.engine.codec`.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from triggerd.config import Settings
from triggerd.errors import ConfigError
from triggerd.log import get_logger
from triggerd.private import check_private, make_private_dir

__all__ = ["hmac_key", "load_or_create_key", "wait_for_hmac_key"]

_log = get_logger(__name__)
_KEY_WAIT_REMINDER = 30.0  # seconds between two log lines of a worker waiting for the key


def hmac_key(settings: Settings) -> bytes:
    """The key that signs task data: inline from the config, else from (or into) its file."""
    if settings.security.hmac_key is not None:
        return settings.security.hmac_key.get_secret_value().encode()
    return load_or_create_key(settings.hmac_key_path)


def wait_for_hmac_key(settings: Settings, *, sleep: Callable[[float], Any] = time.sleep) -> bytes:
    """The daemon's key, as a worker takes it: a worker started at the same moment as a
    new daemon waits for the daemon to write its key file, saying so every half minute."""
    path = settings.hmac_key_path
    waited = 0.0
    while settings.security.hmac_key is None and not path.exists():
        if waited % _KEY_WAIT_REMINDER == 0:
            _log.warning(
                "waiting for the HMAC key file: a worker signs and verifies task data with the "
                "daemon's key, which the daemon writes at its first start; on another host, copy "
                "the daemon's key file here (mode 0600) or set security.hmac_key_file",
                path=str(path),
                waited=waited,
            )
        sleep(1.0)
        waited += 1.0
    return hmac_key(settings)


def load_or_create_key(path: Path) -> bytes:
    """Read the HMAC key file, creating it (mode 0600, 32 random bytes) when missing; a
    key file that group or others may access is refused (as ssh refuses such a key)."""
    path = Path(path)
    try:
        key = path.read_bytes().strip()
        check_private(path, path.stat(), what="HMAC key", key="security.hmac_key_file")
    except FileNotFoundError:
        make_private_dir(path.parent)
        key = secrets.token_hex(32).encode()
        # Written beside it, then linked into place: a worker waiting for the file never
        # reads it half written, and of two processes creating it at once one wins.
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(draft, path)
        except FileExistsError:  # another process created it first: use theirs
            return load_or_create_key(path)
        finally:
            draft.unlink()
        return key
    except OSError as exc:
        raise ConfigError(
            f"cannot read the HMAC key file: {exc.strerror}", source=str(path)
        ) from exc
    if len(key) < 16:
        raise ConfigError("the HMAC key file holds fewer than 16 bytes", source=str(path))
    return key
