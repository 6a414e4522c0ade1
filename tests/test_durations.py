"""One spelling of durations, rates and "since" for rules, config and every CLI option."""

from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from triggerd.cli.common import since_option
from triggerd.durations import parse_duration, parse_rate, parse_since


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("5sec", 5.0),
        ("2m", 120.0),
        ("90min", 5400.0),
        ("1.5h", 5400.0),
        ("3d", 259200.0),
        (" 7 s ", 7.0),
        (12, 12.0),
        (0.5, 0.5),
    ],
)
def test_a_duration_has_one_spelling(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "5", "-1s", "5 weeks", "", True, -3, float("inf")])
def test_a_bad_duration_says_what_was_expected(bad):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_a_rate_is_a_count_per_unit():
    assert parse_rate("10/min") == (10, 60.0)
    with pytest.raises(ValueError, match="N/min"):
        parse_rate("0/min")


def test_since_takes_every_duration_or_an_iso_time():
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert parse_since("90min", now=now) == now - timedelta(minutes=90)
    assert parse_since("3d", now=now) == now - timedelta(days=3)
    assert parse_since("250ms", now=now) == now - timedelta(milliseconds=250)
    assert parse_since("2026-12-01T08:00:00+01:00") == datetime(2026, 12, 1, 7, tzinfo=UTC)
    assert parse_since("2026-12-01T08:00") == datetime(2026, 12, 1, 8, tzinfo=UTC)  # UTC
    assert parse_since(None) is None and parse_since("") is None
    with pytest.raises(ValueError, match="30m, 2h or 3d.*not 'yesterday'"):
        parse_since("yesterday")


def test_every_since_option_refuses_the_same_way_before_asking_the_daemon():
    @click.command()
    @since_option("things")
    def command(since):
        click.echo(f"since={since}")

    runner = CliRunner()
    assert runner.invoke(command, ["--since", "90min"]).output == "since=90min\n"
    refused = runner.invoke(command, ["--since", "a while"])
    assert refused.exit_code == 2
    assert "Invalid value for '--since'" in refused.output and "a while" in refused.output
