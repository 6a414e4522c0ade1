"""What only the MongoDB store does: GridFS for large and non-BSON values, concurrent
writers on one document, connection failures. Against the session's real server."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import datetime

import numpy as np
import pytest
from bson import Binary, ObjectId
from store_backends import KEY, MongoBackend, open_store
from support import free_port

from triggerd.engine.codec import Codec
from triggerd.errors import BackendUnavailable, ConfigError, TriggerdError
from triggerd.store import BlobMissing, DocumentTooLarge
from triggerd.store.mongodb import GRIDFS_THRESHOLD, MongoDataStore


@pytest.fixture
def mongo(mongo_server):
    backend = MongoBackend(mongo_server.url, f"runs_{uuid.uuid4().hex[:12]}")
    yield backend
    backend.close()


def test_a_value_over_the_threshold_goes_to_gridfs_whole_and_comes_back(mongo):
    """A plain value whose BSON exceeds the threshold is one GridFS blob (nested blobs
    included), pushed items too; one under it stays in the document."""
    with mongo.store(gridfs_threshold=64 * 1024) as store:
        document = store.get(store.add("r"))
        big, small = list(range(20_000)), list(range(100))
        document.set_many({"big": big, "small": small, "mixed": {"rows": big, "img": np.ones(3)}})
        document.push("log", "x" * 70_000)
        stored = mongo.stored("r")
        assert stored["small"] == small
        assert mongo.is_blob_ref(stored["big"]) and mongo.is_blob_ref(stored["mixed"])
        assert mongo.is_blob_ref(stored["log"][0]) and mongo.blob_count() == 3
        assert document.get("big") == big and type(document.get("big")) is list
        mixed = document.get("mixed")
        assert mixed["rows"] == big and (mixed["img"] == np.ones(3)).all()
        assert document.get("log") == ["x" * 70_000]


def test_the_default_threshold_is_one_mib_of_bson(mongo):
    """By default a string just under 1 MiB stays inline, one of 1 MiB goes to GridFS."""
    with mongo.store() as store:
        document = store.get(store.add("r"))
        document.set_many({"under": "u" * (GRIDFS_THRESHOLD - 64), "over": "o" * GRIDFS_THRESHOLD})
        stored = mongo.stored("r")
        assert isinstance(stored["under"], str) and mongo.is_blob_ref(stored["over"])
        assert document.get("over") == "o" * GRIDFS_THRESHOLD


def test_numpy_arrays_round_trip_through_gridfs_with_dtype_and_shape(mongo):
    """Arrays of several dtypes, orders and shapes come back equal, same dtype and shape;
    a 4 MiB one is split into GridFS chunks."""
    arrays = {
        "image": np.random.default_rng(1).random((256, 512, 8), dtype=np.float32),
        "complex": np.array([[1 + 2j, 3 - 4j]], dtype=np.complex128),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
        "records": np.array([(1, 2.5), (3, 4.5)], dtype=[("n", "<i4"), ("x", "<f8")]),
        "scalar": np.array(7, dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=bool),
    }
    with mongo.store() as store:
        document = store.get(store.add("r"))
        document.set_many(arrays)
        assert mongo.blob_count() == len(arrays)
        image_file = mongo.files.find_one({"_id": mongo.stored("r")["image"]})
        assert image_file["length"] > arrays["image"].nbytes
        assert mongo.chunks.count_documents({"files_id": image_file["_id"]}) > 1
        for key, array in arrays.items():
            back = document.get(key)
            assert isinstance(back, np.ndarray), key
            assert (back.dtype, back.shape) == (array.dtype, array.shape), key
            np.testing.assert_array_equal(back, array)
        assert document.get("fortran").flags.f_contiguous


def test_remove_deletes_the_runs_gridfs_files_and_chunks_only(mongo):
    """remove drops the run's files and chunks (large and small blobs), not other runs'."""
    with mongo.store() as store:
        for run in ("keep", "gone"):
            store.get(store.add(run)).set_many({"img": np.zeros((600, 600)), "s": {1, 2}})
        assert mongo.files.count_documents({"metadata.run_id": "gone"}) == 2
        chunks_before = mongo.chunks.count_documents({})
        store.remove("gone")
        assert mongo.files.count_documents({"metadata.run_id": "gone"}) == 0
        assert mongo.files.count_documents({"metadata.run_id": "keep"}) == 2
        assert mongo.chunks.count_documents({}) == chunks_before // 2
        np.testing.assert_array_equal(store.get("keep").get("img"), np.zeros((600, 600)))


def _set_many_keys(spec: tuple[str, ...], writer: str, count: int, go) -> None:
    go.wait(30)
    with open_store(spec, Codec(KEY)) as store:
        document = store.get("shared")
        for i in range(count):
            document.set(f"shared.{writer}_{i}", i)
            document.push(f"lists.{writer}", i)


def test_writers_on_different_keys_of_one_document_lose_nothing(mongo):
    """2 processes and 2 threads each set 40 keys of one sub-document and push to lists of
    their own, all at once: every key and every item is there afterwards."""
    with mongo.store() as store:
        store.add("shared")
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Event()
        procs = [
            ctx.Process(target=_set_many_keys, args=(mongo.spec, f"p{w}", 40, go)) for w in range(2)
        ]
        threads = [
            threading.Thread(target=_set_many_keys, args=(mongo.spec, f"t{w}", 40, go))
            for w in range(2)
        ]
        for worker in [*procs, *threads]:
            worker.start()
        go.set()
        for thread in threads:
            thread.join(60)
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        document = store.get("shared")
        writers = ("p0", "p1", "t0", "t1")
        assert document.get("shared") == {f"{w}_{i}": i for w in writers for i in range(40)}
        assert document.get("lists") == {w: list(range(40)) for w in writers}


def test_values_bson_cannot_hold_exactly_go_to_gridfs(mongo):
    """Ints beyond 64 bits, strings that are not UTF-8 and dicts with NUL in a key round-trip
    through blobs; a datetime keeps microseconds as a subtype-0x80 binary, not a BSON date."""
    values = {"huge": 2**64, "low": -(2**63) - 1, "surrogate": "\ud800", "nul": {"a\x00b": 1}}
    when = datetime(2026, 1, 2, 3, 4, 5, 678901)
    with mongo.store() as store:
        document = store.get(store.add("r"))
        document.set_many({**values, "max": 2**63 - 1, "when": when})
        stored = mongo.stored("r")
        assert all(mongo.is_blob_ref(stored[key]) for key in values)
        assert stored["max"] == 2**63 - 1
        assert type(stored["when"]) is Binary and stored["when"].subtype == 0x80
        assert {key: document.get(key) for key in values} == values
        assert document.get("when") == when
        with pytest.raises(ValueError, match="invalid store key"):
            document.set("a\x00b", 1)


def test_a_file_of_another_run_is_not_read(mongo):
    """A document edited to point at another run's GridFS file gets BlobMissing, not its data."""
    with mongo.store() as store:
        store.get(store.add("a")).set("obj", {1, 2})
        store.get(store.add("b")).set("obj", 1)
        mongo.runs.update_one({"_id": "b"}, {"$set": {"data.obj": mongo.stored("a")["obj"]}})
        with pytest.raises(BlobMissing, match="run b"):
            store.get("b").get("obj")
        mongo.runs.update_one({"_id": "b"}, {"$set": {"data.obj": ObjectId()}})
        with pytest.raises(BlobMissing):
            store.snapshot("b")


