"""What only the MongoDB event log has: its documents and indexes, TTL retention, errors
that name the server, and recovery from an outage and from an insert cut short."""

from __future__ import annotations

import time
from datetime import datetime

import pymongo
import pytest
from eventlog_cases import Clock, failed_run, successful_run
from pymongo.errors import BulkWriteError
from support import free_port

from triggerd.errors import BackendUnavailable, ConfigError, TriggerdError
from triggerd.eventlog.mongodb import MongoEventStore, _document
from triggerd.eventlog.safe import sanitize
from triggerd.eventlog.schema import SCHEMA_VERSION, LogEvent


@pytest.fixture
def raw(mongo_db):
    url, database = mongo_db
    client: pymongo.MongoClient = pymongo.MongoClient(url)
    yield client[database]
    client.close()


def index_keys(collection) -> dict[str, tuple]:
    return {
        name: tuple((k, int(d)) for k, d in spec["key"])
        for name, spec in collection.index_information().items()
    }


def ttls(collection) -> dict[tuple, int | None]:
    return {
        tuple(k for k, _ in spec["key"]): spec.get("expireAfterSeconds")
        for spec in collection.index_information().values()
    }


def test_an_event_is_one_document_keyed_by_its_id(mongo_db, raw):
    """_id is the event id, time exact text, ts a BSON date; fields that are None are left out."""
    url, database = mongo_db
    event = LogEvent("log", "hello", run="r1", data={"n": 1})
    with MongoEventStore(url, database=database) as store:
        store.insert([event])
    [document] = raw.events.find()
    assert document["_id"] == event.id and document["v"] == SCHEMA_VERSION == 2
    assert isinstance(document["ts"], datetime) and document["time"].endswith("Z")
    assert {"dag", "task", "worker", "source", "rule", "workflow"}.isdisjoint(document)
    assert (document["run"], document["data"], document["level"]) == ("r1", {"n": 1}, "info")
    assert raw.run_summaries.find_one({"_id": "r1"})["first"] == document["time"]


def test_indexes_serve_the_queries(mongo_db, raw):
    """Events: (run|workflow|rule|kind, _id) and ts; summaries: (first),
    (status|workflow|rule, first)."""
    url, database = mongo_db
    with MongoEventStore(url, database=database):
        pass
    assert set(index_keys(raw.events).values()) == {
        (("_id", 1),),
        (("run", 1), ("_id", 1)),
        (("workflow", 1), ("_id", 1)),
        (("rule", 1), ("_id", 1)),
        (("kind", 1), ("_id", 1)),
        (("ts", 1),),
    }
    assert set(index_keys(raw.run_summaries).values()) == {
        (("_id", 1),),
        (("first", 1), ("_id", 1)),
        (("status", 1), ("first", 1), ("_id", 1)),
        (("workflow", 1), ("first", 1), ("_id", 1)),
        (("rule", 1), ("first", 1), ("_id", 1)),
    }
    assert ttls(raw.events)[("ts",)] is None


def test_retention_is_a_ttl_index_that_follows_the_configuration(mongo_db, raw):
    """retention_days makes TTL indexes on events.ts and run_summaries.last_ts; a new value
    changes them in place; none turns them off (events keep a plain ts index)."""
    url, database = mongo_db
    with MongoEventStore(url, database=database, retention_days=7) as store:
        store.insert(successful_run(Clock()))
    assert ttls(raw.events)[("ts",)] == 7 * 86400
    assert ttls(raw.run_summaries)[("last_ts",)] == 7 * 86400
    assert isinstance(raw.run_summaries.find_one()["last_ts"], datetime)
    with MongoEventStore(url, database=database, retention_days=1.5):
        pass
    assert (ttls(raw.events)[("ts",)], ttls(raw.run_summaries)[("last_ts",)]) == (129600, 129600)
    with MongoEventStore(url, database=database, retention_days=None):
        pass
    assert ttls(raw.events)[("ts",)] is None
    assert ("last_ts",) not in ttls(raw.run_summaries)
    with MongoEventStore(url, database=database, retention_days=30):
        pass
    assert (ttls(raw.events)[("ts",)], ttls(raw.run_summaries)[("last_ts",)]) == (
        30 * 86400,
        30 * 86400,
    )
    with pytest.raises(ValueError, match="retention_days must be positive"):
        MongoEventStore(url, database=database, retention_days=0)


