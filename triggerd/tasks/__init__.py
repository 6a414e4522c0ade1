"""Tasks beyond the core model, for workflow files: ``from triggerd.tasks import ...``.

This package builds only on :mod:`triggerd.flow` and :mod:`triggerd.errors`.
"""

from .chunking import ChunkingTask

__all__ = ["ChunkingTask"]
