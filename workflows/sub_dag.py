"""A task starts several copies of a second DAG with numpy data and waits for them.

start_copies builds a small numpy image per copy, starts 'sub_dag' five times with
signal.start_dag(sub_dag, data=data), keeps the returned running names ('sub_dag:1'
...) and waits for all of them with signal.join_dags(names). sub_dag is not started
on its own (autostart=False): each copy scales its image and pushes a summary onto the
store list 'results'; its second task checks the data it was handed on.
"""

import numpy as np

from triggerd.flow import Dag, PythonTask

COPIES = 5


def start_copies(data, store, signal, context):
    names = []
    for index in range(COPIES):
        data["index"] = index
        data["image"] = np.full((4, 4), index, dtype=np.int64)
        names.append(signal.start_dag(sub_dag, data=data))
    store.set("started", names)
    signal.join_dags(names)
    store.set("joined", len(store.get("results", [])))


def scale(data, store, signal, context):
    data["image"] = data["image"] * 2


def summarise(data, store, signal, context):
    image = data["image"]
    store.push(
        "results",
        {
            "dag": context.dag_name,
            "index": data["index"],
            "shape": list(image.shape),
            "sum": int(image.sum()),
        },
    )


start_task = PythonTask("start_copies", start_copies)
main_dag = Dag("main_dag")
main_dag.define({start_task: None})

scale_task = PythonTask("scale", scale)
summarise_task = PythonTask("summarise", summarise)
sub_dag = Dag("sub_dag", autostart=False)
sub_dag.define({scale_task: summarise_task})
