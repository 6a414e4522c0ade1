"""What crosses Redis, pipes and stores, signed with the one HMAC-SHA256 key.

- Task data: cloudpickle, signed together with what it belongs to (``bind``: its run and
  the task that made it: :func:`output_of`, :func:`dag_data_of`; a data store binds its
  values to their run).
  A receiver checks the signature before it unpickles, so whoever can write to a pipe, a
  broker or a store table cannot make a process unpickle bytes of their choosing, nor
  move signed data from one run or task to another.
- Messages (jobs, completions, signals, replies): JSON objects sealed with an HMAC over
  their kind and their canonical encoding (:meth:`Codec.seal`), checked before any field
  is acted on (:meth:`Codec.unseal`).
- Tags: an HMAC over a few strings (:meth:`Codec.tag`), e.g. the value of a stop flag, so
  a flag set by anyone else is not a stop.

Where the key comes from (config, key file, a worker's wait for it): :mod:`.keys`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any

import cloudpickle

from triggerd.errors import ConfigError, TriggerdError

__all__ = [
    "Codec",
    "PayloadRejected",
    "UnpicklableData",
    "dag_data_of",
    "output_of",
]

_MAGIC = b"TD2"  # 2: the signature also covers what the data belongs to (``bind``)
_UNBOUND_MAGIC = b"TD1"  # signed, but valid anywhere: refused since TD2
_SIG = hashlib.sha256().digest_size
_TAG = b"triggerd-tag/1"
_MESSAGE = "message"


def output_of(run_id: str, dag: str, task: str) -> str:
    """What a task's output is bound to: its run, its DAG (running name) and the task."""
    return "\x00".join(("output", run_id, dag, task))


def dag_data_of(run_id: str) -> str:
    """What data handed to a DAG a task starts (``start_dag``) is bound to: the run."""
    return "\x00".join(("dag-data", run_id))


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
            raise ConfigError(
                "the HMAC key must be at least 16 bytes long", key="security.hmac_key"
            )
        self._key = key

    def _sign(self, bind: str, body: bytes) -> bytes:
        context = bind.encode("utf-8", "surrogateescape")
        return hmac.new(
            self._key, len(context).to_bytes(4, "big") + context + body, hashlib.sha256
        ).digest()

    def dumps(self, obj: Any, *, bind: str, what: str = "data") -> bytes:
        """``obj`` pickled and signed for ``bind`` (what it belongs to: see the module doc);
        ``what`` names it in the error if part of it cannot be pickled."""
        try:
            body = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            raise _locate_unpicklable(obj, what, exc) from exc
        return _MAGIC + self._sign(bind, body) + body

    def loads(self, blob: bytes, *, bind: str) -> Any:
        """The object in ``blob``, unpickled only if it was signed with this key for ``bind``."""
        if blob.startswith(_UNBOUND_MAGIC):
            raise PayloadRejected(
                "payload signed by an older triggerd, for no run in particular: "
                "refused to unpickle it"
            )
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _SIG:
            raise PayloadRejected("payload is not signed by triggerd: refused to unpickle it")
        signature = blob[len(_MAGIC) : len(_MAGIC) + _SIG]
        body = blob[len(_MAGIC) + _SIG :]
        if not hmac.compare_digest(signature, self._sign(bind, body)):
            raise PayloadRejected(
                "payload signature does not match (tampered, signed with another key, or data of "
                "another run or task): refused to unpickle it"
            )
        return pickle.loads(body)

    def tag(self, *parts: str) -> str:
        """An HMAC (hex) over ``parts``: proof that a holder of the key wrote them."""
        text = "\x00".join(parts).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, _TAG + b"\x00" + text, hashlib.sha256).hexdigest()

    def seal(self, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        """``message`` with ``sig``: an HMAC over ``kind`` and the message's canonical JSON
        (sorted keys, no spaces, ASCII), so every field is covered, in any key order."""
        body = {k: v for k, v in message.items() if k != "sig"}
        return {**body, "sig": self.tag(_MESSAGE, kind, _canonical(body))}

    def unseal(self, kind: str, message: Any) -> dict[str, Any]:
        """``message`` without its ``sig``, if that is the seal of a ``kind`` message;
        :class:`PayloadRejected` otherwise (unsigned, forged, tampered, another kind)."""
        if not isinstance(message, dict):
            raise PayloadRejected(
                f"a {kind} message must be a JSON object, not {type(message).__name__}: refused"
            )
        signature = message.get("sig")
        if not isinstance(signature, str) or not signature.isascii():
            raise PayloadRejected(f"unsigned {kind} message: refused")
        body = {k: v for k, v in message.items() if k != "sig"}
        try:
            expected = self.tag(_MESSAGE, kind, _canonical(body))
        except (TypeError, ValueError) as exc:
            raise PayloadRejected(
                f"{kind} message cannot be encoded canonically ({exc}): refused"
            ) from None
        if not hmac.compare_digest(signature, expected):
            raise PayloadRejected(
                f"{kind} message signature does not match (forged, tampered, or signed with "
                "another key): refused"
            )
        return body


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


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
