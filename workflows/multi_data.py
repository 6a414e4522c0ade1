"""A task with several inputs tells them apart by index, by predecessor name or by slot.

put stores 5. square turns it into 25. multiply has two inputs (put's and square's):
the default dataset times the one at index 1 gives 125. subtract receives put's data
on the slot 'first' and multiply's on the slot 'second' and computes first - second
= -120, reading one with get_by_alias() and the other with the shorthand data('second').
Every task stores its value under 'values.<task name>'; the show tasks store the value
they received.
"""

from triggerd.flow import Dag, PythonTask


def put(data, store, signal, context):
    data["value"] = 5
    store.set(f"values.{context.task_name}", data["value"])


def show(data, store, signal, context):
    print(f"{context.task_name}: the value is {data['value']}")
    store.set(f"values.{context.task_name}", data["value"])


def square(data, store, signal, context):
    data["value"] = data["value"] ** 2
    store.set(f"values.{context.task_name}", data["value"])


def multiply(data, store, signal, context):
    data["value"] = data["value"] * data.get_by_index(1)["value"]
    store.set(f"values.{context.task_name}", data["value"])
    store.set("multiply_inputs", len(list(data)))


def subtract(data, store, signal, context):
    first = data.get_by_alias("first")["value"]
    second = data("second")["value"]
    # the names of the predecessors are aliases too
    store.set("by_name", [data("put")["value"], data("multiply")["value"]])
    store.set("subtract_operands", [first, second])
    data["value"] = first - second
    store.set(f"values.{context.task_name}", data["value"])


put_task = PythonTask("put", put)
square_task = PythonTask("square", square)
multiply_task = PythonTask("multiply", multiply)
subtract_task = PythonTask("subtract", subtract)
show_1_task = PythonTask("show_1", show)
show_2_task = PythonTask("show_2", show)
show_3_task = PythonTask("show_3", show)
show_4_task = PythonTask("show_4", show)

main_dag = Dag("main_dag")
main_dag.define(
    {
        put_task: {
            show_1_task: None,
            square_task: None,
            multiply_task: None,
            subtract_task: "first",
        },
        square_task: [show_2_task, multiply_task],
        multiply_task: {show_3_task: None, subtract_task: "second"},
        subtract_task: show_4_task,
    }
)
