"""lightflow-epics's trigger task: call back on every update of an EPICS PV.

Same name and constructor signature as ``lightflow_epics.PvTriggerTask``; a workflow file
runs after ``from lightflow_epics import PvTriggerTask`` becomes
``from triggerd.tasks import PvTriggerTask``. Every argument but the callbacks may be a
callable ``(data, store) -> value``, evaluated when the task runs.

The PV is monitored through pyepics, imported when the task runs (Channel Access reads its
``EPICS_CA_*`` environment once, on first use, so importing this module changes nothing).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import time
from collections.abc import Callable
from typing import Any

from triggerd.flow import Action, BaseTask, TaskParameters

from .file_triggers import _wait

__all__ = ["PvTriggerTask"]

log = logging.getLogger(__name__)

CONNECT_WARNING = 5.0  # seconds after which a PV still not connected is logged, once


def _pv_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"pv_name must be a non-empty string, not {value!r}")
    return value


def _stop_polling_rate(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"stop_polling_rate must be an int >= 0, not {value!r}")
    return value


def _plain(value: Any) -> Any:
    """pyepics gives a 1-element array (e.g. a CHAR waveform holding one byte, as a fresh
    IOC's empty string can) as a ctypes array, which does not pickle; make it a numpy
    array, as pyepics gives the longer ones."""
    if not isinstance(value, ctypes.Array):
        return value
    import numpy  # a requirement of pyepics

    return numpy.ctypeslib.as_array(value).copy()


def _collector(sink: queue.SimpleQueue[dict[str, Any]]) -> Callable[..., None]:
    """The pyepics value callback: runs on a Channel Access thread, queues a plain dict."""

    def on_value(**kwargs: Any) -> None:
        try:
            event = dict(kwargs)
            event.pop("cb_info", None)  # (index, the PV object): not data, not picklable
            event["value"] = _plain(event.get("value"))
            sink.put(event)
        except Exception:  # never raise into Channel Access's thread
            log.exception("PvTriggerTask: could not queue a PV update")

    return on_value


class PvTriggerTask(BaseTask):
    """Call ``callback(data, store, signal, context, **event)`` on every update of a PV.

    ``pv_name`` (a non-empty string) is monitored through pyepics. ``event`` holds what
    pyepics reports with each update, as keyword arguments: ``pvname``, ``value``,
    ``char_value``, ``timestamp`` (the IOC's, epoch seconds), ``status``, ``severity``
    and the other fields of a ``epics.PV`` callback, but not ``cb_info`` (the PV object);
    an array ``value`` is always a numpy array (pyepics gives a 1-element one as a ctypes
    array, which does not pickle).
    NB: the order differs from the filesystem tasks — the event fields come last, by
    keyword.

    Updates are handed over one call each, oldest first, as soon as they arrive.
    ``skip_initial_callback=True`` (default) drops the first update, the value the PV
    has when the monitor connects; only the first one (a reconnection later delivers
    the value the IOC sends then, as Lightflow did).

    The task runs until ``signal.is_stopped`` (its DAG or the workflow was stopped). A
    callback that raises fails the task, and so the workflow; ``StopTask`` and
    ``AbortWorkflow`` end it as for any task. A PV that never connects only keeps the
    task waiting for a stop (a warning is logged after 5 s).

    Timing, compared with lightflow-epics: there is no busy loop and no sleep per
    update. ``event_trigger_time`` (None: 0.5 s) is how often the task looks at the stop
    flag, also while updates keep coming. ``stop_polling_rate`` is accepted and ignored
    (Lightflow read the flag only every ``stop_polling_rate + 1`` loop ticks). Lightflow
    handled queued updates newest first, and with several queued at its first look it
    dropped the newest instead of the initial value.
    """

    def __init__(
        self,
        name: str,
        pv_name: Any,
        callback: Callable | None,
        event_trigger_time: Any = None,
        stop_polling_rate: Any = 2,
        skip_initial_callback: Any = True,
        *,
        queue: str = "task",
        callback_init: Callable | None = None,
        callback_finally: Callable | None = None,
        force_run: bool = False,
        propagate_skip: bool = True,
    ):
        super().__init__(
            name,
            queue=queue,
            callback_init=callback_init,
            callback_finally=callback_finally,
            force_run=force_run,
            propagate_skip=propagate_skip,
        )
        # None: updates are taken and dropped, as in Lightflow
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        # Definition errors in literal arguments fail when the workflow loads.
        if not callable(pv_name):
            _pv_name(pv_name)
        if not callable(event_trigger_time):
            _wait(event_trigger_time, ValueError)
        if not callable(stop_polling_rate):
            _stop_polling_rate(stop_polling_rate)
        self.params = TaskParameters(
            pv_name=pv_name,
            event_trigger_time=event_trigger_time,
            stop_polling_rate=stop_polling_rate,
            skip_initial_callback=skip_initial_callback,
        )
        self._callback = callback

    def run(self, data: Any, store: Any, signal: Any, context: Any, **kwargs: Any) -> Action:
        params = self.params.eval(data, store)
        pv_name = _pv_name(params.pv_name)
        wait = _wait(params.event_trigger_time, ValueError)
        _stop_polling_rate(params.stop_polling_rate)
        skip_initial = bool(params.skip_initial_callback)

        import epics  # here, not at import: CA reads its EPICS_CA_* environment on first use

        events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        pv = epics.PV(pv_name, callback=_collector(events))
        try:
            warn_at: float | None = time.monotonic() + CONNECT_WARNING
            look_at = 0.0  # when to look at the stop flag next
            while True:
                now = time.monotonic()
                if now >= look_at:  # also while updates keep coming
                    if signal.is_stopped:
                        break
                    if warn_at is not None and now >= warn_at:
                        warn_at = None
                        if not pv.connected:
                            log.warning(
                                "Task %s: PV %s is not connected after %g s; still searching",
                                self.name,
                                pv_name,
                                CONNECT_WARNING,
                            )
                    look_at = time.monotonic() + wait
                try:
                    event = events.get(timeout=max(0.0, look_at - time.monotonic()))
                except queue.Empty:
                    continue
                if skip_initial:
                    skip_initial = False
                    log.debug(
                        "Task %s: skipped the initial value of %s: %r",
                        self.name,
                        pv_name,
                        event.get("value"),
                    )
                    continue
                if self._callback is not None:
                    self._callback(data, store, signal, context, **event)
        finally:
            pv.clear_callbacks()
            pv.disconnect()  # not ca.clear_channel: pyepics shares one channel per name
        return Action(data)
