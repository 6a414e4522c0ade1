"""A trivial Celery app: the reference round trip of benchmarks/celery_vs_lightflow.py.

Celery's defaults (JSON, prefork, early ack, prefetch ×4) with Redis as broker and result
backend, both from $BENCH_BROKER_URL; one task that returns its argument.
Worker: ``celery -A bare_celery_app worker -Q bare -c N`` (from this directory).
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1")
QUEUE = "bare"

app = Celery("bare", broker=BROKER, backend=BROKER, set_as_current=False)
app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)


@app.task(name="bare.echo")
def echo(x):
    return x
