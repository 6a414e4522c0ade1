"""Running one task, wherever it runs: the same code in a local pool process and on Celery.

The task's code is never shipped: the worker resolves it by (workflow, DAG, task name)
from its own workflows directory and refuses to run when its copy of the workflow file
differs from the submitter's (content hash). Task data arrives and leaves as signed bytes.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from triggerd.errors import TriggerdError
from triggerd.eventlog.schema import LogEvent
from triggerd.flow.context import TaskContext
from triggerd.flow.exceptions import WorkflowImportError
from triggerd.flow.signal import SignalChannel, TaskSignal
from triggerd.flow.task_data import MultiTaskData, TaskData
from triggerd.flow.workflow import Workflow, find_workflow_file, load_workflow
from triggerd.health import patiently
from triggerd.log import get_logger

from .capture import capture_task
from .codec import Codec, UnpicklableData, dag_data_of, output_of
from .store_keeper import MAX_BACKOFF, unavailable, unsent

__all__ = [
    "PatientDocument",
    "TaskJob",
    "TaskOutcome",
    "WorkflowCache",
    "WorkflowChanged",
    "document_for",
    "execute_task",
    "outcome_without_document",
]

_log = get_logger(__name__)


@dataclass(frozen=True)
class TaskJob:
    """Everything a worker needs to run one task; small, and free of code."""

    run_id: str
    workflow: str
    content_hash: str
    dag: str  # running name, e.g. "main:1"
    blueprint: str  # "main"
    task: str
    queue: str
    inputs: tuple[tuple[str, tuple[str, ...], bytes], ...] | None  # (predecessor, aliases, data)
    dag_data: bytes | None = None
    rule: str | None = None  # the trigger rule that started the run: its output events carry it
    attempt: int = 1  # the run's attempt that sent the job: its stop flags are that attempt's


@dataclass(frozen=True)
class TaskOutcome:
    """How a task ended; ``data`` is its signed output dataset."""

    outcome: str  # succeeded | stopped | aborted | failed
    limit: tuple[str, ...] | None = None
    data: bytes | None = None
    message: str = ""
    traceback: str = ""
    started: float = 0.0
    ended: float = 0.0


class WorkflowChanged(WorkflowImportError):
    """The worker's copy of a workflow file is not the one the run was started with."""


class WorkflowCache:
    """Loaded workflows by name, reloaded when their file changes on disk.

    Workers pass ``validate=False``: every job names the content hash of the file the
    submitter validated, and :meth:`get` refuses any other.
    """

    def __init__(self, dirs: Iterable[Path], *, validate: bool = True):
        self._dirs = [Path(d) for d in dirs]
        self._validate = validate  # False in workers: see load_workflow
        self._cache: dict[str, tuple[tuple[str, int, int], Workflow]] = {}

    def get(self, name: str, content_hash: str | None = None) -> Workflow:
        path = find_workflow_file(name, self._dirs)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(name)
        if cached is None or cached[0] != key:
            self._cache[name] = (key, load_workflow(name, self._dirs, validate=self._validate))
        workflow = self._cache[name][1]
        if content_hash and workflow.content_hash != content_hash:
            raise WorkflowChanged(
                f"this worker's copy of workflow '{name}' ({workflow.path}, sha256 "
                f"{workflow.content_hash[:12]}) differs from the one the run was started with "
                f"(sha256 {content_hash[:12]}): deploy the same file everywhere"
            )
        return workflow


def _input_data(job: TaskJob, codec: Codec) -> MultiTaskData | None:
    """The task's input, each piece unpickled only if it was signed for this run (and, a
    predecessor's output, for that predecessor in this DAG)."""
    if job.inputs is None:
        return (
            codec.loads(job.dag_data, bind=dag_data_of(job.run_id))
            if job.dag_data is not None
            else None
        )
    data = MultiTaskData()
    for name, aliases, blob in job.inputs:
        data.add_dataset(
            name, codec.loads(blob, bind=output_of(job.run_id, job.dag, name)), aliases=aliases
        )
    return data


