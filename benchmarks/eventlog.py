"""The event log: ingest from producers to MongoDB, and `triggerctl logs -f` latency.

    python benchmarks/eventlog.py            # both parts (about a minute)
    python benchmarks/eventlog.py --ingest 200000
    python benchmarks/eventlog.py --follow 200

ingest   Its own redis-server and MongoDB-wire server (secantusdb, from the test extra).
         A producer process appends N events to the Redis stream as workers do
         (``EventStream``, batches of 500), while the daemon's ``StreamForwarder`` (in this
         process) moves them into a ``MongoEventStore``: events/s from the first append to
         the last event stored. Then the same events, as the documents the store writes,
         go with raw ``insert_many`` (batches of 1000, unordered) into a fresh collection
         with the store's indexes: the forwarder's cost is its time over that time (it
         also reads and acknowledges the stream and keeps the run summaries). The mix
         per run: 1 run.started, 4 task events, 95 output lines (what a chatty task
         gives).
follow   A real daemon on the embedded default; a BashTask prints its clock 20 times a
         second; ``triggerctl logs RUN -f --json`` follows: latency is the time the
         follower read the line minus the time the command printed it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pymongo
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from celery_vs_lightflow import Processes, free_port, load, start_redis, wait_until  # noqa: E402

from triggerd.engine.codec import Codec  # noqa: E402
from triggerd.engine.redis_channel import event_is_ours  # noqa: E402
from triggerd.eventlog.forwarder import Spool, StreamForwarder  # noqa: E402
from triggerd.eventlog.mongodb import MongoEventStore, _document  # noqa: E402
from triggerd.eventlog.safe import sanitize  # noqa: E402

BIN = Path(sys.executable).parent

BENCH_KEY = b"benchmark-key-0123456789"  # the producer's, as the workers share the daemon's

PRODUCER = """
import sys, redis
from triggerd.engine.codec import Codec
from triggerd.engine.redis_channel import EventStream, events_stream_key
from triggerd.eventlog.schema import LogEvent
port, n = int(sys.argv[1]), int(sys.argv[2])
stream = EventStream(redis.Redis(port=port), codec=Codec(b"benchmark-key-0123456789"))
batch = []
for i in range(n):
    run = f"run-{i // 100}"
    j = i % 100
    if j == 0:
        e = LogEvent("run.started", "run started", run=run, workflow="bench", \
data={"params": {"path": f"/data/f{i}.h5"}})
    elif j < 5:
        e = LogEvent("task.succeeded", "t done", run=run, workflow="bench", dag="d:1", \
task=f"t{j}", data={"duration": 0.01})
    else:
        e = LogEvent("output", f"frame {j} of /data/f{i}.h5: 1024 x 1024, mean 1234.5", \
run=run, workflow="bench", dag="d:1", task="t1", data={"stream": "stdout"})
    batch.append(e)
    if len(batch) == 500:
        stream.append(batch)
        batch = []
