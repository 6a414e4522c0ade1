"""Tasks beyond the core model, for workflow files: ``from triggerd.tasks import ...``.

The tasks and exceptions of lightflow-filesystem (a workflow file runs after
``from lightflow_filesystem import X`` becomes ``from triggerd.tasks import X``), the
:class:`PvTriggerTask` of lightflow-epics (likewise for ``from lightflow_epics import
PvTriggerTask``), and triggerd's :class:`ChunkingTask`.

This package builds only on :mod:`triggerd.flow` and :mod:`triggerd.errors`, on
:mod:`triggerd.sources` for :class:`NotifyTriggerTask` (the daemon's file source, plus
watchdog for Lightflow's raw create, delete and move events), and on pyepics for
:class:`PvTriggerTask` (imported when the task runs).
"""

from .chunking import ChunkingTask
from .file_triggers import NewLineTriggerTask, NotifyTriggerTask
from .fileops import (
    ChmodTask,
    ChownTask,
    CopyTask,
    GlobTask,
    LightflowFilesystemChmodError,
    LightflowFilesystemChownError,
    LightflowFilesystemConfigError,
    LightflowFilesystemCopyError,
    LightflowFilesystemMkdirError,
    LightflowFilesystemMoveError,
    LightflowFilesystemPathError,
    LightflowFilesystemPermissionError,
    LightflowFilesystemRemoveError,
    MakeDirTask,
    MoveTask,
    RemoveTask,
    WalkTask,
)
from .pv_trigger import PvTriggerTask

__all__ = [
    "ChmodTask",
    "ChownTask",
    "ChunkingTask",
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
    "NewLineTriggerTask",
    "NotifyTriggerTask",
    "PvTriggerTask",
    "RemoveTask",
    "WalkTask",
]
