"""What to watch: :class:`FileWatch`, one directory and when a file in it is complete.

Apart from :mod:`triggerd.sources.files` because the walking helpers
(:mod:`~triggerd.sources._scan`) need the spec and the source needs them: the dependency
runs files -> _settle -> _scan -> watch, one way.

``FileWatch.complete`` says what "complete" means:

``closed``
    closed after writing (inotify IN_CLOSE_WRITE), or renamed into place (kind ``moved``).
``moved``
    only renamed into place: writers that write ``x.tmp`` and rename it to ``x.h5``.
``settled``
    for network filesystems where inotify sees nothing (NFS, GPFS, Lustre): the root is
    walked every ``poll`` seconds (a bounded walk: see
    :data:`~triggerd.sources._scan.MAX_ENTRIES` and :data:`~triggerd.sources._scan.MAX_DEPTH`),
    and a file whose size + mtime stay unchanged for ``settle`` seconds is complete (kind
    ``settled``).
``marker``
    ``<file><marker_suffix>`` appearing marks ``<file>`` complete (kind ``marker``), in
    either order; the marker itself is never emitted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from triggerd.errors import ConfigError

__all__ = ["COMPLETE_MODES", "FileWatch"]

COMPLETE_MODES = ("closed", "moved", "settled", "marker")


@dataclass(frozen=True)
class FileWatch:
    """One directory to watch and what makes a file in it complete (see the module doc)."""

    root: str  # absolute directory; normalised (no trailing '/')
    recursive: bool = True
    complete: str = "closed"  # closed | moved | settled | marker
    settle: float = 2.0  # settled: seconds size+mtime must be unchanged
    poll: float = 1.0  # settled: polling period
    marker_suffix: str = ".done"  # marker: '<file><suffix>' marks <file> complete
    ignore: tuple[str, ...] = ()  # fnmatch patterns on the basename and each directory under root
    # report links (and walk linked directories) whose target is within
    follow_symlinks: bool = False
    within: tuple[str, ...] = ()  # where a followed link may lead: the rule's roots (default: root)

    def __post_init__(self) -> None:
        if not os.path.isabs(self.root):
            raise ConfigError(
                f"watch root must be an absolute path, not {self.root!r}", key="roots"
            )
        object.__setattr__(self, "root", os.path.normpath(self.root))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(
            self, "within", tuple(os.path.normpath(r) for r in self.within) or (self.root,)
        )
        if self.complete not in COMPLETE_MODES:
            raise ConfigError(
                f"unknown completion {self.complete!r} (allowed: {', '.join(COMPLETE_MODES)})",
                key="complete",
            )
        if not self.settle > 0:
            raise ConfigError(f"settle must be > 0 seconds, not {self.settle!r}", key="settle")
        if not self.poll > 0:
            raise ConfigError(f"poll must be > 0 seconds, not {self.poll!r}", key="poll")
        if not self.marker_suffix or "/" in self.marker_suffix:
            raise ConfigError(
                f"marker_suffix must be a non-empty name suffix, not {self.marker_suffix!r}",
                key="marker_suffix",
            )
