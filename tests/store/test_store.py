"""The data store on both backends (SQLite, MongoDB) against the real signed codec, real
files, a real MongoDB-wire server and real processes: the same calls, the same results."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from store_backends import KEY, open_store

from triggerd.config import load_settings
from triggerd.engine.codec import Codec, PayloadRejected, UnpicklableData
from triggerd.errors import TriggerdError
from triggerd.store import DocumentExists, DocumentMissing, KeyConflict, SqliteDataStore
from triggerd.store._common import blob_binding
from triggerd.store.factory import make_store
from triggerd.store.mongodb import MongoDataStore


class _Exploit:
    """Unpickling this creates a file: proof that a payload was (wrongly) unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_nested_dot_notation_set_creates_dicts_and_get_reads_at_any_depth(doc):
    """set('a.b.c') creates the intermediate dicts and get reads each level, incl. list indexes."""
    assert doc.set("a.b.c", 1) is True
    doc.set("a.b.d", "x")
    doc.set("rows", [{"id": 7}, {"id": 8}])
    assert doc.get("a.b.c") == 1
    assert doc.get("a.b") == {"c": 1, "d": "x"}
    assert doc.get("a") == {"b": {"c": 1, "d": "x"}}
    assert doc.get("rows.1.id") == 8


def test_get_returns_default_for_missing_key_and_missing_intermediate(doc):
    """get returns its default, not None, for a missing key at any depth (Lightflow quirk fixed)."""
    doc.set("a.b", 1)
    assert doc.get("nope", "dflt") == "dflt"
    assert doc.get("x.y.z", 5) == 5
    assert doc.get("a.c", []) == []
    assert doc.get("a.b.c", "deeper than a scalar") == "deeper than a scalar"
    assert doc.get("nope") is None


def test_none_is_stored_and_read_back_as_none(doc):
    """None is a value, distinct from a missing key (Lightflow quirk fixed)."""
    doc.set("v", None)
    doc.set("d", {"k": None, "l": [None]})
    assert doc.get("v", "default") is None
    assert doc.get("d") == {"k": None, "l": [None]}


def test_datetime_and_special_floats_round_trip(doc):
    """Naive and aware datetimes, NaN and infinities come back equal and of the same type."""
    naive = datetime(2026, 11, 25, 18, 55, 17, 123456)
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=10)))
    doc.set("t", {"naive": naive, "aware": aware})
    doc.set("f", [float("inf"), float("-inf"), float("nan"), 1.5])
    assert doc.get("t") == {"naive": naive, "aware": aware}
    inf, ninf, nan, plain = doc.get("f")
    assert (inf, ninf, plain) == (float("inf"), float("-inf"), 1.5) and nan != nan


def test_numpy_array_round_trips_through_a_blob(doc, backend):
    """A numpy array is stored as a signed pickle in a blob (row, GridFS file)
    and decoded on get."""
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    doc.set("img", array)
    assert backend.blob_count() == 1
    assert backend.is_blob_ref(backend.stored("run-1")["img"])
    back = doc.get("img")
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, array)


def test_values_json_cannot_hold_exactly_go_to_blobs(doc, backend):
    """bytes, sets, tuples, int-keyed dicts and '$'-keyed dicts round-trip with their exact type."""
    values = {"b": b"\x00\x01", "s": {1, 2}, "t": (1, 2), "ik": {1: "a"}, "dk": {"$blob": "x"}}
    for key, value in values.items():
        doc.set(key, value)
    assert {key: doc.get(key) for key in values} == values
    assert backend.blob_count() == len(values)


def test_replacing_a_blob_value_deletes_the_old_blobs(doc, backend):
    """set over a value that referenced blobs deletes those blobs, so nothing leaks."""
    doc.set("a", {"x": np.zeros(3), "y": [np.ones(2)]})
    assert backend.blob_count() == 2
    doc.set("a", np.arange(4))
    assert backend.blob_count() == 1
    doc.set("a", 3)
    assert backend.blob_count() == 0
    assert doc.get("a") == 3


def test_push_and_extend_append_and_create_missing_lists(doc):
    """push/extend append to existing lists, create a missing list, and work on nested keys."""
    assert doc.push("new", 1) is True
    doc.push("new", np.int64(2))
    assert doc.get("new") == [1, 2]
    assert doc.extend("a.b", (3, 4)) is True
    doc.push("a.b", 5)
    doc.extend("a.b", [6])
    assert doc.get("a.b") == [3, 4, 5, 6]
    assert doc.get("a.b.2") == 5


def test_extend_with_a_non_list_returns_false_and_writes_nothing(doc):
    """extend refuses anything but a list or tuple, as Lightflow does, without touching the key."""
    doc.set("l", [1])
    assert doc.extend("l", 2) is False
    assert doc.extend("l", "ab") is False
    assert doc.extend("m", {1, 2}) is False
    assert doc.get("l") == [1] and doc.get("m", "absent") == "absent"