def test_a_replay_completes_summaries_an_interrupted_insert_left_behind(mongo_db, raw):
    """Events stored without their summary update (a crash in between) get it when the
    batch comes again."""
    url, database = mongo_db
    events = failed_run(Clock())
    raw.events.insert_many([_document(sanitize(event)) for event in events])
    with MongoEventStore(url, database=database) as store:
        assert store.run("run-bad") is None
        assert store.insert(events) == 0
        summary = store.run("run-bad")
    assert (
        summary["status"] == "failed"
        and summary["dags"]["main"]["tasks"]["reduce"]["exit_code"] == 2
    )


def test_write_errors_other_than_duplicate_ids_are_raised(mongo_db, raw):
    """A document the server refuses is an error; duplicates beside it are not what is reported."""
    url, database = mongo_db
    raw.create_collection(
        "events", validator={"$jsonSchema": {"properties": {"message": {"maxLength": 10}}}}
    )
    stored = LogEvent("log", "short")
    with MongoEventStore(url, database=database) as store:
        assert store.insert([stored]) == 1
        with pytest.raises(BulkWriteError) as caught:
            store.insert([stored, LogEvent("log", "far too long a message")])
    assert {error["code"] for error in caught.value.details["writeErrors"]} == {11000, 121}


def test_url_options_reach_the_client_and_defaults_fill_the_rest(mongo_db):
    """Options in the URL are passed on unchanged; without them the timeout is 5 s."""
    url, database = mongo_db
    given_url = url.replace("/?", "/?serverSelectionTimeoutMS=1234&appName=beamline&")
    with MongoEventStore(given_url, database=database) as store:
        options = store._client.options
        given = (options.server_selection_timeout, options.pool_options.metadata["application"])
    with MongoEventStore(url, database=database) as store:
        options = store._client.options
        defaults = (options.server_selection_timeout, options.pool_options.metadata["application"])
    assert given == (1.234, {"name": "beamline"})
    assert defaults == (5, {"name": "triggerd"})


def test_the_database_comes_from_the_argument_else_the_url_else_triggerd(mongo_server):
    """database= wins over the URL's path; the URL's path over the default."""
    named = mongo_server.url.replace("/?", "/eventlog_from_url?")
    with (
        MongoEventStore(named) as from_url,
        MongoEventStore(named, database="eventlog_from_arg") as from_arg,
    ):
        assert (from_url._events.database.name, from_arg._events.database.name) == (
            "eventlog_from_url",
            "eventlog_from_arg",
        )
    with MongoEventStore(mongo_server.url) as default:
        assert default._events.database.name == "triggerd"
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_server.url)
    for name in ("eventlog_from_url", "eventlog_from_arg"):
        client.drop_database(name)
    client.close()


def test_an_unreachable_server_raises_backend_unavailable_with_the_password_masked():
    """open() against a port nobody listens on fails fast, naming the URL without its password."""
    url = f"mongodb://beam:s3cret@127.0.0.1:{free_port()}/log?serverSelectionTimeoutMS=300"
    store = MongoEventStore(url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        store.open()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "s3cret" not in message and "mongodb://beam:***@127.0.0.1:" in message
    assert "the event log is not open" in message
    with pytest.raises(TriggerdError, match="not open"):
        store.insert([LogEvent("log")])


def test_a_malformed_url_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError) as caught:
        MongoEventStore("mongodb://beam:s3cret@127.0.0.1:notaport/").open()
    assert "s3cret" not in str(caught.value)


def test_an_outage_raises_backend_unavailable_and_the_same_batch_is_stored_after_a_restart(
    mongo_db, mongo_server
):
    """With the server killed, insert and find raise BackendUnavailable; once it is back the
    forwarder's retry of the batch stores it whole, once."""
    url, database = mongo_db
    url = url.replace("/?", "/?serverSelectionTimeoutMS=500&")
    first, second = successful_run(Clock(), run="r1"), successful_run(Clock(), run="r2")
    with MongoEventStore(url, database=database) as store:
        store.insert(first)
        mongo_server.stop(kill=True)
        try:
            with pytest.raises(BackendUnavailable, match="inserting 11 events"):
                store.insert(second)
            with pytest.raises(BackendUnavailable, match="reading events"):
                store.find()
        finally:
            mongo_server.start()
        assert store.insert(first + second) == len(second)
        assert [s["run"] for s in store.runs()] == ["r2", "r1"]
        assert store.run("r2")["status"] == "succeeded"
