"""A DAG and a task are sent to queues of their own instead of the default ones.

main_dag goes to the queue 'graph' instead of 'dag'; heavy_task goes to 'high_memory'
instead of 'task', so on a distributed deployment only workers consuming that queue
run it (e.g. ``-Q graph,task,high_memory``). light_task stays on the default 'task'
queue. report, the last task, reads the queue the run's log recorded for each task so far
(itself included: a task's entry is written when it starts) and keeps it under
'queues.<task name>'.
"""

from triggerd.flow import Dag, DataStoreDocumentSection, PythonTask


def light(data, store, signal, context):
    data["size"] = 1_000


def heavy(data, store, signal, context):
    buffer = bytearray(data["size"] * 1_000)
    store.set("buffer_size", len(buffer))


def report(data, store, signal, context):
    tasks = store.get(f"log.{context.dag_name}.tasks", {}, section=DataStoreDocumentSection.Meta)
    for task, fields in tasks.items():
        print(f"{task} ran on queue {fields['queue']}")
        store.set(f"queues.{task}", fields["queue"])


light_task = PythonTask("light_task", light)
heavy_task = PythonTask("heavy_task", heavy, queue="high_memory")
report_task = PythonTask("report", report)

main_dag = Dag("main_dag", queue="graph")
main_dag.define({light_task: heavy_task, heavy_task: report_task})
