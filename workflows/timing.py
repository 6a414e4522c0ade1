"""The last task reads how long each earlier task took from the run's meta log.

Three tasks sleep in a row (0.1, 0.2 and 0.3 s). report reads
store.get(key='log.<dag name>.tasks', section=DataStoreDocumentSection.Meta), with
the running DAG name from context.dag_name, and stores the duration of every task that
has finished under 'durations' (report itself is still running, so it has none yet).
"""

import time

from triggerd.flow import Dag, DataStoreDocumentSection, PythonTask

SLEEPS = {"sleep_1": 0.1, "sleep_2": 0.2, "sleep_3": 0.3}


def nap(data, store, signal, context):
    time.sleep(SLEEPS[context.task_name])


def report(data, store, signal, context):
    tasks = store.get(key=f"log.{context.dag_name}.tasks", section=DataStoreDocumentSection.Meta)
    durations = {}
    for task, fields in tasks.items():
        if "duration" in fields:
            print(f"{task} took {fields['duration']:.3f} s")
            durations[task] = fields["duration"]
    store.set("durations", durations)


sleep_1_task = PythonTask("sleep_1", nap)
sleep_2_task = PythonTask("sleep_2", nap)
sleep_3_task = PythonTask("sleep_3", nap)
report_task = PythonTask("report", report)

main_dag = Dag("main_dag")
main_dag.define({sleep_1_task: sleep_2_task, sleep_2_task: sleep_3_task, sleep_3_task: report_task})
