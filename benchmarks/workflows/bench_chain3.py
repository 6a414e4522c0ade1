"""Three no-op tasks in a row."""

from triggerd.flow import Dag, PythonTask


def step(data, store, signal, context):
    data["n"] = data.get("n", 0) + 1


tasks = [PythonTask(f"t{i}", step) for i in range(3)]
dag = Dag("chain")
dag.define({tasks[0]: tasks[1], tasks[1]: tasks[2]})
