"""Tasks stop themselves with StopTask: with or without skipping their successors.

start fans out to three paths. bash_task counts from 1 to 30 with a pause per line;
its stdout callback raises StopTask when it reads 5, which terminates the process and
skips show_1. stop_noskip raises StopTask(skip_successors=False), so show_2 still runs.
stop_skip raises a plain StopTask, which skips show_3. The lines bash_task saw are in
the store list 'lines'; every show task that runs adds its name to 'shown'.
"""

from triggerd.flow import BashTask, Dag, PythonTask, StopTask


def start(data, store, signal, context):
    print(f"starting the paths of {context.dag_name}")


def on_line(line, data, store, signal, context):
    number = int(line)
    if number == 5:
        raise StopTask("Reached line number 5")
    store.push("lines", number)


def stop_noskip(data, store, signal, context):
    raise StopTask(f"Stop {context.task_name} but not its successors", skip_successors=False)


def stop_skip(data, store, signal, context):
    raise StopTask(f"Stop {context.task_name} and its successors")


def show(data, store, signal, context):
    store.push("shown", context.task_name)


start_task = PythonTask("start", start)
bash_task = BashTask(
    "bash_task",
    'for i in $(seq 1 30); do echo "$i"; sleep 0.1; done',
    callback_stdout=on_line,
)
stop_noskip_task = PythonTask("stop_noskip", stop_noskip)
stop_skip_task = PythonTask("stop_skip", stop_skip)
show_1_task = PythonTask("show_1", show)
show_2_task = PythonTask("show_2", show)
show_3_task = PythonTask("show_3", show)

main_dag = Dag("main_dag")
main_dag.define(
    {
        start_task: [bash_task, stop_noskip_task, stop_skip_task],
        bash_task: show_1_task,
        stop_noskip_task: show_2_task,
        stop_skip_task: show_3_task,
    }
)
