"""What a task knows about where it runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TaskContext"]


@dataclass(frozen=True)
class TaskContext:
    """``dag_name`` is the running copy's name (``main:1``); ``workflow_id`` is the run id."""

    task_name: str
    dag_name: str
    workflow_name: str
    workflow_id: str
    worker_hostname: str

    @property
    def run_id(self) -> str:
        return self.workflow_id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
