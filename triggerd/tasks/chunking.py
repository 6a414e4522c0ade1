"""A task that groups file names into chunks by a key and starts one sub-DAG per chunk.

Typical use: the files of several scans arrive as one list (``scan_001_0001.h5``,
``scan_001_0002.h5``, ``scan_002_0001.h5`` ...); each scan is processed by its own copy
of a DAG. Lightflow's ``chunking_dag`` example referred to a ``ChunkingTask`` that its
published versions do not contain; this is triggerd's definition of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from triggerd.flow import Action, BaseTask, MultiTaskData, TaskData, TaskParameters

__all__ = ["ChunkingTask", "chunk_names"]


def _compile(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    if "key" not in compiled.groupindex and compiled.groups < 1:
        raise ValueError(
            f"match pattern {compiled.pattern!r} has no group: the key is the named group "
            "'key', or else group 1"
        )
    return compiled


def _key_of(compiled: re.Pattern[str], name: str) -> str | None:
    match = compiled.search(name)
    if match is None:
        return None
    return match.group("key") if "key" in compiled.groupindex else match.group(1)


def chunk_names(
    names: Iterable[str], pattern: str | re.Pattern[str], force_consecutive: bool = True
) -> list[tuple[str, list[str]]]:
    """Group ``names`` into ``(key, [names])`` chunks, keeping the input order.

    The key of a name is the named group ``key`` of ``pattern`` if it has one, else its
    group 1, found with ``re.search``. Names that do not match (or whose key group did
    not take part in the match) belong to no chunk.

    ``force_consecutive=True``: a chunk ends whenever the key changes from one matching
    name to the next, so a key that comes back later starts a new chunk. ``False``: one
    chunk per key, ordered by the key's first appearance.
    """
    compiled = _compile(pattern)
    chunks: list[tuple[str, list[str]]] = []
    by_key: dict[str, list[str]] = {}
    for name in names:
        key = _key_of(compiled, name)
        if key is None:
            continue
        if force_consecutive:
            if chunks and chunks[-1][0] == key:
                chunks[-1][1].append(name)
            else:
                chunks.append((key, [name]))
        elif key in by_key:
            by_key[key].append(name)
        else:
            by_key[key] = [name]
            chunks.append((key, by_key[key]))
    return chunks


class ChunkingTask(BaseTask):
    """Start a copy of DAG ``dag_name`` per chunk of the file names in ``data[in_key]``.

    Names are grouped by :func:`chunk_names` with ``match_pattern`` and
    ``force_consecutive``. Each chunk starts ``dag_name`` with a fresh dataset
    ``{out_key: [names], 'chunk_key': key}``; the task then waits for every DAG it
    started (``signal.join_dags``) before it ends.

    ``flush_on_end=False`` holds back the chunk that may still be incomplete: the one
    holding the *last matching name* of the list (with ``force_consecutive`` that is the
    final chunk; without, the chunk of the key seen last). Its names are not dispatched.

    The task adds to its own (outgoing) data: ``unmatched`` (how many names matched no
    key), ``chunk_dags`` (running names of the DAGs started, in chunk order) and
    ``held_back`` (the names of the chunk held back, or ``[]``). If the workflow is
    stopped while chunks are being dispatched, no further DAG is started.

    Every argument but the callbacks may also be a callable ``(data, store) -> value``,
    evaluated when the task runs, as for Lightflow's extension tasks.
    """

    def __init__(
        self,
        name: str,
        dag_name: Any,
        match_pattern: Any,
        in_key: Any = "files",
        out_key: Any = "files",
        force_consecutive: Any = True,
        flush_on_end: Any = True,
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
        if isinstance(match_pattern, (str, re.Pattern)):
            _compile(match_pattern)  # a bad pattern is a definition error: fail on load
        self.params = TaskParameters(
            dag_name=dag_name,
            match_pattern=match_pattern,
            in_key=in_key,
            out_key=out_key,
            force_consecutive=force_consecutive,
            flush_on_end=flush_on_end,
        )

    def run(
        self, data: MultiTaskData, store: Any, signal: Any, context: Any, **kwargs: Any
    ) -> Action:
        params = self.params.eval(data, store)
        if params.in_key not in data:
            raise KeyError(
                f"task '{self.name}': the input data has no '{params.in_key}' list of names"
            )
        names = data[params.in_key]
        if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
            raise TypeError(
                f"task '{self.name}': data['{params.in_key}'] must be a list of names, "
                f"not {type(names).__name__}"
            )
        names = list(names)
        chunks = chunk_names(names, params.match_pattern, bool(params.force_consecutive))
        matched = sum(len(chunk) for _key, chunk in chunks)
        held_back: list[str] = []
        if chunks and not params.flush_on_end:
            compiled = _compile(params.match_pattern)
            keys = (_key_of(compiled, name) for name in reversed(names))
            last_key = next(key for key in keys if key is not None)
            # The last chunk of that key: with force_consecutive, simply the final chunk.
            index = max(i for i, (key, _chunk) in enumerate(chunks) if key == last_key)
            held_back = chunks.pop(index)[1]

        started: list[str] = []
        for key, chunk in chunks:
            dataset = TaskData({params.out_key: chunk, "chunk_key": key})
            dag = signal.start_dag(params.dag_name, data=MultiTaskData(dataset=dataset))
            if dag is None:  # the workflow is stopping: start nothing more
                break
            started.append(dag)
        if started:
            signal.join_dags(started)

        data["unmatched"] = len(names) - matched
        data["chunk_dags"] = started
        data["held_back"] = held_back
        return Action(data)
