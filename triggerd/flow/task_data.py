"""Data passed between tasks: one :class:`TaskData` per predecessor, in a :class:`MultiTaskData`.

Same semantics as Lightflow's ``lightflow.models.task_data``: a task receives one dataset
per non-skipped predecessor (aliased by the predecessor's name and its edge slot), reads and
writes the *default* dataset, and its output is flattened into a single dataset.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from .exceptions import DataInvalidAlias, DataInvalidIndex

__all__ = ["MultiTaskData", "TaskData"]


def _merge_dicts(target: dict, source: dict) -> None:
    """Recursively merge ``source`` into ``target``; values of ``source`` win.

    Dicts are merged key by key into fresh dicts; other values are shared, not copied
    (as in Lightflow: a value that cannot be copied, such as a lock, still merges).
    """
    for key, value in source.items():
        if isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _merge_dicts(target[key], value)
        else:
            target[key] = value


class TaskData:
    """A dict-like dataset with the history of the tasks that touched it."""

    def __init__(self, data: dict | None = None, *, task_history: list[str] | None = None):
        self._data: dict[str, Any] = data if data is not None else {}
        self._task_history: list[str] = task_history if task_history is not None else []

    @property
    def data(self) -> dict[str, Any]:
        return self._data

    @property
    def task_history(self) -> list[str]:
        return self._task_history

    def add_task_history(self, task_name: str) -> None:
        self._task_history.append(task_name)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def merge(self, dataset: TaskData) -> None:
        """Merge another dataset into this one (its values win, its history is appended)."""
        _merge_dicts(self._data, dataset.data)
        for name in dataset.task_history:
            if name not in self._task_history:
                self._task_history.append(name)

    def __deepcopy__(self, memo: dict) -> TaskData:
        return TaskData(copy.deepcopy(self._data, memo), task_history=self._task_history[:])

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskData):
            return NotImplemented
        return self._data == other._data and self._task_history == other._task_history

    def __repr__(self) -> str:
        return f"TaskData({self._data!r})"

    def __str__(self) -> str:
        return str(self._data)


class MultiTaskData:
    """Several datasets, addressed by index or alias; item access uses the default one."""

    def __init__(self, *, dataset: TaskData | None = None, aliases: Iterable[str] | None = None):
        self._datasets: list[TaskData] = [] if dataset is None else [dataset]
        self._aliases: dict[str, int] = {alias: 0 for alias in aliases or ()}
        self._default_index = 0

    @property
    def default_index(self) -> int:
        return self._default_index

    @property
    def default_dataset(self) -> TaskData:
        return self.get_by_index(self._default_index)

    @property
    def aliases(self) -> dict[str, int]:
        return dict(self._aliases)

    def add_dataset(
        self,
        task_name: str,
        dataset: TaskData | None = None,
        *,
        aliases: Iterable[str] | None = None,
    ) -> None:
        """Append a dataset, reachable by ``task_name`` and every alias."""
        self._datasets.append(dataset if dataset is not None else TaskData())
        index = len(self._datasets) - 1
        self._aliases[task_name] = index
        for alias in aliases or ():
            self._aliases[alias] = index

    def add_alias(self, alias: str, index: int) -> None:
        if not 0 <= index < len(self._datasets):
            raise DataInvalidIndex(f"Index {index} is out of range (0..{len(self._datasets) - 1})")
        self._aliases[alias] = index

    def flatten(self, in_place: bool = True) -> MultiTaskData:
        """Merge every dataset into one; the default dataset wins on conflicts."""
        if not self._datasets:
            result = TaskData()
        else:
            result = TaskData()
            for index, dataset in enumerate(self._datasets):
                if index != self._default_index:
                    result.merge(dataset)
            result.merge(self._datasets[self._default_index])
        target = self if in_place else MultiTaskData()
        target._datasets = [result]
        target._aliases = {alias: 0 for alias in self._aliases}
        target._default_index = 0
        return target

    def add_task_history(self, task_name: str) -> None:
        for dataset in self._datasets:
            dataset.add_task_history(task_name)

    def set_default_by_alias(self, alias: str) -> None:
        if alias not in self._aliases:
            raise DataInvalidAlias(f"Alias '{alias}' is not known")
        self._default_index = self._aliases[alias]

    def set_default_by_index(self, index: int) -> None:
        if not 0 <= index < len(self._datasets):
            raise DataInvalidIndex(f"Index {index} is out of range (0..{len(self._datasets) - 1})")
        self._default_index = index

    def get_by_alias(self, alias: str) -> TaskData:
        if alias not in self._aliases:
            raise DataInvalidAlias(f"Alias '{alias}' is not known")
        return self.get_by_index(self._aliases[alias])

    def get_by_index(self, index: int) -> TaskData:
        if not 0 <= index < len(self._datasets):
            raise DataInvalidIndex(f"Index {index} is out of range (0..{len(self._datasets) - 1})")
        return self._datasets[index]

    def __call__(self, alias: str) -> TaskData:
        return self.get_by_alias(alias)

    def get(self, key: str, default: Any = None) -> Any:
        """``get`` on the default dataset (an addition: Lightflow has only ``[]``)."""
        return self.default_dataset.get(key, default) if self._datasets else default

    def __getitem__(self, key: str) -> Any:
        return self.default_dataset[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.default_dataset[key] = value

    def __delitem__(self, key: str) -> None:
        del self.default_dataset[key]

    def __contains__(self, key: object) -> bool:
        return bool(self._datasets) and key in self.default_dataset

    def __iter__(self) -> Iterator[TaskData]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)

    def __bool__(self) -> bool:
        # An empty MultiTaskData is still data (truthy, as in Lightflow), not "no data".
        return True

    def __repr__(self) -> str:
        return f"MultiTaskData({self._datasets!r}, aliases={self._aliases!r})"
