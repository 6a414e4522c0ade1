"""A task that calls a Python function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .action import Action
from .task import BaseTask

__all__ = ["PythonTask"]


class PythonTask(BaseTask):
    """``callback(data, store, signal, context)``; it may return an :class:`Action`."""

    def __init__(
        self,
        name: str,
        callback: Callable | None = None,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
        idempotent: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
            idempotent=idempotent,
        )
        self._callback = callback

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action | None:
        if self._callback is None:
            return None
        result = self._callback(data, store, signal, context, **kwargs)
        return result if result is not None else Action(data)
