"""Triggers that do not become a run: each a trigger.skipped event, counted per rule and
reason where the daemon records events, and shown by triggerctl rules, status and /metrics."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import httpx
from daemon_harness import Daemon, write_file

from triggerd.config import load_settings
from triggerd.daemon.service import Daemon as Service
from triggerd.log import configure_logging


def test_every_recorded_skip_is_counted_per_rule_and_reason(tmp_path):
    """Counting happens where the daemon records an event, so a trigger.skipped from any
    part of the daemon (the PV side included) is counted, whatever emitted it."""
    configure_logging("warning", "json", stream=io.StringIO())  # as the entry point does
    settings = load_settings(overrides={"paths": {"state_dir": str(tmp_path / "var")}})
    service = Service(settings)
    for rule, reason in [
        ("scan", "debounce"),
        ("scan", "debounce"),
        ("scan", "paused"),
        ("files", "duplicate"),
    ]:
        service.record_event(
            "trigger.skipped", f"{rule}: skipped", rule=rule, data={"reason": reason}
        )
    service.record_event("trigger.fired", "scan: fired", rule="scan")
    assert service.metrics.skipped_by_reason("scan") == {"debounce": 2, "paused": 1}
    assert service.metrics.skipped_by_reason("files") == {"duplicate": 1}
    assert service.metrics.skipped_by_reason() == {"debounce": 2, "duplicate": 1, "paused": 1}


def test_paused_rule_skips_are_events_and_counted_in_rules_status_and_metrics():
    """A paused rule's files: one trigger.skipped each (reason paused, the file named), and
    the count in `triggerctl rules` (table and --json), `triggerctl status` and /metrics."""
    # A short root: the rules table then fits in 100 columns whatever its layout.
    with tempfile.TemporaryDirectory(prefix="skip", dir="/tmp") as root, Daemon(Path(root)) as d:
        d.ctl("pause", "record")
        names = ["a.txt", "b.txt", "c.txt"]
        for name in names:
            write_file(d.incoming / name)

        def skipped_events() -> list[dict]:
            found = d.ctl_json("events", "--kind", "trigger.skipped", "--limit", "100")
            return found if len(found) == len(names) else []

        events = d.wait_for(skipped_events, 20, "three trigger.skipped events")
        assert sorted(e["data"]["event"]["path"] for e in events) == [
            str(d.incoming / n) for n in names
        ]
        assert {(e["rule"], e["data"]["reason"]) for e in events} == {("record", "paused")}
        assert all(e["message"].endswith("skipped: the rule is paused") for e in events)
        assert d.runs_db() == []

        (rule,) = d.ctl_json("rules")
        assert (rule["skipped"]["total"], rule["skipped"]["by_reason"]) == (3, {"paused": 3})
        assert "3 (paused 3)" in d.ctl("rules").stdout
        status = d.ctl_json("status")
        assert (status["skipped"]["total"], status["skipped"]["by_reason"]) == (3, {"paused": 3})
        assert "triggers skipped since the daemon started: 3 (paused 3)" in d.ctl("status").stdout
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://triggerd"
        ) as http:
            metrics = http.get("/metrics").text
        assert "# TYPE triggerd_triggers_skipped_total counter" in metrics
        assert 'triggerd_triggers_skipped_total{rule="record",reason="paused"} 3' in metrics
