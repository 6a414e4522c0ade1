"""Payloads that neither JSON nor BSON can hold are stored in a safe, readable form by both
backends, never a crash; non-UTF-8 file names survive the round trip readably."""

from __future__ import annotations

import os

import numpy as np
import pytest
from support import wait_for

from triggerd.eventlog.forwarder import EventWriter, Spool, insert_isolating
from triggerd.eventlog.safe import MAX_PAYLOAD, MAX_TEXT
from triggerd.eventlog.schema import LogEvent
from triggerd.eventlog.sqlite import SqliteEventStore

UNDECODABLE = os.fsdecode(b"/data/mx1/sample-\xe9\xff.h5")  # Latin-1 name on a UTF-8 system


def stored(store, event: LogEvent) -> LogEvent:
    assert store.insert([event]) == 1
    [back] = store.find(run=event.run) if event.run else store.find()
    assert back.id == event.id
    return back


def test_bytes_are_stored_as_their_escaped_repr(store):
    back = stored(
        store, LogEvent("output", "raw", data={"line": b"ok \xff\x00 done", "big": bytes(MAX_TEXT)})
    )
    assert back.data["line"] == "b'ok \\xff\\x00 done'"
    assert back.data["big"].endswith(f"' [truncated {MAX_TEXT - (MAX_TEXT - 64) // 4} bytes]")
    assert back.data["big"].startswith("b'\\x00\\x00")


def test_numpy_values_become_numbers_or_a_truncated_repr(store):
    data = {
        "array": np.arange(6).reshape(2, 3),
        "huge": np.zeros(200_000),
        "f": np.float32(0.25),
        "i": np.int64(7),
        "flag": np.bool_(True),
    }
    back = stored(store, LogEvent("task.succeeded", data=data))
    assert back.data["array"] == "array([[0, 1, 2],\n       [3, 4, 5]])"
    assert back.data["huge"].startswith("array([0., 0., 0., ...,")  # numpy summarises; small anyway
    assert (back.data["f"], back.data["i"], back.data["flag"]) == (0.25, 7, True)


def test_a_one_megabyte_string_is_truncated_with_a_note(store):
    text = "x" * (1 << 20)
    back = stored(store, LogEvent("output", text, data={"stdout": text}))
    note = f" [truncated {len(text) - MAX_TEXT} chars]"
    assert back.message == "x" * MAX_TEXT + note
    assert back.data["stdout"] == "x" * MAX_TEXT + note


def test_a_payload_over_the_limit_becomes_a_preview(store):
    # 20 strings under the text limit, 1.3 MiB together
    data = {f"part{i}": "y" * MAX_TEXT for i in range(20)}
    back = stored(store, LogEvent("log", data=data))
    assert set(back.data) == {"truncated", "preview"}
    assert back.data["truncated"].startswith("payload of ") and back.data["truncated"].endswith(
        f"limit of {MAX_PAYLOAD}"
    )
    assert back.data["preview"].startswith('{"part0": "yyy')


def test_a_non_utf8_file_name_comes_back_readable_in_data_message_and_source(store):
    event = LogEvent(
        "trigger.skipped",
        f"ignored {UNDECODABLE}",
        rule="r",
        data={"path": UNDECODABLE, UNDECODABLE: 1},
        source={"path": UNDECODABLE, "size": 3},
    )
    back = stored(store, event)
    readable = "/data/mx1/sample-\\xe9\\xff.h5"
    assert back.message == f"ignored {readable}"
    assert back.data == {"path": readable, readable.replace(".", "\uff0e"): 1}
    assert back.source == {"path": readable, "size": 3}


def test_keys_with_dots_and_dollars_are_made_safe(store):
    data = {"a.b": 1, "$where": {"x.y": 2, "$": 3}, 4: "int key", "ok": [{"$in": [1]}]}
    back = stored(store, LogEvent("log", data=data))
    assert back.data == {
        "a\uff0eb": 1,
        "\uff04where": {"x\uff0ey": 2, "\uff04": 3},
        "4": "int key",
        "ok": [{"\uff04in": [1]}],
    }


