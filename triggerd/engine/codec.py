"""Task data on the wire: cloudpickle, signed with HMAC-SHA256.

A receiver checks the signature before it unpickles, so whoever can write to a pipe, a
broker or a store table cannot make a worker unpickle bytes of their choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

import cloudpickle

from triggerd.errors import ConfigError, TriggerdError

__all__ = ["Codec", "PayloadRejected", "UnpicklableData", "load_or_create_key"]

_MAGIC = b"TD1"
_SIG = hashlib.sha256().digest_size


class PayloadRejected(TriggerdError):
    """A payload is unsigned or its signature does not match: it was not unpickled."""


class UnpicklableData(TriggerdError):
    """A value cannot be pickled; ``path`` says where in the data it is."""

    def __init__(self, path: str, type_name: str, reason: str):
        self.path = path
        self.type_name = type_name
        super().__init__(f"{path} holds a {type_name} that cannot be pickled ({reason})")


class Codec:
    """``dumps``/``loads`` with a shared secret key (at least 16 bytes)."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ConfigError("the HMAC key must be at least 16 bytes long")
        self._key = key

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def dumps(self, obj: Any, *, what: str = "data") -> bytes:
        try:
            body = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            raise _locate_unpicklable(obj, what, exc) from exc
        return _MAGIC + self._sign(body) + body

    def loads(self, blob: bytes) -> Any:
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _SIG:
            raise PayloadRejected("payload is not signed by triggerd: refused to unpickle it")
        signature = blob[len(_MAGIC) : len(_MAGIC) + _SIG]
        body = blob[len(_MAGIC) + _SIG :]
        if not hmac.compare_digest(signature, self._sign(body)):
            raise PayloadRejected(
                "payload signature does not match (tampered, or signed with another key): "
                "refused to unpickle it"
            )
        return pickle.loads(body)


def _locate_unpicklable(obj: Any, path: str, exc: Exception) -> UnpicklableData:
    """Walk containers and task data to name the innermost value that fails to pickle."""
    children: list[tuple[str, Any]] = []
    inner = getattr(obj, "data", None)
    if isinstance(obj, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif isinstance(inner, dict):  # TaskData
        children = [(f"{path}[{k!r}]", v) for k, v in inner.items()]
    elif hasattr(obj, "__iter__") and hasattr(obj, "get_by_index"):  # MultiTaskData
        children = [(f"{path}<dataset {i}>", d) for i, d in enumerate(obj)]
    for child_path, child in children:
        try:
            cloudpickle.dumps(child)
        except Exception as child_exc:  # noqa: BLE001
            return _locate_unpicklable(child, child_path, child_exc)
    return UnpicklableData(path, type(obj).__name__, str(exc))


def load_or_create_key(path: Path) -> bytes:
    """Read the HMAC key file, creating it (mode 0600, 32 random bytes) when missing."""
    path = Path(path)
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
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
        raise ConfigError(f"cannot read the HMAC key file: {exc.strerror}", source=str(path)) from exc
    if len(key) < 16:
        raise ConfigError("the HMAC key file holds fewer than 16 bytes", source=str(path))
    return key
