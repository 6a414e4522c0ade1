"""A workflow takes typed parameters: required ones and ones with defaults.

Arguments arrive as strings (name=value on the command line) and are converted to
each option's type: 'filepath' (str) and 'iterations' (int) are required, 'recursive'
(bool) and 'threshold' (float) have defaults. The converted values are in the data
store under the option names; the tasks read them with store.get and store what they
saw under 'report' and the list 'passes'.
"""

from triggerd.flow import Dag, Option, Parameters, PythonTask

parameters = Parameters(
    [
        Option("filepath", help="the file to work on", type=str),
        Option("iterations", help="how many passes to make", type=int),
        Option("recursive", default=False, help="descend into directories", type=bool),
        Option("threshold", default=0.4, help="the acceptance threshold", type=float),
    ]
)


def report(data, store, signal, context):
    values = {
        name: store.get(name) for name in ("filepath", "iterations", "recursive", "threshold")
    }
    print("parameters:", values)
    store.set("report", {name: type(value).__name__ for name, value in values.items()})


def iterate(data, store, signal, context):
    for index in range(store.get("iterations")):
        store.push("passes", index)


report_task = PythonTask("report", report)
iterate_task = PythonTask("iterate", iterate)

main_dag = Dag("main_dag")
main_dag.define({report_task: iterate_task})