def test_push_onto_a_non_list_raises_naming_the_key(doc):
    """push onto a scalar raises a TriggerdError naming the key and leaves the value alone."""
    doc.set("a.b", 5)
    with pytest.raises(KeyConflict, match="'a.b'") as caught:
        doc.push("a.b", 6)
    assert isinstance(caught.value, TriggerdError)
    with pytest.raises(KeyConflict, match="'a.b'"):
        doc.set("a.b.c", 1)
    assert doc.get("a") == {"b": 5}


def test_meta_and_data_sections_are_independent(doc, store):
    """The same key in meta and data holds two values; add's meta lands in the meta section."""
    doc.set("k", "in data")
    doc.set("k", "in meta", section="meta")
    assert doc.get("k") == "in data"
    assert doc.get("k", section="meta") == "in meta"
    assert doc.get("name", section="meta") == "wf" and doc.get("name", "-") == "-"
    expected = {"meta": {"name": "wf", "k": "in meta"}, "data": {"k": "in data"}}
    assert store.snapshot("run-1") == expected


def test_invalid_section_and_invalid_keys_raise_value_error(doc):
    """A section other than meta/data, an empty segment or a '$' segment is refused."""
    with pytest.raises(ValueError, match="section"):
        doc.get("k", section="other")
    with pytest.raises(ValueError, match="section"):
        doc.set("k", 1, section="Data")
    for key in ("", "a..b", "a.$blob", "$x"):
        with pytest.raises(ValueError, match="invalid store key"):
            doc.set(key, 1)


def test_unpicklable_value_raises_naming_the_key_and_writes_nothing(doc, backend):
    """A value the codec cannot pickle fails before the transaction, naming where it sits."""
    doc.set("a", 1)
    with pytest.raises(UnpicklableData, match=r"store data\.a\['lock'\]"):
        doc.set("a", {"ok": 1, "lock": threading.Lock()})
    assert doc.get("a") == 1 and backend.blob_count() == 0


def test_add_exists_get_and_missing_documents(store):
    """add refuses a duplicate run id, get refuses an unknown one, writes to a removed one fail."""
    assert not store.exists("r")
    store.add("r")
    assert store.exists("r")
    with pytest.raises(DocumentExists):
        store.add("r")
    with pytest.raises(ValueError, match="meta keys"):
        store.add("bad-meta", {"a.b": 1})
    assert not store.exists("bad-meta")
    with pytest.raises(DocumentMissing, match="nope"):
        store.get("nope")
    document = store.get("r")
    store.remove("r")
    assert document.set("k", 1) is False
    assert document.get("k", "gone") == "gone"
    with pytest.raises(DocumentMissing):
        store.snapshot("r")


def test_remove_deletes_the_document_and_its_blobs_only(store, backend):
    """remove drops one run's document and blobs, leaving other runs intact."""
    store.add("keep", {"arr": np.ones(2)})
    gone = store.get(store.add("gone"))
    gone.set("a", np.zeros(2))
    gone.push("l", b"bytes")
    assert backend.blob_count() == 3
    store.remove("gone")
    assert not store.exists("gone") and backend.blob_count() == 1
    np.testing.assert_array_equal(store.snapshot("keep")["meta"]["arr"], np.ones(2))


def test_snapshot_decodes_the_whole_document(doc, store):
    """snapshot returns meta and data with datetimes and blobs decoded."""
    start = datetime(2026, 11, 25, 12, 0)
    doc.set("start_time", start, section="meta")
    doc.set("x", {"arr": np.arange(3), "n": None})
    snap = store.snapshot("run-1")
    assert snap["meta"] == {"name": "wf", "start_time": start}
    assert snap["data"]["x"]["n"] is None
    np.testing.assert_array_equal(snap["data"]["x"]["arr"], np.arange(3))


def test_tampered_blob_is_rejected_before_unpickling(doc, backend, tmp_path):
    """A blob edited in the database (row, GridFS file) fails the HMAC check: get raises
    and never unpickles."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Exploit(marker))
    doc.set("obj", np.arange(3))
    body = backend.blob_body()
    # a flipped byte, a valid header+signature over a swapped pickle, an unsigned pickle
    for forged in (body[:-1] + bytes([body[-1] ^ 1]), body[:35] + evil, evil):
        backend.replace_blob_body(forged)
        with pytest.raises(PayloadRejected):
            doc.get("obj")
        assert not marker.exists()


def test_a_blob_of_another_run_is_rejected_before_unpickling(doc, backend):
    """A blob validly signed for another run's document, put in place of this run's (as
    someone with write access to the database could copy it): refused, not unpickled."""
    doc.set("obj", np.arange(3))
    backend.replace_blob_body(Codec(KEY).dumps(np.arange(5), bind=blob_binding("run-2")))
    with pytest.raises(PayloadRejected, match="another run or task"):
        doc.get("obj")


def test_a_store_opened_with_another_key_cannot_read_blobs(doc, backend):
    """Blobs signed with one key are refused by a store whose codec holds another key."""
    doc.set("obj", {1, 2, 3})
    with backend.store(Codec(b"z" * 32)) as other:
        with pytest.raises(PayloadRejected):
            other.get("run-1").get("obj")


def _push_many(spec: tuple[str, ...], worker: int, count: int, go) -> None:
    go.wait(30)
    with open_store(spec, Codec(KEY)) as store:
        document = store.get("shared")
        for i in range(count):
            document.push("items", [worker, i])


def test_concurrent_pushes_from_processes_lose_nothing(store, backend):
    """4 processes × 50 pushes to one key leave all 200 items, each process's in order."""
    store.add("shared")
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_push_many, args=(backend.spec, w, 50, go)) for w in range(4)]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    items = store.get("shared").get("items")
    assert len(items) == 200
    for worker in range(4):
        assert [i for w, i in items if w == worker] == list(range(50))