def test_other_awkward_values_are_stored(store):
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    loop: dict = {}
    loop["self"] = loop
    data = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "big": 2**80,
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "broken": Broken(),
        "loop": loop,
        "path_obj": os.path,
    }
    back = stored(store, LogEvent("log", data=data, level="WARN", run="r\udcff"))
    assert (back.data["nan"], back.data["inf"], back.data["big"]) == ("nan", "-inf", str(2**80))
    assert (back.data["set"], back.data["tuple"]) == ([1, 2, 3], [1, "a"])
    assert back.data["broken"] == "<Broken whose repr failed: RuntimeError>"
    node, depth = back.data["loop"], 1
    while isinstance(node, dict):
        node, depth = node["self"], depth + 1
    assert isinstance(node, str) and depth > 10  # cut at the depth limit, as a repr
    assert back.data["path_obj"].startswith("<module ")
    assert (back.level, back.run) == ("warning", "r\\xff")


@pytest.mark.parametrize("level", ["debug", "INFO", "warn", 40, "fatal", "nonsense"])
def test_levels_are_stored_in_the_five_known_names(store, level):
    back = stored(store, LogEvent("log", level=level))
    assert back.level in ("debug", "info", "warning", "error", "critical")
    assert back.level == {
        "INFO": "info",
        "warn": "warning",
        40: "error",
        "fatal": "critical",
        "nonsense": "info",
    }.get(level, level)


class Refusing:
    """A real SQLite event store that refuses some events as a server would refuse a
    document (``refuse(event)`` true), or everything (a broken store)."""

    def __init__(self, store, refuse):
        self.store, self.refuse, self.calls = store, refuse, 0

    def open(self):
        return self

    def insert(self, events):
        self.calls += 1
        if any(self.refuse(e) for e in events):
            raise ValueError("document too large")
        return self.store.insert(events)


def test_an_event_the_store_refuses_does_not_hold_up_the_others(tmp_path):
    """One poisoned event in a batch: the others are stored, a note with its id, kind, run and
    the error takes its place, and the writer carries on with later batches."""
    with SqliteEventStore(tmp_path / "events.sqlite") as sqlite:
        store = Refusing(sqlite, lambda e: "POISON" in e.message)
        writer = EventWriter(store, spool=Spool(tmp_path / "spool.jsonl"), delay=0.05)
        events = [LogEvent("output", f"line {i}", run="r1") for i in range(20)]
        events[7] = LogEvent("output", "POISON " + "x" * 100, run="r1", task="t")
        writer.start()
        for event in events:
            writer.put(event)
        later = LogEvent("trigger.fired", "after", rule="r")
        writer.put(later)
        wait_for(lambda: writer.written == 21, 10, "every event written")
        writer.close()
        stored = {e.id: e for e in sqlite.find(limit=100)}
        assert set(stored) == {e.id for e in [*events, later]}
        note = stored[events[7].id]
        assert note.kind == "eventlog.refused" and note.level == "error" and note.task == "t"
        assert note.data["kind"] == "output" and note.data["run"] == "r1"
        assert "ValueError: document too large" in note.data["error"] and note.run is None
        assert [e.message for e in sqlite.find(run="r1", limit=100)] == [
            f"line {i}" for i in range(20) if i != 7
        ]


def test_a_store_that_refuses_everything_keeps_the_events(tmp_path):
    """A store that takes nothing (not even the small note) is a broken store, not a poisoned
    event: the batch goes to the spool, nothing is dropped, and finding out costs a handful
    of attempts, not one per event."""
    with SqliteEventStore(tmp_path / "events.sqlite") as sqlite:
        broken = Refusing(sqlite, lambda e: True)
        events = [LogEvent("output", f"line {i}", run="r1") for i in range(1000)]
        with pytest.raises(ValueError, match="document too large"):
            insert_isolating(broken, events)
        assert broken.calls <= 12
        spool = Spool(tmp_path / "spool.jsonl")
        writer = EventWriter(broken, spool=spool, delay=0.01)
        writer.start()
        for event in events[:10]:
            writer.put(event)
        wait_for(lambda: len(spool) == 10, 10, "the events spooled")
        writer.close()
        assert sqlite.find(limit=10) == [] and not writer.store_ok
