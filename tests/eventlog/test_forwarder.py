"""The forwarder and the writer against a real Redis and a real MongoDB-wire server.

The fault test of the issue: the MongoDB server stopped for 60 s during a stream of
runs, then started again: every event arrives exactly once, in order per run.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import redis
from support import wait_for

from triggerd.eventlog.forwarder import EventWriter, Spool, StreamForwarder
from triggerd.eventlog.mongodb import MongoEventStore
from triggerd.eventlog.schema import LogEvent

# Seconds the MongoDB server is down in the outage test: the minute under
# `make faults` (TRIGGERD_FAULTS=full), 12 s in `make test` (the CI budget; past the
# 5 s in which pymongo gives up on a server, so the spool is used), as the
# scenarios of tests/faults do.
OUTAGE = 60.0 if os.environ.get("TRIGGERD_FAULTS") == "full" else 12.0


def produce(client: redis.Redis, stream: str, runs: int, per_run: int) -> list[LogEvent]:
    """Append ``per_run`` output events for each of ``runs`` runs, interleaved."""
    made = []
    pipe = client.pipeline(transaction=False)
    for i in range(per_run):
        for r in range(runs):
            event = LogEvent(
                "output",
                f"line {i}",
                run=f"run-{r}",
                workflow="wf",
                dag="d",
                task="t",
                data={"stream": "stdout"},
            )
            made.append(event)
            pipe.xadd(stream, {"e": json.dumps(event.to_dict())})
    pipe.execute()
    return made


def stored_ids(store: MongoEventStore, run: str) -> list[str]:
    return [e.id for e in store.find(run=run, limit=100_000)]


@pytest.fixture
def stream(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    name = f"test:events:{time.monotonic_ns()}"
    yield client, name
    client.delete(name)
    client.close()


def forwarder_thread(forwarder: StreamForwarder) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def test_mongodb_down_loses_and_doubles_nothing(stream, mongo_server, mongo_db, tmp_path):
    """Runs stream events while MongoDB is stopped for OUTAGE s; past the backlog bound they
    spool to a file; after the restart every event is stored exactly once, per run in
    the order produced, and the stream and the spool are empty."""
    client, name = stream
    url, database = mongo_db
    store = MongoEventStore(url, database=database).open()
    spool = Spool(tmp_path / "spool.jsonl")
    forwarder = StreamForwarder(
        client, store, stream=name, spool=spool, batch=200, block=0.1, backlog_bound=500
    )
    thread, stop = forwarder_thread(forwarder)
    try:
        made = produce(client, name, runs=5, per_run=100)
        wait_for(lambda: forwarder.forwarded == 500, 30, "the first 500 events")
        mongo_server.stop(kill=True)
        t_down = time.monotonic()
        made += produce(client, name, runs=5, per_run=100)  # waits in the stream (under the bound)
        wait_for(lambda: not forwarder.store_ok, 30, "the forwarder to notice")
        made += produce(client, name, runs=5, per_run=200)  # past the bound: spooled
        wait_for(lambda: len(spool) > 0, 30, "events to spool")
        assert forwarder.status()["spooled"] > 0 and not forwarder.status()["store_ok"]
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - t_down)))
        mongo_server.start()
        made += produce(client, name, runs=5, per_run=20)
        wait_for(
            lambda: (
                forwarder.store_ok and forwarder.status()["spooled"] == 0 and client.xlen(name) == 0
            ),
            60,
            "the backlog to drain",
        )
        for r in range(5):
            expected = [e.id for e in made if e.run == f"run-{r}"]
            assert stored_ids(store, f"run-{r}") == expected  # each once, in order
        assert len(store.find(limit=100_000)) == len(made) == 2100
    finally:
        stop.set()
        thread.join(10)
        store.close()


def test_a_forwarder_that_died_before_acknowledging_forwards_again_without_doubles(
    stream, mongo_db, tmp_path
):
    """Entries read and stored but not acknowledged (a crash between the two) are read
    again by the next forwarder of the same consumer; the store keeps them once."""
    client, name = stream
    url, database = mongo_db
    made = produce(client, name, runs=2, per_run=50)
    with MongoEventStore(url, database=database) as store:
        crashed = StreamForwarder(
            client, store, stream=name, spool=Spool(tmp_path / "s1"), batch=60
        )
        crashed._ensure_group(threading.Event())
        entries = crashed._read(resume=False)  # read, stored, never acknowledged
        store.insert([LogEvent.from_dict(json.loads(f[b"e"])) for _id, f in entries])
        assert len(entries) == 60
        again = StreamForwarder(
            client, store, stream=name, spool=Spool(tmp_path / "s2"), batch=60, block=0.1
        )
        thread, stop = forwarder_thread(again)
        try:
            wait_for(lambda: client.xlen(name) == 0, 20, "the stream to drain")
        finally:
            stop.set()
            thread.join(10)
        assert [e.id for e in store.find(limit=1000)] == sorted(e.id for e in made)


def test_the_writer_spools_while_the_store_is_down_and_catches_up(mongo_server, mongo_db, tmp_path):
    """The daemon's own events: written in batches; with MongoDB stopped they go to the
    spool (nothing is lost if the daemon stops meanwhile); once it is back they arrive."""
    url, database = mongo_db
    spool = Spool(tmp_path / "writer.jsonl")
    with MongoEventStore(url, database=database) as store:
        writer = EventWriter(store, spool=spool, delay=0.01)
        writer.start()
        first = [LogEvent("daemon.started", "up")]
        writer.put(first[0])
        wait_for(lambda: writer.written == 1, 20, "the first event")
        mongo_server.stop(kill=True)
        later = [LogEvent("trigger.fired", f"file {i}", rule="r") for i in range(50)]
        for event in later:
            writer.put(event)
        wait_for(lambda: len(spool) == 50, 30, "the events to spool")
        mongo_server.start()
        wait_for(lambda: len(spool) == 0 and writer.store_ok, 30, "the spool to drain")
        writer.close()
        assert [e.id for e in store.find(limit=1000)] == [e.id for e in first + later]
