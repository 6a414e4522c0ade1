"""What sources produce: frozen, typed events. No watchdog or pyepics object goes further.

A source turns the outside world into these; rules match them; nothing downstream
knows which library saw the change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["FileEvent"]


@dataclass(frozen=True)
class FileEvent:
    """A file that is complete: closed after writing, moved into place, settled, or marked.

    ``path`` and ``root`` are absolute; ``kind`` says how completion was seen:
    ``closed``, ``moved``, ``settled``, ``marker``, or ``existing`` (found by a scan:
    catch-up at start-up or a rescan after an inotify overflow). ``link_to``: when
    ``path`` is a symbolic link (reported only by a watch that follows links), the file
    it resolves to; size, mtime and inode are that file's.
    """

    path: str
    root: str
    size: int
    mtime_ns: int
    inode: int
    kind: str = "closed"
    seen_at: float = 0.0
    link_to: str | None = None

    @property
    def relative(self) -> str:
        """The path under its watch root, with '/' separators."""
        return os.path.relpath(self.path, self.root)

    @property
    def identity(self) -> tuple[str, int, int, int]:
        """What makes a version of a file: a rewrite changes size or mtime, a replace the inode."""
        return (self.path, self.inode, self.size, self.mtime_ns)

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "file",
            "path": self.path,
            "root": self.root,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "inode": self.inode,
            "kind": self.kind,
            "seen_at": self.seen_at,
            **({"link_to": self.link_to} if self.link_to is not None else {}),
        }
