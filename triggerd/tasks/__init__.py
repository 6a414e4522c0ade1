"""Tasks beyond the core model, for workflow files: ``from triggerd.tasks import ...``.

The tasks and exceptions of lightflow-filesystem (a workflow file runs after
``from lightflow_filesystem import X`` becomes ``from triggerd.tasks import X``), and
triggerd's :class:`ChunkingTask`.

This package builds only on :mod:`triggerd.flow` and :mod:`triggerd.errors` (and on
watchdog for :class:`NotifyTriggerTask`).
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
    "RemoveTask",
    "WalkTask",
]
