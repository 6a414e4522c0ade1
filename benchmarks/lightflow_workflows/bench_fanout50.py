"""One task fans out to fifty no-op lanes, joined by one task (Lightflow 1.11 twin of
benchmarks/workflows/bench_fanout50.py)."""

from lightflow.models import Dag
from lightflow.tasks import PythonTask


def noop(data, store, signal, context):
    pass


source = PythonTask("source", noop)
lanes = [PythonTask(f"lane{i:02d}", noop) for i in range(50)]
sink = PythonTask("sink", noop)
dag = Dag("fan")
dag.define({source: lanes, **{lane: sink for lane in lanes}})
