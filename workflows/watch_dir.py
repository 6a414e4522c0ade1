"""Watch an input directory and copy each pair of finished files to an output directory.

make_dirs creates <root>/input and <root>/output ('root' is a required parameter).
watch_input then waits for files written into input/ (a file counts once it is
closed after writing or renamed into input/; files already there when the watch
starts count too) and hands them over two at a time: each pair starts a copy of
files_dag, which copies the two files to output/ and appends their new paths to the
store list 'copied'. The store value 'seen' counts the files handed over. With
stop_after=N (N > 0) the workflow stops itself once N files were seen, after the
copies it started have finished; with the default 0 it runs until it is stopped from
outside.
"""

import os

from triggerd.flow import Dag, MultiTaskData, Option, Parameters, PythonTask, TaskData
from triggerd.tasks import CopyTask, MakeDirTask, NotifyTriggerTask

parameters = Parameters(
    [
        Option("root", help="the directory that holds input/ and output/", type=str),
        Option("stop_after", default=0, help="stop after this many files (0: never)", type=int),
    ]
)


def input_dir(data, store):
    return os.path.join(store.get("root"), "input")


def output_dir(data, store):
    return os.path.join(store.get("root"), "output")


def on_files(files, data, store, signal, context):
    signal.start_dag("files_dag", data=MultiTaskData(dataset=TaskData({"files": files})))
    seen = store.get("seen", 0) + len(files)
    store.set("seen", seen)
    stop_after = store.get("stop_after", 0)
    if stop_after and seen >= stop_after:
        # Stopping the workflow also stops DAGs still running: let the copies finish.
        signal.join_dags()
        signal.stop_workflow()


def record(data, store, signal, context):
    out = output_dir(data, store)
    store.extend("copied", [os.path.join(out, os.path.basename(f)) for f in data["files"]])


make_dirs = MakeDirTask(
    "make_dirs", lambda data, store: [input_dir(data, store), output_dir(data, store)]
)
watch_input = NotifyTriggerTask(
    "watch_input",
    input_dir,
    on_files,
    aggregate=2,
    skip_duplicate=True,
    use_existing=True,
    flush_existing=False,
)

main_dag = Dag("main_dag")
main_dag.define({make_dirs: watch_input})

copy_files = CopyTask("copy_files", lambda data, store: data["files"], output_dir)
record_files = PythonTask("record_files", record)

files_dag = Dag("files_dag", autostart=False)
files_dag.define({copy_files: record_files})
