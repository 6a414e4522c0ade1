"""The states of a run, one vocabulary for the outbox, the event log, the API and the CLI.

A run is ``waiting`` (for the file its PV rule named), ``queued`` in the outbox,
``submitted`` to the executor (waiting for a worker or a slot), ``running`` on a worker,
and then ends in one of :data:`ENDED`. Each end is also an event kind, ``run.<state>``.
This module is a leaf: every layer may import it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["END_KINDS", "ENDED", "FAILED", "RunState"]


class RunState(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"  # a task raised AbortWorkflow
    STOPPED = "stopped"  # by an operator, or StopTask/stop signals
    REJECTED = "rejected"  # refused before it ran: an unknown workflow, bad parameters

    @property
    def ended(self) -> bool:
        return self in ENDED

    @property
    def event_kind(self) -> str:
        """The kind of the event that says a run reached this state, e.g. ``run.failed``."""
        return f"run.{self.value}"


#: The states a run ends in, in the order tables list them.
ENDED: tuple[RunState, ...] = (
    RunState.SUCCEEDED,
    RunState.FAILED,
    RunState.ABORTED,
    RunState.STOPPED,
    RunState.REJECTED,
)
#: The ends that count as failures (``triggerctl runs --failed``, the failed counters).
FAILED: tuple[RunState, ...] = (RunState.FAILED, RunState.ABORTED, RunState.REJECTED)
#: The event kinds of :data:`ENDED`.
END_KINDS: tuple[str, ...] = tuple(state.event_kind for state in ENDED)
