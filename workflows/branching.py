"""A task picks which of its successors run: two lanes run, the third is skipped.

branch returns Action(data, limit=[...]) naming lane_1 by its task object and lane_2
by its name; lane_3 is left out, so it is skipped. join still runs, because lanes 1
and 2 lead to it; it receives the datasets of the two lanes that ran. Each task that
runs adds its name to the store list 'ran'.
"""

from triggerd.flow import Action, Dag, PythonTask


def branch(data, store, signal, context):
    store.push("ran", context.task_name)
    return Action(data, limit=[lane_1_task, "lane_2"])


def lane(data, store, signal, context):
    store.push("ran", context.task_name)
    data["lane"] = context.task_name


def join(data, store, signal, context):
    store.push("ran", context.task_name)
    store.set("join_inputs", sorted(dataset["lane"] for dataset in data))


branch_task = PythonTask("branch", branch)
lane_1_task = PythonTask("lane_1", lane)
lane_2_task = PythonTask("lane_2", lane)
lane_3_task = PythonTask("lane_3", lane)
join_task = PythonTask("join", join)

main_dag = Dag("main_dag")
main_dag.define(
    {
        branch_task: [lane_1_task, lane_2_task, lane_3_task],
        lane_1_task: join_task,
        lane_2_task: join_task,
        lane_3_task: join_task,
    }
)
