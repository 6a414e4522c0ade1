"""One task fans out to fifty no-op lanes, joined by one task."""

from triggerd.flow import Dag, PythonTask


def noop(data, store, signal, context):
    pass


source = PythonTask("source", noop)
lanes = [PythonTask(f"lane{i:02d}", noop) for i in range(50)]
sink = PythonTask("sink", noop)
dag = Dag("fan")
dag.define({source: lanes, **{lane: sink for lane in lanes}})