def _user_traceback(exc: BaseException) -> str:
    """The traceback without our own frames above the task's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = str(Path(__file__).resolve().parent.parent)
    while frames and frames[0].filename.startswith(ours):
        frames.pop(0)
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    return "".join(lines + traceback.format_exception_only(type(exc), exc))


def execute_task(
    job: TaskJob,
    *,
    workflows: WorkflowCache,
    codec: Codec,
    channel: SignalChannel,
    store: Any = None,
    hostname: str = "",
    emit: Callable[[LogEvent], None] | None = None,
    worker: str | None = None,
) -> TaskOutcome:
    """Run ``job`` and say how it ended. Never raises for a task's own errors.

    With ``emit``, what the task prints and logs meanwhile becomes its ``output`` and
    ``log`` events (see :mod:`triggerd.engine.capture`), handed to ``emit`` as they
    happen; the last of them before this returns. Their ``worker`` is ``worker``
    (default: ``hostname``).
    """
    started = time.time()
    entry: dict[str, Any] = {"start_time": started, "worker": hostname, "queue": job.queue}
    capturing = (
        capture_task(
            emit,
            run=job.run_id,
            workflow=job.workflow,
            dag=job.dag,
            task=job.task,
            worker=worker or hostname,
            rule=job.rule,
        )
        if emit is not None
        else contextlib.nullcontext()
    )
    with capturing:
        result = _run_task(job, workflows, codec, channel, store, hostname, entry)
    finished = time.time()
    if store is not None:
        _record_end(job, store, {**entry, "end_time": finished, "duration": finished - started})
    return replace(result, ended=finished)


def _run_task(
    job: TaskJob,
    workflows: WorkflowCache,
    codec: Codec,
    channel: SignalChannel,
    store: Any,
    hostname: str,
    entry: dict[str, Any],
) -> TaskOutcome:
    """Find the task, run it on its verified input and sign its output; what the task
    raises is its failure, with the traceback of its own code."""
    started = entry["start_time"]
    ended: list[tuple[str, str]] = []

    def record(outcome: str, exc: BaseException | None = None) -> None:
        ended.append((outcome, str(exc) if exc is not None else ""))

    try:
        task = workflows.get(job.workflow, job.content_hash).task(job.blueprint, job.task)
        data = _input_data(job, codec)
        if store is not None:  # as Lightflow: a running task can read its own entry
            store.set(_meta_key(job), entry, section="meta")
        context = TaskContext(job.task, job.dag, job.workflow, job.run_id, hostname)
        action = task._run(
            data,
            store,
            TaskSignal(channel, job.dag),
            context,
            success_callback=lambda: record("succeeded"),
            stop_callback=lambda exc: record("stopped", exc),
            abort_callback=lambda exc: record("aborted", exc),
        )
        output = (
            action.data.default_dataset
            if isinstance(action.data, MultiTaskData) and len(action.data)
            else TaskData()
        )
        blob = codec.dumps(output, bind=output_of(job.run_id, job.dag, job.task), what="data")
        outcome, message = ended[-1] if ended else ("succeeded", "")
        return TaskOutcome(outcome, action.limit_names(), blob, message, "", started)
    except UnpicklableData as exc:
        return _failed(
            f"task '{job.task}' returned data that cannot be pickled: {exc}", "", started
        )
    except Exception as exc:  # noqa: BLE001 - a task may raise anything; it is recorded
        return _failed(f"{type(exc).__name__}: {exc}", _user_traceback(exc), started)


def _meta_key(job: TaskJob) -> str:
    """Where the task's entry (start, end, worker, queue) is in its run's ``meta`` section."""
    return f"log.{job.dag}.tasks.{job.task}"


def _record_end(job: TaskJob, store: Any, entry: dict[str, Any]) -> None:
    """Write the task's entry with its end time; the task has ended, so without waiting."""
    at_once = store.at_once if isinstance(store, PatientDocument) else store
    try:
        at_once.set(_meta_key(job), entry, section="meta")
    except Exception as exc:  # noqa: BLE001 - the task has ended; only its times are lost
        _log.warning(
            "the task's end time could not be written to the data store",
            run=job.run_id,
            dag=job.dag,
            task=job.task,
            error=f"{type(exc).__name__}: {exc}",
        )


