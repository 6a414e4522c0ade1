"""Three no-op tasks in a row (Lightflow 1.11 twin of benchmarks/workflows/bench_chain3.py)."""

from lightflow.models import Dag
from lightflow.tasks import PythonTask


def step(data, store, signal, context):
    data["n"] = (data["n"] if "n" in data else 0) + 1


tasks = [PythonTask(f"t{i}", step) for i in range(3)]
dag = Dag("chain")
dag.define({tasks[0]: tasks[1], tasks[1]: tasks[2]})
