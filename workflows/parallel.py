"""One task fans out to three lanes that run side by side; a join task waits for all.

fan_out puts a base value into the data. Each lane adds its own offset, sleeps a
moment (so lanes overlap when workers are free) and records when it ran in the store
list 'lanes'. join waits for the three lanes, receives one dataset per lane and stores
the sum of their values under 'total'.
"""

import time

from triggerd.flow import Dag, PythonTask

OFFSETS = {"lane_1": 1, "lane_2": 2, "lane_3": 3}


def fan_out(data, store, signal, context):
    data["value"] = 10


def lane(data, store, signal, context):
    began = time.time()
    data["value"] = data["value"] + OFFSETS[context.task_name]
    time.sleep(0.3)
    store.push("lanes", {"task": context.task_name, "start": began, "end": time.time()})


def join(data, store, signal, context):
    values = {name: data(name)["value"] for name in OFFSETS}
    print(f"join received {values}")
    store.set("inputs", values)
    store.set("total", sum(values.values()))


fan_out_task = PythonTask("fan_out", fan_out)
lane_tasks = [PythonTask(name, lane) for name in OFFSETS]
join_task = PythonTask("join", join)

main_dag = Dag("main_dag")
main_dag.define({fan_out_task: lane_tasks, **{task: join_task for task in lane_tasks}})