def document_for(
    job: TaskJob, store: Any, *, give_up_after: float, sleep: Callable[[float], Any] = time.sleep
) -> PatientDocument:
    """The run's data store document. While the store is unreachable this waits (and
    says so in the log), up to ``give_up_after`` seconds; then it raises what the store
    raised. A missing document raises :class:`~triggerd.store.DocumentMissing` at once.
    The task's own reads and writes of it wait the same way (:class:`PatientDocument`)."""
    document = patiently(
        lambda: store.open().get(job.run_id),  # open: a no-op once open
        away=unavailable,
        give_up_after=give_up_after,
        max_backoff=MAX_BACKOFF,
        sleep=sleep,
        on_first=lambda exc: _log.warning(
            "data store unreachable: the task waits for it",
            run=job.run_id,
            dag=job.dag,
            task=job.task,
            error=str(exc),
        ),
    )
    return PatientDocument(document, job, give_up_after=give_up_after, sleep=sleep)


class PatientDocument:
    """A run's document as its task sees it: an unreachable store is a wait, not the
    task's failure. A read or a ``set`` (the same value again changes nothing) is tried
    again while the store is away, up to ``give_up_after`` seconds; an append only while
    the store surely did nothing (:func:`~triggerd.engine.store_keeper.unsent`), since
    one that broke off mid-way may have landed, and appending twice is worse than
    failing and saying so. ``at_once`` is the document without the waiting."""

    def __init__(
        self,
        document: Any,
        job: TaskJob,
        *,
        give_up_after: float,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        self.at_once = document
        self.run_id = job.run_id
        self._job, self._give_up_after, self._sleep = job, give_up_after, sleep

    def _waiting(self, attempt: Callable[[], Any], away: Callable[[BaseException], bool]) -> Any:
        job = self._job
        return patiently(
            attempt,
            away=away,
            give_up_after=self._give_up_after,
            max_backoff=MAX_BACKOFF,
            sleep=self._sleep,
            on_first=lambda exc: _log.warning(
                "data store unreachable: the task's store call waits for it",
                run=job.run_id,
                dag=job.dag,
                task=job.task,
                error=str(exc),
            ),
        )

    def get(self, key: str, default: Any = None, *, section: str = "data") -> Any:
        return self._waiting(lambda: self.at_once.get(key, default, section=section), unavailable)

    def set(self, key: str, value: Any, *, section: str = "data") -> bool:
        return self._waiting(lambda: self.at_once.set(key, value, section=section), unavailable)

    def push(self, key: str, value: Any, *, section: str = "data") -> bool:
        return self._waiting(
            lambda: self.at_once.push(key, value, section=section), _unsent_and_away
        )

    def extend(self, key: str, values: list, *, section: str = "data") -> bool:
        return self._waiting(
            lambda: self.at_once.extend(key, values, section=section), _unsent_and_away
        )


def _unsent_and_away(exc: BaseException) -> bool:
    return unavailable(exc) and unsent(exc)


def outcome_without_document(exc: Exception, where: str) -> TaskOutcome:
    """A task that could not run because its run's document could not be read: failed,
    saying why (the store was unreachable, or the worker uses another store)."""
    now = time.time()
    if isinstance(exc, TriggerdError) and not unavailable(exc):  # DocumentMissing
        message = (
            f"{exc} (this worker's data store is {where}: the worker and the process that "
            "started the run must share one data store)"
        )
    else:
        message = (
            f"the data store ({where}) could not be reached, so the task did not run: "
            f"{type(exc).__name__}: {exc}"
        )
    return TaskOutcome("failed", message=message, started=now, ended=now)


def _failed(message: str, tb: str, started: float) -> TaskOutcome:
    return TaskOutcome("failed", message=message, traceback=tb, started=started)


def worker_hostname() -> str:
    return f"local@{os.uname().nodename}"
