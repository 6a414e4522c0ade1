"""Describe one file: its size, SHA-256 and, when it is text, its number of lines.

The example rule triggers/incoming.toml starts this workflow for each file written to
var/incoming, passing 'path', 'name' and 'size'. inspect stats the file and reads it
once in chunks, storing 'size', 'sha256' and 'lines' (None for binary files) in the
data store and the task data; report prints a one-line summary and stores it under
'summary'. The path only ever travels as data: nothing here builds a shell command.
"""

import codecs
import hashlib
import os

from triggerd.flow import Dag, Option, Parameters, PythonTask

parameters = Parameters(
    [
        Option("path", help="the file to describe"),
        Option("name", default="", help="its name, for the summary (default: from path)"),
        Option("size", default=0, help="its size when the trigger saw it", type=int),
    ]
)

CHUNK = 1 << 20


def inspect_file(data, store, signal, context):
    path = store.get("path")
    size = os.stat(path).st_size
    data["changed"] = bool(store.get("size")) and store.get("size") != size
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines, last, text = 0, b"", True
    with open(path, "rb") as fp:
        while chunk := fp.read(CHUNK):
            digest.update(chunk)
            last = chunk[-1:]
            if text:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    text = False
                text = text and b"\0" not in chunk
                newlines += chunk.count(b"\n")
    if text:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            text = False
    # A last line without a newline still counts as a line.
    lines = newlines + (1 if last not in (b"", b"\n") else 0) if text else None
    result = {"size": size, "sha256": digest.hexdigest(), "lines": lines}
    for key, value in result.items():
        store.set(key, value)
        data[key] = value


def report(data, store, signal, context):
    name = store.get("name") or os.path.basename(store.get("path"))
    kind = f"{data['lines']} lines" if data["lines"] is not None else "binary"
    summary = f"{name}: {data['size']} bytes, {kind}, sha256 {data['sha256']}"
    if data["changed"]:
        summary += " (its size changed after the trigger)"
    print(summary)
    store.set("summary", summary)


inspect_task = PythonTask("inspect", inspect_file)
report_task = PythonTask("report", report)

main_dag = Dag("main_dag")
main_dag.define({inspect_task: report_task})
