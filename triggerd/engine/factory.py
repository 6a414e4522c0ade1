"""Executors from settings: the embedded default (a local pool) or Celery workers.

Both use the data store ``store.backend`` names (SQLite or MongoDB) and the HMAC key
(:func:`~triggerd.engine.keys.hmac_key`); :func:`make_executor` picks the executor by
``executor.kind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from triggerd.config import Settings
from triggerd.private import make_private_dir
from triggerd.store.factory import store_spec

from .base import EventSink, Executor
from .codec import Codec
from .journal import Journal
from .keys import hmac_key
from .local import LocalExecutor

if TYPE_CHECKING:
    from .celery_executor import CeleryExecutor

__all__ = ["celery_executor", "local_executor", "make_executor"]


def local_executor(
    settings: Settings,
    *,
    extra_workflows: Sequence[Path] = (),
    keep_data: bool | None = None,
    on_event: EventSink | None = None,
    journal: Journal | None = None,
) -> LocalExecutor:
    """A not yet started executor; ``extra_workflows`` are searched before the configured ones."""
    key = hmac_key(settings)
    make_private_dir(settings.paths.state_dir, settings.paths.state_dir_mode)
    spec = store_spec(settings)
    store = spec.create(Codec(key))  # opened by the executor's store keeper, when it answers
    return LocalExecutor(
        workflows=[*extra_workflows, *settings.paths.workflows],
        codec_key=key,
        store=store,
        store_spec=spec,
        workers=settings.executor.workers,
        start_method=settings.executor.start_method,
        log_level=settings.log.level,
        log_format=settings.log.format,
        keep_data=settings.store.keep_data if keep_data is None else keep_data,
        stop_grace=settings.executor.stop_grace,
        give_up_after=settings.executor.give_up_after,
        on_event=on_event,
        journal=journal,
    )


def celery_executor(
    settings: Settings,
    *,
    extra_workflows: Sequence[Path] = (),
    keep_data: bool | None = None,
    on_event: EventSink | None = None,
    journal: Journal | None = None,
) -> CeleryExecutor:
    """A not yet started Celery executor; workers must share the store and the HMAC key.

    ``extra_workflows`` must hold the same files as the workers' directories: a worker
    refuses a task whose workflow file differs from the submitter's.
    """
    from .celery_executor import CeleryExecutor  # Celery loads only when it is used

    # jobs, messages and the store's blobs are signed with it, as by the workers
    key = hmac_key(settings)
    make_private_dir(settings.paths.state_dir, settings.paths.state_dir_mode)
    codec = Codec(key)
    store = store_spec(settings).create(codec)  # opened by the executor's store keeper
    return CeleryExecutor(
        workflows=[*extra_workflows, *settings.paths.workflows],
        celery=settings.celery,
        codec=codec,
        store=store,
        keep_data=settings.store.keep_data if keep_data is None else keep_data,
        stop_grace=settings.executor.stop_grace,
        give_up_after=settings.executor.give_up_after,
        on_event=on_event,
        journal=journal,
    )


def make_executor(
    settings: Settings,
    *,
    extra_workflows: Sequence[Path] = (),
    keep_data: bool | None = None,
    on_event: EventSink | None = None,
    journal: Journal | None = None,
) -> Executor:
    """The executor ``executor.kind`` names ("local" or "celery"), not yet started.
    ``journal``: where runs are journaled, so they resume after a crash (the daemon's)."""
    factory = celery_executor if settings.executor.kind == "celery" else local_executor
    return factory(
        settings,
        extra_workflows=extra_workflows,
        keep_data=keep_data,
        on_event=on_event,
        journal=journal,
    )
