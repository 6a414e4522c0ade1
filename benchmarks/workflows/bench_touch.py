"""One task: note when it started and which file triggered the run (for
benchmarks/file_triggers.py).

Writes ``<out>/<run id>`` holding "<time.time() at task start>\\t<path>": one marker per
run, so a file that triggered twice leaves two markers with the same path.
"""

import os
import time

from triggerd.flow import Dag, Option, Parameters, PythonTask

parameters = Parameters([Option("path"), Option("out")])


def touch(data, store, signal, context):
    started = time.time()  # first thing: the "task running" moment the latency is measured to
    marker = os.path.join(store.get("out"), context.workflow_id)
    with open(marker, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(f"{started!r}\t{store.get('path')}")


main = Dag("main")
main.define({PythonTask("touch", touch): None})
