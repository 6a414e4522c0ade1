"""Twenty no-op tasks in a row (Lightflow 1.11 twin of benchmarks/workflows/bench_chain20.py)."""

from lightflow.models import Dag
from lightflow.tasks import PythonTask


def step(data, store, signal, context):
    data["n"] = (data["n"] if "n" in data else 0) + 1


tasks = [PythonTask(f"t{i:02d}", step) for i in range(20)]
dag = Dag("chain")
dag.define({a: b for a, b in zip(tasks, tasks[1:], strict=False)})