def test_url_options_reach_the_client_and_defaults_fill_the_rest(mongo):
    """Options in the URL are passed on unchanged; without them the timeout is 5 s."""
    url = mongo.url.replace("/?", "/?serverSelectionTimeoutMS=1234&appName=beamline&")
    with MongoDataStore(url, Codec(KEY), collection=mongo.collection) as store:
        options = store._client.options
        given = (options.server_selection_timeout, options.pool_options.metadata["application"])
    with MongoDataStore(mongo.url, Codec(KEY), collection=mongo.collection) as store:
        options = store._client.options
        defaults = (options.server_selection_timeout, options.pool_options.metadata["application"])
    assert given == (1.234, {"name": "beamline"})
    assert defaults == (5, {"name": "triggerd"})


def test_unreachable_server_raises_backend_unavailable_with_masked_password():
    """open() against a port nobody listens on fails fast, naming the URL without its
    password and what to check."""
    url = f"mongodb://beam:s3cret@127.0.0.1:{free_port()}/triggerd?serverSelectionTimeoutMS=300"
    store = MongoDataStore(url, Codec(KEY))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        store.open()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "s3cret" not in message and "mongodb://beam:***@127.0.0.1:" in message
    assert "store.url" in message and "the data store is not open" in message
    with pytest.raises(TriggerdError, match="not open"):
        store.exists("r")


def test_a_malformed_url_is_a_config_error_naming_store_url():
    """A URL pymongo cannot parse is the configuration's fault, with the password masked."""
    with pytest.raises(ConfigError, match="store.url") as caught:
        MongoDataStore("mongodb://beam:s3cret@127.0.0.1:notaport/", Codec(KEY)).open()
    assert "s3cret" not in str(caught.value)


def test_a_server_outage_raises_backend_unavailable_and_a_restart_recovers(mongo, mongo_server):
    """With the server killed, reads and writes raise BackendUnavailable; once it is back on
    the same port and data, the same store works and kept what was confirmed."""
    url = mongo.url.replace("/?", "/?serverSelectionTimeoutMS=500&")
    with MongoDataStore(url, Codec(KEY), collection=mongo.collection) as store:
        document = store.get(store.add("r"))
        document.set_many({"before": 1, "img": np.arange(3)})
        mongo_server.stop(kill=True)
        try:
            with pytest.raises(BackendUnavailable, match="writing to run r"):
                document.set("during", 2)
            with pytest.raises(BackendUnavailable, match="reading run r"):
                document.get("before")
        finally:
            mongo_server.start()
        assert document.get("before") == 1
        np.testing.assert_array_equal(document.get("img"), np.arange(3))
        assert document.set("after", 3) is True


def test_a_document_past_16_mib_is_a_clear_store_error(mongo):
    """Many values just under the GridFS threshold add up: the write that would pass
    MongoDB's 16 MiB is refused with DocumentTooLarge naming the run and the keys, and the
    document keeps what it had."""
    with mongo.store() as store:
        document = store.get(store.add("r"))
        chunk = "c" * (GRIDFS_THRESHOLD - 1024)
        for i in range(15):
            document.set(f"k{i}", chunk)
        with pytest.raises(
            DocumentTooLarge, match=r"run r: writing data\.k15, data\.k16 would make .* 16 MiB"
        ):
            document.set_many({"k15": chunk, "k16": chunk})
        assert document.get("k14") == chunk and document.get("k15", None) is None
