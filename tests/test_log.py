"""Tests of triggerd.log: renderer choice, level filtering, stdlib records in the same format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from triggerd.log import configure_logging, get_logger


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Give each test a fresh structlog and put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_when_not_a_tty() -> None:
    """On a non-TTY stream each event is one JSON object with event, level and UTC timestamp."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    get_logger("triggerd.test").info("run started", run_id="r1")
    [record] = json_lines(stream)
    assert record["event"] == "run started"
    assert record["level"] == "info"
    assert record["run_id"] == "r1"
    assert record["logger"] == "triggerd.test"
    assert record["timestamp"].endswith("Z")
    datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))


def test_console_on_a_tty() -> None:
    """With fmt auto on a TTY the output is the human console format, not JSON."""
    stream = FakeTTY()
    configure_logging(stream=stream)
    get_logger("triggerd.test").info("run started", run_id="r1")
    text = stream.getvalue()
    assert "run started" in text and "run_id" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_explicit_format_overrides_tty_detection() -> None:
    """fmt='json' gives JSON even on a TTY, fmt='console' gives plain text without colours."""
    tty = FakeTTY()
    configure_logging(fmt="json", stream=tty)
    get_logger().info("hello")
    assert json_lines(tty)[0]["event"] == "hello"
    plain = io.StringIO()
    configure_logging(fmt="console", stream=plain)
    get_logger().info("hello")
    assert "hello" in plain.getvalue() and "\x1b[" not in plain.getvalue()


def test_level_filtering() -> None:
    """Events below the configured level are dropped, for structlog and stdlib loggers alike."""
    stream = io.StringIO()
    configure_logging(level="warning", stream=stream)
    log = get_logger("triggerd.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    logging.getLogger("somelib").info("lib info")
    log.error("e")
    assert [r["event"] for r in json_lines(stream)] == ["w", "e"]


def test_stdlib_records_rendered_the_same_way() -> None:
    """A plain logging record from a library comes out as JSON with the same keys."""
    stream = io.StringIO()
    configure_logging(level="debug", stream=stream)
    logging.getLogger("somelib.sub").debug("connected to %s", "db:27017")
    [record] = json_lines(stream)
    assert record["event"] == "connected to db:27017"
    assert record["level"] == "debug"
    assert record["logger"] == "somelib.sub"
    assert record["timestamp"].endswith("Z")


def test_exceptions_rendered_in_json() -> None:
    """log.exception puts the traceback into the JSON object as text."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    try:
        raise RuntimeError("broken")
    except RuntimeError:
        get_logger().exception("task failed")
    [record] = json_lines(stream)
    assert record["event"] == "task failed"
    assert "RuntimeError: broken" in record["exception"]


def test_configuring_again_replaces_the_handler() -> None:
    """A second configure_logging replaces the first: no duplicate lines, new level applies."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(level="debug", stream=second)
    get_logger().debug("once")
    assert first.getvalue() == ""
    assert [r["event"] for r in json_lines(second)] == ["once"]


def test_import_configures_nothing() -> None:
    """Importing triggerd.log leaves structlog unconfigured and installs no handler."""
    import importlib

    import triggerd.log

    before = logging.getLogger().handlers[:]
    importlib.reload(triggerd.log)
    assert not structlog.is_configured()
    assert logging.getLogger().handlers == before


def test_unknown_level_rejected() -> None:
    """An unknown level name is refused with the allowed names."""
    with pytest.raises(ValueError, match="debug, info, warning, error"):
        configure_logging(level="verbose")