stream.append(batch)
"""


def start_mongo(procs: Processes, workdir: Path) -> str:
    port = free_port()
    (workdir / "secantusd.toml").write_text("")
    proc = procs.start(
        [
            str(BIN / "secantusd-py"),
            "--config",
            str(workdir / "secantusd.toml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(workdir / "mongo"),
            "--log-level",
            "WARNING",
        ],
        workdir / "mongo.log",
        cwd=workdir,
    )
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def up() -> bool:
        procs.check(proc, workdir / "mongo.log")
        try:
            with pymongo.MongoClient(url, serverSelectionTimeoutMS=200) as client:
                return bool(client.admin.command("ping"))
        except pymongo.errors.PyMongoError:
            return False

    wait_until(up, 30, "the MongoDB-wire server did not answer", workdir / "mongo.log")
    return url


def part_ingest(n: int) -> dict[str, Any]:
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="triggerd-bench-eventlog-") as tmp:
        workdir = Path(tmp)
        try:
            port, _pid = start_redis(procs, workdir)
            url = start_mongo(procs, workdir)
            client = redis.Redis(port=port)
            store = MongoEventStore(url, database="bench").open()
            forwarder = StreamForwarder(
                client,
                store,
                stream="triggerd:events",
                spool=Spool(workdir / "spool"),
                batch=1000,
                block=0.05,
                # as the daemon checks each entry's tag
                authentic=event_is_ours(Codec(BENCH_KEY)),
            )
            stop = threading.Event()
            thread = threading.Thread(target=forwarder.run, args=(stop,), daemon=True)
            thread.start()
            time.sleep(0.5)
            t0 = time.perf_counter()
            producer = subprocess.run(
                [sys.executable, "-c", PRODUCER, str(port), str(n)], check=True
            )
            produced = time.perf_counter() - t0
            while forwarder.forwarded < n:
                time.sleep(0.01)
            ingest = time.perf_counter() - t0
            stop.set()
            thread.join(10)
            assert producer.returncode == 0
            stored = store.find(limit=n + 1)
            assert len(stored) == n, len(stored)
            # the same events as the store writes them, raw
            documents = [_document(sanitize(e)) for e in stored]
            # the same layout (indexes) as the store's, so only the forwarder's work differs
            MongoEventStore(url, database="bench_raw").open().close()
            with pymongo.MongoClient(url) as raw_client:
                raw = raw_client["bench_raw"]["events"]
                t1 = time.perf_counter()
                for start in range(0, n, 1000):
                    raw.insert_many(documents[start : start + 1000], ordered=False)
                raw_s = time.perf_counter() - t1
            store.close()
        finally:
            procs.stop_all()
    return {
        "events": n,
        "produce_s": round(produced, 2),
        "ingest_s": round(ingest, 2),
        "ingest_events_per_s": round(n / ingest),
        "raw_insert_many_s": round(raw_s, 2),
        "raw_events_per_s": round(n / raw_s),
        "forwarder_over_raw": round(ingest / raw_s - 1, 3),
    }


FOLLOW_WORKFLOW = '''
from triggerd.flow import BashTask, Dag, Option, Parameters
parameters = Parameters([Option("lines", default=200, type=int)])
clock = BashTask("clock", lambda data, store: \
["sh", "-c", 'i=0; while [ $i -lt "$0" ]; do date +%s.%N; i=$((i+1)); sleep 0.05; done', \
str(store.get("lines"))])
d = Dag("d")
d.define({clock: None})
'''


def part_follow(lines: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="triggerd-bench-follow-") as tmp:
        root = Path(tmp)
        (root / "workflows").mkdir()
        (root / "workflows" / "clock.py").write_text(FOLLOW_WORKFLOW)
        config = root / "triggerd.toml"
        config.write_text(
            textwrap.dedent(f"""
            [paths]
            state_dir = "{root / 'var'}"
            workflows = ["{root / 'workflows'}"]
            triggers = []
            [log]
            format = "json"
        """)
        )
        daemon = subprocess.Popen(
            [str(BIN / "triggerd"), "run", "--config", str(config)],
            stdout=(root / "daemon.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: (root / "var" / "triggerd.sock").exists(), 20, "the daemon to start")
            time.sleep(0.5)
            started = subprocess.run(
                [
                    str(BIN / "triggerctl"),
                    "start",
                    "clock",
                    f"lines={lines}",
                    "--json",
                    "--config",
                    str(config),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            run_id = json.loads(started.stdout)["run_id"]
            follower = subprocess.Popen(
                [str(BIN / "triggerctl"), "logs", run_id, "-f", "--json", "--config", str(config)],
                stdout=subprocess.PIPE,
                text=True,
            )
            latencies = []
            assert follower.stdout is not None
            for line in follower.stdout:
                now = time.time()
                event = json.loads(line)
                if event.get("kind") == "output":
                    latencies.append(now - float(event["message"]))
            follower.wait(30)
        finally:
            daemon.terminate()
            daemon.wait(30)
    # the first lines may predate the follower (it starts after the run): keep live ones
    live = sorted(latencies[5:])
    return {
        "lines": len(latencies),
        "p50_ms": round(statistics.median(live) * 1000, 1),
        "p90_ms": round(live[int(len(live) * 0.9)] * 1000, 1),
        "p99_ms": round(live[int(len(live) * 0.99)] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ingest", type=int, nargs="?", const=200_000, metavar="N")
    parser.add_argument("--follow", type=int, nargs="?", const=200, metavar="LINES")
    args = parser.parse_args()
    if args.ingest is None and args.follow is None:
        args.ingest, args.follow = 200_000, 200
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "load": round(load(), 2)}
    if args.ingest:
        results["ingest"] = r = part_ingest(args.ingest)
        print(
            f"ingest: {r['events']} events, "
            f"stream -> MongoDB {r['ingest_s']} s = {r['ingest_events_per_s']} events/s "
            f"(target >= 10000); "
            f"raw insert_many {r['raw_insert_many_s']} s = {r['raw_events_per_s']} events/s; "
            f"forwarder over raw: {r['forwarder_over_raw']:+.0%} (target <= +20%)"
        )
    if args.follow:
        results["follow"] = f = part_follow(args.follow)
        print(
            f"logs -f: {f['lines']} lines, latency p50 {f['p50_ms']} ms, p90 {f['p90_ms']} ms, "
            f"p99 {f['p99_ms']} ms (target p50 < 100 ms)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
