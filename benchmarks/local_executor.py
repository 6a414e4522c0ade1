"""Local executor, warm pool: end-to-end time of small workflows (submit -> run finished).

Usage: python benchmarks/local_executor.py [--repeat N] [--workers N]
Prints a table and a JSON line; method and results are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from triggerd.engine.codec import Codec
from triggerd.engine.local import LocalExecutor
from triggerd.store.sqlite import SqliteDataStore

HERE = Path(__file__).resolve().parent
KEY = b"benchmark-key-0123456789abcdef"
CASES = [("bench_chain3", 3), ("bench_chain20", 20), ("bench_fanout50", 52)]


def measure(executor: LocalExecutor, name: str, repeat: int) -> list[float]:
    executor.submit(name).wait(60)  # warm: workflow loaded in every worker, caches filled
    executor.submit(name).wait(60)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = executor.submit(name).wait(60)
        times.append(time.perf_counter() - t0)
        assert result.ok, result.error
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "store.sqlite"
        store = SqliteDataStore(db, Codec(KEY)).open()
        executor = LocalExecutor(
            workflows=[HERE / "workflows"],
            codec_key=KEY,
            store=store,
            store_path=db,
            workers=args.workers,
        )
        executor.start()
        rows = {}
        try:
            for name, tasks in CASES:
                times = sorted(measure(executor, name, args.repeat))
                p50, p90 = statistics.median(times), times[int(0.9 * (len(times) - 1))]
                rows[name] = {
                    "tasks": tasks,
                    "p50_ms": p50 * 1e3,
                    "p90_ms": p90 * 1e3,
                    "per_task_ms": p50 * 1e3 / tasks,
                }
        finally:
            executor.close()
            store.close()
    print(f"{'workflow':<16}{'tasks':>6}{'p50 ms':>10}{'p90 ms':>10}{'per task ms':>13}")
    for name, row in rows.items():
        print(
            f"{name:<16}{row['tasks']:>6}{row['p50_ms']:>10.1f}{row['p90_ms']:>10.1f}{row['per_task_ms']:>13.2f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
