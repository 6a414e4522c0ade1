"""A number decides whether the small-number or the large-number task runs.

decide takes the 'number' parameter (a random number from 0 to 99 when it is left at
-1) and returns an Action limited to small_number (below 50) or large_number (50 and
above); the other one is skipped. The chosen task stores the number under 'number' and
its own name under 'branch'.
"""

import random

from triggerd.flow import Action, Dag, Option, Parameters, PythonTask

THRESHOLD = 50

parameters = Parameters(
    [Option("number", default=-1, type=int, help="the number to decide on; -1 draws one")]
)


def decide(data, store, signal, context):
    number = store.get("number")
    if number < 0:
        number = random.randrange(100)
    data["number"] = number
    chosen = small_number_task if number < THRESHOLD else large_number_task
    print(f"{number} -> {chosen.name}")
    return Action(data, limit=[chosen])


def record(data, store, signal, context):
    store.set("number", data["number"])
    store.set("branch", context.task_name)


decide_task = PythonTask("decide", decide)
small_number_task = PythonTask("small_number", record)
large_number_task = PythonTask("large_number", record)

main_dag = Dag("main_dag")
main_dag.define({decide_task: [small_number_task, large_number_task]})
