"""The embedded default: a local executor with the SQLite data store, from settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from triggerd.config import Settings
from triggerd.store.sqlite import SqliteDataStore

from .codec import Codec, load_or_create_key
from .local import EventSink, LocalExecutor

__all__ = ["hmac_key", "local_executor"]


def hmac_key(settings: Settings) -> bytes:
    """The key that signs task data: inline from the config, else from (or into) its file."""
    if settings.security.hmac_key is not None:
        return settings.security.hmac_key.get_secret_value().encode()
    return load_or_create_key(settings.hmac_key_path)


def local_executor(
    settings: Settings,
    *,
    extra_workflows: Sequence[Path] = (),
    keep_data: bool | None = None,
    on_event: EventSink | None = None,
) -> LocalExecutor:
    """A not yet started executor; ``extra_workflows`` are searched before the configured ones."""
    key = hmac_key(settings)
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteDataStore(settings.store_path, Codec(key)).open()
    return LocalExecutor(
        workflows=[*extra_workflows, *settings.paths.workflows],
        codec_key=key,
        store=store,
        store_path=settings.store_path,
        workers=settings.executor.workers,
        start_method=settings.executor.start_method,
        keep_data=settings.store.keep_data if keep_data is None else keep_data,
        stop_grace=settings.executor.stop_grace,
        on_event=on_event,
    )