def test_concurrent_pushes_from_threads_share_one_store(store):
    """8 threads pushing through one store object lose no update and raise nothing."""
    document = store.get(store.add("threads"))
    errors: list[BaseException] = []

    def pusher(worker: int) -> None:
        try:
            for i in range(25):
                document.push("items", (worker, i))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(document.get("items")) == sorted((w, i) for w in range(8) for i in range(25))


def test_store_refuses_use_before_open_and_a_second_store_sees_the_data(backend):
    """Nothing connects at construction, use before open() fails, and another store over
    the same file or collection (opened after the first closed) reads what it wrote."""
    store = backend.store()
    with pytest.raises(TriggerdError, match="not open"):
        store.exists("x")
    with store:
        store.get(store.add("r")).set("a.b", [1, 2])
    with pytest.raises(TriggerdError, match="not open"):
        store.exists("r")
    with backend.store() as again:
        assert again.get("r").get("a.b.1") == 2


def test_sqlite_store_creates_its_file_only_on_open_and_uses_wal(tmp_path: Path):
    """The SQLite file appears at open(), in WAL mode (readers do not block the writer)."""
    db = tmp_path / "sub" / "store.sqlite"
    store = SqliteDataStore(db, Codec(KEY))
    assert not db.exists()
    with store:
        mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert db.exists() and mode == "wal"


def test_section_names_match_the_flow_api():
    """The stores' section names are the ones tasks pass as DataStoreDocumentSection."""
    from triggerd.flow.store import DataStoreDocumentSection
    from triggerd.store import _common, sqlite

    expected = (DataStoreDocumentSection.Meta, DataStoreDocumentSection.Data)
    assert _common.SECTIONS == sqlite._SECTIONS == expected


def test_set_many_applies_overlapping_keys_in_order(doc):
    """A key below an earlier one lands in its value, one above replaces it; a key through
    an earlier scalar raises and writes nothing of the call."""
    assert doc.set_many({"a": {"x": 1}, "a.y": 2, "b.c": 1, "b": 5}) is True
    assert (doc.get("a"), doc.get("b")) == ({"x": 1, "y": 2}, 5)
    with pytest.raises(KeyConflict, match="'c.d'"):
        doc.set_many({"z": 1, "c": 5, "c.d": 1})
    assert doc.get("z", "absent") == "absent" and doc.get("c", "absent") == "absent"
    assert doc.set_many({}) is True


def test_list_indexes_must_exist_and_nothing_is_padded(doc):
    """An index past a list's end or a name on a list raises; the list stays as it was."""
    doc.set("rows", [{"id": 7}, {"id": 8}])
    doc.set("rows.1.id", 9)
    doc.push("rows.0.tags", "a")
    for key in ("rows.5", "rows.5.id", "rows.x"):
        with pytest.raises(KeyConflict, match=f"'{key}': 'rows' holds a list without index"):
            doc.set(key, 1)
    with pytest.raises(KeyConflict, match="'rows.2'"):
        doc.push("rows.2", 1)
    assert doc.get("rows") == [{"id": 7, "tags": ["a"]}, {"id": 9}]


def test_writes_through_a_blob_or_a_datetime_raise_naming_what_is_there(doc):
    """A stored marker counts as a scalar: set below it or push onto it raises KeyConflict."""
    doc.set_many({"img": np.ones(2), "when": datetime(2026, 1, 1)})
    with pytest.raises(KeyConflict, match="'img' holds a pickled object"):
        doc.set("img.x", 1)
    with pytest.raises(KeyConflict, match="'when' holds a datetime, not a list"):
        doc.push("when", 1)
    assert doc.get("when") == datetime(2026, 1, 1)


def test_make_store_opens_the_backend_the_config_names(backend, tmp_path: Path, monkeypatch):
    """make_store(settings, codec) returns the configured backend, opened, over the same data."""
    with backend.store() as first:
        first.get(first.add("r")).set("k", [1, 2])
    if backend.name == "sqlite":
        section = f'path = "{backend.db}"'
    else:
        section = f'backend = "mongodb"\nurl = "{backend.url}"\ncollection = "{backend.collection}"'
    config = tmp_path / "triggerd.toml"
    config.write_text(f"[store]\n{section}\n")
    monkeypatch.chdir(tmp_path)
    store = make_store(load_settings(config), Codec(KEY))
    try:
        assert isinstance(store, SqliteDataStore if backend.name == "sqlite" else MongoDataStore)
        assert store.get("r").get("k.1") == 2
    finally:
        store.close()
