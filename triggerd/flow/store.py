"""The data store API a task sees (``store`` argument): one document per run.

Backends live in :mod:`triggerd.store`; this module only names the API.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DataStoreDocument", "DataStoreDocumentSection"]


class DataStoreDocumentSection:
    """The two sections of a run's document."""

    Meta = "meta"
    Data = "data"


class DataStoreDocument(Protocol):
    """A run's persistent document. Keys use dot notation (``'a.b.c'``).

    Unlike Lightflow, ``get`` returns ``default`` for a missing key and ``None`` is stored
    as a value.
    """

    def get(
        self, key: str, default: Any = None, *, section: str = DataStoreDocumentSection.Data
    ) -> Any: ...

    def set(
        self, key: str, value: Any, *, section: str = DataStoreDocumentSection.Data
    ) -> bool: ...

    def push(
        self, key: str, value: Any, *, section: str = DataStoreDocumentSection.Data
    ) -> bool: ...

    def extend(
        self, key: str, values: list, *, section: str = DataStoreDocumentSection.Data
    ) -> bool: ...
