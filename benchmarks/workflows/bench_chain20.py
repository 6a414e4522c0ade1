"""Twenty no-op tasks in a row."""

from triggerd.flow import Dag, PythonTask


def step(data, store, signal, context):
    data["n"] = data.get("n", 0) + 1


tasks = [PythonTask(f"t{i:02d}", step) for i in range(20)]
dag = Dag("chain")
dag.define({a: b for a, b in zip(tasks, tasks[1:], strict=False)})
