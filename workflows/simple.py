"""Two tasks hand a value from one to the next.

put_value writes 5 into the task data; show_value reads it downstream, prints it and
keeps it in the run's data store under 'value' so it can be checked afterwards.
"""

from triggerd.flow import Dag, PythonTask


def put_value(data, store, signal, context):
    print(
        "{task_name} runs in DAG {dag_name} of {workflow_name} ({workflow_id}) "
        "on {worker_hostname}".format(**context.to_dict())
    )
    data["value"] = 5


def show_value(data, store, signal, context):
    print(f"The value is: {data['value']}")
    store.set("value", data["value"])


put_task = PythonTask("put_value", put_value)
show_task = PythonTask("show_value", show_value)

main_dag = Dag("main_dag")
main_dag.define({put_task: show_task})
