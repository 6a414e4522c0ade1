"""A task aborts the whole workflow gracefully when its input is not good enough.

collect lists as many image names as the 'images' parameter says (3 by default).
check raises AbortWorkflow('At least 5 images are required') when there are fewer
than 5: the run ends 'aborted' (not 'failed') and process never runs. With 5 or more
images the run succeeds and process stores the count under 'processed'.
"""

from triggerd.flow import AbortWorkflow, Dag, Option, Parameters, PythonTask

parameters = Parameters([Option("images", default=3, type=int, help="how many images to list")])


def collect(data, store, signal, context):
    data["images"] = [f"img_{index:03d}.tif" for index in range(1, store.get("images") + 1)]


def check(data, store, signal, context):
    store.set("checked", len(data["images"]))
    if len(data["images"]) < 5:
        raise AbortWorkflow("At least 5 images are required")


def process(data, store, signal, context):
    store.set("processed", len(data["images"]))


collect_task = PythonTask("collect", collect)
check_task = PythonTask("check", check)
process_task = PythonTask("process", process)

main_dag = Dag("main_dag")
main_dag.define({collect_task: check_task, check_task: process_task})
