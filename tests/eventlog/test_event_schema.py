"""The event schema (version 2): constructing, serialising, reading stored documents back,
and making any event storable without ever raising."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from eventlog_cases import BASE, SOURCE

from triggerd.eventlog.safe import safe_key, safe_text, sanitize
from triggerd.eventlog.schema import SCHEMA_VERSION, LogEvent, new_id


def full_event() -> LogEvent:
    return LogEvent(
        "task.started",
        "t started on w1",
        run="r",
        workflow="wf",
        dag="main",
        task="t",
        rule="rule",
        level="info",
        data={"worker": "w1"},
        time=BASE,
        host="h",
        pid=7,
        worker="w1",
        source=SOURCE,
    )


def test_the_engines_keyword_arguments_still_construct_an_event():
    """kind and message positional, the rest by keyword, as engine and daemon call it; v is 2."""
    event = LogEvent(
        "run.started",
        "started",
        run="r",
        workflow="wf",
        rule="x",
        dag=None,
        task=None,
        level="info",
        data={},
    )
    assert (event.v, SCHEMA_VERSION, event.worker, event.source) == (2, 2, None, None)
    assert len(event.id) == 26 and event.time.tzinfo is not None


def test_to_dict_has_every_field_and_from_dict_inverts_it():
    event = full_event()
    doc = event.to_dict()
    assert list(doc) == [
        "kind",
        "message",
        "run",
        "workflow",
        "dag",
        "task",
        "rule",
        "level",
        "data",
        "id",
        "time",
        "host",
        "pid",
        "worker",
        "source",
        "v",
    ]
    assert doc["time"] == "2026-11-25T18:00:00.123456Z"
    assert LogEvent.from_dict(doc) == event
    assert LogEvent.from_dict(json.loads(json.dumps(doc))) == event


def test_from_dict_reads_stored_documents_and_older_versions():
    """_id for id, a naive datetime as UTC, JSON text payloads, missing optional fields,
    unknown ones ignored."""
    stored = {
        "_id": "01ABC",
        "v": 1,
        "time": datetime(2026, 1, 2, 3, 4, 5),
        "ts": datetime(2026, 1, 2, 3, 4, 5),
        "kind": "log",
        "message": "m",
        "data": '{"n": 1}',
        "extra": "ignored",
    }
    event = LogEvent.from_dict(stored)
    assert (event.id, event.v, event.data, event.level) == ("01ABC", 1, {"n": 1}, "info")
    assert event.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (event.run, event.worker, event.source, event.pid, event.host) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert LogEvent.from_dict({"kind": "log", "time": "2026-01-02T03:04:05+02:00"}).time.hour == 1


def test_ids_are_time_ordered_and_unique():
    made = [new_id() for _ in range(1000)]
    assert made == sorted(made) and len(set(made)) == 1000
    assert made[-1] < new_id(now_ms=1) < new_id()  # a clock going back does not break the order


def test_sanitize_leaves_a_clean_event_as_it_is_and_is_idempotent():
    event = full_event()
    assert sanitize(event) == event
    awkward = LogEvent(
        "log", "a\udcff", data={"a.b": b"\xff", "t": (1, 2)}, time=BASE.replace(tzinfo=None)
    )
    once = sanitize(awkward)
    assert sanitize(once) == once
    assert (once.message, once.data, once.time) == (
        "a\\xff",
        {"a\uff0eb": "b'\\xff'", "t": [1, 2]},
        BASE,
    )


def test_sanitize_puts_times_in_utc_and_mends_odd_fields():
    """An aware time in another zone becomes UTC; a non-str time, pid, host or
    id does not break it."""
    there = BASE.astimezone(timezone(timedelta(hours=10)))
    assert sanitize(LogEvent("log", time=there)).time.tzinfo == UTC
    odd = sanitize(
        LogEvent(
            "log", time="2026-11-25T18:00:00Z", pid="12", host=5, id="", data=[1, 2], source="s"
        )
    )  # type: ignore[arg-type]
    assert odd.time == datetime(2026, 11, 25, 18, tzinfo=UTC)
    assert (odd.pid, odd.host, len(odd.id), odd.data, odd.source) == (
        None,
        "5",
        26,
        {"value": [1, 2]},
        {"value": "s"},
    )


def test_safe_text_and_safe_key():
    assert safe_text("x" * 10, limit=4) == "xxxx [truncated 6 chars]"
    assert safe_text("caf\udce9") == "caf\\xe9"
    # not a surrogate escape: shown as its code point
    assert safe_text("\ud800 lone") == "\\ud800 lone"
    assert [safe_key(k) for k in ("a.b", "$x", "a$", None, 1.5, "nul\x00")] == [
        "a\uff0eb",
        "\uff04x",
        "a$",
        "None",
        "1\uff0e5",
        "nul\\x00",
    ]


def test_an_event_that_cannot_be_mended_becomes_an_error_record_of_its_run():
    """Even a time zone that raises does not make sanitize raise: a log record
    keeps the id and run."""

    class BrokenZone(tzinfo):
        def utcoffset(self, moment):
            raise RuntimeError("zone broken")

    event = LogEvent("task.started", run="r1", time=datetime(2026, 1, 1, tzinfo=BrokenZone()))
    mended = sanitize(event)
    assert (mended.kind, mended.level, mended.id, mended.run) == ("log", "error", event.id, "r1")
    assert mended.data == {"error": "RuntimeError('zone broken')", "kind": "task.started"}
