"""Three tasks in a row count up a number handed from one to the next.

All three tasks share one callback: it takes the number from its input data (starting
at 1 in the first task), adds one for each later task, and records the task's name and
the number it saw in the data store list 'steps', so the order can be checked.
"""

from triggerd.flow import Dag, PythonTask


def count_up(data, store, signal, context):
    data["number"] = data["number"] + 1 if "number" in data else 1
    print(f"{context.task_name} in {context.dag_name}: number is {data['number']}")
    store.push("steps", {"task": context.task_name, "number": data["number"]})


first_task = PythonTask("first_task", count_up)
second_task = PythonTask("second_task", count_up)
third_task = PythonTask("third_task", count_up)

main_dag = Dag("main_dag")
main_dag.define({first_task: second_task, second_task: third_task})
