"""Lightflow 1.11 side of benchmarks/celery_vs_lightflow.py; run with the Lightflow venv's python.

Usage: python lightflow_driver.py --config lightflow.cfg --worker NAME --repeat N --warmup W WF...

Waits until the worker NAME answers a ping, then runs each workflow W times to warm up and
N times measured: ``start_workflow()`` (Lightflow's public API, what ``lightflow workflow
start`` calls) and then ``AsyncResult(job_id).get()`` on the workflow job, which returns
when the workflow task has ended (``lightflow workflow status`` is broken with Celery 4.4.7
and the CLI cannot wait). Writes "measuring: WF" to stderr when a warm-up is over (the
caller starts its CPU meter then) and prints one JSON object last: seconds per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from celery.result import AsyncResult
from lightflow.config import Config
from lightflow.queue.app import create_app
from lightflow.workflows import start_workflow


def wait_for_worker(app, name: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if app.control.ping(destination=[name], timeout=0.5):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit(f"Lightflow worker {name} did not answer a ping within {timeout:g} s")


def run_once(config: Config, app, name: str, timeout: float) -> float:
    t0 = time.perf_counter()
    job_id = start_workflow(name, config)
    result = AsyncResult(job_id, app=app)
    result.get(timeout=timeout, propagate=True)
    elapsed = time.perf_counter() - t0
    if result.state != "SUCCESS":
        raise SystemExit(f"workflow {name} ended {result.state}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("workflows", nargs="+")
    args = parser.parse_args()
    config = Config.from_file(args.config)
    app = create_app(config)
    ready_after = wait_for_worker(app, args.worker, 60.0)
    out: dict = {"ready_after_s": ready_after, "times": {}}
    for name in args.workflows:
        for _ in range(args.warmup):
            run_once(config, app, name, args.timeout)
        print(f"measuring: {name}", file=sys.stderr, flush=True)  # the caller's CPU meter starts
        times = [run_once(config, app, name, args.timeout) for _ in range(args.repeat)]
        out["times"][name] = times
        print(
            f"lightflow {name}: {', '.join(f'{t:.3f}' for t in times)} s",
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
