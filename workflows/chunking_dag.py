"""File names are grouped by scan and each scan's files go to a copy of a sub-DAG.

list_files puts the file names of three scans (scan_001_0001.h5 ... scan_003_0004.h5,
in arrival order) plus one unrelated name into the data. chunk_scans, a ChunkingTask,
groups them by the scan part of the name and starts 'chunk_dag' once per scan, then
waits for those copies. Each copy pushes its chunk onto the store list 'chunks'.
summary stores what the chunking task reports. With the parameter flush=no, the last
scan is held back as possibly incomplete.
"""

from triggerd.flow import Dag, Option, Parameters, PythonTask
from triggerd.tasks import ChunkingTask

parameters = Parameters(
    [Option("flush", default=True, type=bool, help="dispatch the last, maybe incomplete, scan")]
)


def list_files(data, store, signal, context):
    names = [f"scan_{scan:03d}_{frame:04d}.h5" for scan in (1, 2, 3) for frame in range(1, 5)]
    data["files"] = [*names[:6], "notes.txt", *names[6:]]


def store_chunk(data, store, signal, context):
    store.push(
        "chunks", {"dag": context.dag_name, "key": data["chunk_key"], "files": data["files"]}
    )


def summary(data, store, signal, context):
    store.set("unmatched", data["unmatched"])
    store.set("chunk_dags", data["chunk_dags"])
    store.set("held_back", data["held_back"])


list_task = PythonTask("list_files", list_files)
chunk_task = ChunkingTask(
    "chunk_scans",
    dag_name="chunk_dag",
    match_pattern=r"^(?P<key>scan_\d+)_\d+\.h5$",
    in_key="files",
    out_key="files",
    force_consecutive=True,
    flush_on_end=lambda data, store: store.get("flush"),
)
summary_task = PythonTask("summary", summary)

main_dag = Dag("main_dag")
main_dag.define({list_task: chunk_task, chunk_task: summary_task})

store_task = PythonTask("store_chunk", store_chunk)
chunk_dag = Dag("chunk_dag", autostart=False)
chunk_dag.define({store_task: None})
