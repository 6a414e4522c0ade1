"""What every data store backend shares: the errors, keys, the value encoder, path walks.

A backend stores a section as a tree of plain values and *markers*: stand-ins for what
its format cannot hold exactly (a pickled object in a signed blob, a datetime, a special
float). How a marker looks is the backend's own (a ``{"$blob": id}`` dict in SQLite's
JSON, an ObjectId in MongoDB); it tells these helpers through a ``MarkerKind`` function
that names a marker's kind, and None for anything that is not a marker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from triggerd.errors import InternalError, TriggerdError

__all__ = [
    "DATA",
    "INDEX",
    "MISSING",
    "SECTIONS",
    "BlobCodec",
    "BlobMissing",
    "DocumentBase",
    "DocumentExists",
    "DocumentTooLarge",
    "DocumentMissing",
    "KeyConflict",
    "MarkerKind",
    "ValueEncoder",
    "blob_binding",
    "check_appendable",
    "check_section",
    "decode_tree",
    "kind_of",
    "lookup",
    "markers",
    "slot",
    "split_key",
]

# Spelled here rather than imported: importing triggerd.flow.store would load the whole
# model (and networkx) into triggerctl. They equal triggerd.flow.store's
# DataStoreDocumentSection.Meta/.Data; a test checks it.
DATA = "data"
SECTIONS = ("meta", DATA)
INDEX = re.compile(r"[0-9]+")
FIELD = re.compile(r"[^$.][^.]*")  # what one dot-notation segment can name
MISSING: Any = object()

MarkerKind = Callable[[Any], "str | None"]


class DocumentExists(TriggerdError):
    """``add`` was given a run id that already has a document (Lightflow's DataStoreIDExists)."""


class DocumentMissing(TriggerdError):
    """No document for this run id: never added, or removed when the run's store was cleared."""


class KeyConflict(TriggerdError):
    """A key runs into a value of the wrong shape: push onto a non-list, set through a scalar."""


class DocumentTooLarge(TriggerdError):
    """A write would grow the run's document past what the backend holds (MongoDB: 16 MiB)."""


class BlobMissing(TriggerdError):
    """A section references a blob that is gone: the store was edited or damaged."""


class BlobCodec(Protocol):
    """What the store needs of ``triggerd.engine.codec.Codec``; injected to keep layering."""

    def dumps(self, obj: Any, *, bind: str, what: str) -> bytes: ...

    def loads(self, blob: bytes, *, bind: str) -> Any: ...


def blob_binding(run_id: str) -> str:
    """What a blob of a run's document is signed for: that run, so a blob copied into
    another run's document is refused, not unpickled."""
    return "\x00".join(("store", run_id))


def split_key(key: str) -> list[str]:
    """Dot notation to segments; ``$`` segments are refused so a key cannot forge a marker."""
    parts = key.split(".") if isinstance(key, str) else [""]
    if not all(FIELD.fullmatch(p) for p in parts):
        raise ValueError(f"invalid store key {key!r}: dot-separated, non-empty, no leading '$'")
    return parts


def check_section(section: str) -> str:
    if section not in SECTIONS:
        raise ValueError(f"section must be 'meta' or 'data', not {section!r}")
    return section


class ValueEncoder:
    """Turns a value into plain JSON/BSON types and the backend's markers.

    Exact types, not isinstance: an IntEnum or np.float64 goes to a blob and comes back as
    itself instead of silently becoming a plain int or float. A backend says what its
    format holds (``holds``, ``plain_key``) and how to mark the rest.
    """

    def __init__(self, codec: BlobCodec, run_id: str):
        self.codec = codec
        self.bind = blob_binding(run_id)

    def __call__(self, value: Any, what: str) -> Any:
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is int or kind is str:
            return value if self.holds(value) else self.blob(value, what)
        if kind is float:
            return value if math.isfinite(value) else self.special_float(value)
        if kind is datetime:
            return self.datetime(value)
        if kind is list:
            return [self(v, f"{what}[{i}]") for i, v in enumerate(value)]
        if kind is dict and all(type(k) is str and self.plain_key(k) for k in value):
            return {k: self(v, f"{what}[{k!r}]") for k, v in value.items()}
        return self.blob(value, what)

    def holds(self, value: int | str) -> bool:
        """Whether the format stores this int or str exactly."""
        return True

    def plain_key(self, key: str) -> bool:
        """Whether a dict key can be stored as it is (else the dict goes to a blob)."""
        return FIELD.fullmatch(key) is not None

    def special_float(self, value: float) -> Any:
        return value

    def datetime(self, value: datetime) -> Any:
        raise NotImplementedError

    def blob(self, value: Any, what: str) -> Any:
        """The marker of a signed pickle of ``value``, kept for the same write."""
        raise NotImplementedError


def kind_of(node: Any, marker_kind: MarkerKind) -> str:
    return marker_kind(node) or type(node).__name__


def lookup(tree: Any, parts: list[str], default: Any, marker_kind: MarkerKind) -> Any:
    """The stored node at ``parts`` (list segments are indexes), or ``default``."""
    node = tree
    for part in parts:
        if isinstance(node, dict) and marker_kind(node) is None and part in node:
            node = node[part]
        elif isinstance(node, list) and INDEX.fullmatch(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def slot(
    tree: dict, parts: list[str], key: str, marker_kind: MarkerKind
) -> tuple[dict | list, Any, Any]:
    """Where a write lands: (container, index, current value or MISSING). Intermediate
    dicts are created, as Mongo's ``$set``/``$push`` do; a path through a scalar, a
    marker or past the end of a list raises :class:`KeyConflict`."""
    node: Any = tree
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, dict) and marker_kind(node) is None:
            if last:
                return node, part, node.get(part, MISSING)
            node = node.setdefault(part, {})
        elif isinstance(node, list) and INDEX.fullmatch(part) and int(part) < len(node):
            if last:
                return node, int(part), node[int(part)]
            node = node[int(part)]
        else:
            where = ".".join(parts[:depth])
            has = (
                f"a list without index {part}"
                if isinstance(node, list)
                else f"a {kind_of(node, marker_kind)}"
            )
            raise KeyConflict(f"store key '{key}': '{where}' holds {has}, not a dict")
    raise InternalError("a store key without segments got past split_key")


def check_appendable(current: Any, key: str, marker_kind: MarkerKind) -> None:
    """push/extend need a list, or nothing yet, at the key."""
    if current is not MISSING and not isinstance(current, list):
        kind = kind_of(current, marker_kind)
        raise KeyConflict(f"store key '{key}' holds a {kind}, not a list: cannot push")


def decode_tree(node: Any, marker_kind: MarkerKind, unmark: Callable[[Any], Any]) -> Any:
    """A stored node back as the value it was: ``unmark`` turns each marker back."""
    if marker_kind(node) is not None:
        return unmark(node)
    if isinstance(node, list):
        return [decode_tree(v, marker_kind, unmark) for v in node]
    if isinstance(node, dict):
        return {k: decode_tree(v, marker_kind, unmark) for k, v in node.items()}
    return node


def markers(node: Any, marker_kind: MarkerKind) -> Iterator[Any]:
    """Every marker in a stored node, e.g. so replacing it can delete the blobs it names."""
    if marker_kind(node) is not None:
        yield node
    elif isinstance(node, dict):
        for child in node.values():
            yield from markers(child, marker_kind)
    elif isinstance(node, list):
        for child in node:
            yield from markers(child, marker_kind)


class DocumentBase:
    """One run's document; implements :class:`triggerd.flow.store.DataStoreDocument`.

    A backend's document adds ``get``, ``set_many`` and ``_append``; the rest is here."""

    def __init__(self, store: Any, run_id: str):
        self._store = store
        self.run_id = run_id

    def set(self, key: str, value: Any, *, section: str = DATA) -> bool:
        """Store ``value`` at ``key``; blobs of the value it replaces are deleted."""
        return self.set_many({key: value}, section=section)

    def set_many(self, values: Mapping[str, Any], *, section: str = DATA) -> bool:
        raise NotImplementedError

    def push(self, key: str, value: Any, *, section: str = DATA) -> bool:
        """Append ``value`` to the list at ``key``, creating the list when the key is missing."""
        return self._append(key, [value], section)

    def extend(self, key: str, values: list, *, section: str = DATA) -> bool:
        """Append each of ``values``; False (nothing written) unless it is a list or tuple."""
        if not isinstance(values, (list, tuple)):
            return False
        return self._append(key, list(values), section)

    def _append(self, key: str, values: list, section: str) -> bool:
        raise NotImplementedError
