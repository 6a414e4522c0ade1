"""Looking at and shutting down the Celery workers of triggerd (``triggerctl workers``).

It asks the workers themselves, through the broker (Celery's remote control: the
``inspect`` and ``shutdown`` broadcasts), as ``lightflow worker status`` did; the daemon
need not run. A worker answers only if it is alive and consuming, within ``timeout``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kombu.exceptions import OperationalError

from triggerd.config import CelerySettings, mask_url_password
from triggerd.errors import BackendUnavailable

from .protocol import celery_app

__all__ = ["consumed_queues", "list_workers", "shutdown_workers"]


def list_workers(celery: CelerySettings, *, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Every worker that answers: name, host, pid, queues, concurrency and its running jobs."""
    app = celery_app(celery, name="triggerctl")
    inspect = app.control.inspect(timeout=timeout)
    try:
        # Each question waits the whole timeout for answers: ask all three at once.
        with ThreadPoolExecutor(3) as pool:
            asked = [
                pool.submit(question)
                for question in (inspect.stats, inspect.active_queues, inspect.active)
            ]
            stats, queues, active = (future.result() or {} for future in asked)
    except OperationalError as exc:
        raise _unreachable(celery, exc) from exc
    finally:
        app.close()
    workers = []
    for name in sorted({*stats, *queues, *active}):
        info = stats.get(name, {})
        workers.append(
            {
                "name": name,
                "host": name.partition("@")[2] or name,
                "pid": info.get("pid"),
                "queues": sorted(q["name"] for q in queues.get(name, [])),
                "concurrency": info.get("pool", {}).get("max-concurrency"),
                "pool": info.get("pool", {}).get("implementation", "").rpartition(":")[2],
                "jobs_done": sum(info.get("total", {}).values()),
                "running": [_job(task) for task in active.get(name, [])],
            }
        )
    return workers


def consumed_queues(celery: CelerySettings, *, timeout: float = 1.0) -> set[str]:
    """The queues some worker that answers within ``timeout`` consumes."""
    app = celery_app(celery, name="triggerd-queues")
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except OperationalError as exc:
        raise _unreachable(celery, exc) from exc
    finally:
        app.close()
    return {queue["name"] for queues in replies.values() for queue in queues or []}


def shutdown_workers(
    celery: CelerySettings, names: list[str] | None = None, *, timeout: float = 2.0
) -> list[str]:
    """Ask workers (``names``, or all) to shut down warmly: they finish the tasks they run,
    take no new ones, and exit. Returns the names of those that were told (they answered
    a ping just before)."""
    app = celery_app(celery, name="triggerctl")
    try:
        # A worker does not answer `shutdown` (it just goes): ping first to know who is there.
        replies = app.control.ping(destination=names or None, timeout=timeout)
        present = sorted(name for reply in replies or [] for name in reply)
        if present:
            app.control.shutdown(destination=present)
    except OperationalError as exc:
        raise _unreachable(celery, exc) from exc
    finally:
        app.close()
    return present


def _job(task: dict[str, Any]) -> dict[str, Any]:
    """A running Celery task as triggerd sees it: run, workflow, DAG and task names."""
    args = task.get("args") or [{}]
    message = args[0] if isinstance(args[0], dict) else {}
    return {
        "run_id": message.get("run_id"),
        "workflow": message.get("workflow"),
        "dag": message.get("dag"),
        "task": message.get("task"),
        "started": task.get("time_start"),
        "celery_id": task.get("id"),
    }


def _unreachable(celery: CelerySettings, exc: Exception) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot reach the Celery broker at {mask_url_password(celery.broker_url)} ({exc}): "
        "is Redis running, and is celery.broker_url the workers' broker?"
    )
