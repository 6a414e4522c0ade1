"""Where events come from: files (:mod:`~triggerd.sources.files`) and EPICS PVs
(:mod:`~triggerd.sources.pv`). Sources only produce events; they import neither the engine
nor the daemon.

The file source's names are exported here: :class:`FileSource` and what it watches,
:class:`FileWatch` (with its :data:`COMPLETE_MODES`), and the two tests of a path against
roots that rules use as the source does (:func:`inside`, :func:`relative`).
"""

from triggerd.sources._scan import inside, relative
from triggerd.sources.files import FileSource
from triggerd.sources.watch import COMPLETE_MODES, FileWatch

__all__ = ["COMPLETE_MODES", "FileSource", "FileWatch", "inside", "relative"]
