"""The dispatcher: from matched file events to runs in the outbox, and from there to submit.

Rules come from real TOML files, the outbox is a real state file; time is passed in, so
debounce, batching and rate limits are checked at exact instants, without sleeping.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from pathlib import Path
from typing import Any

import pytest

from triggerd.daemon.dispatcher import Dispatcher, idempotency_key, pv_key
from triggerd.daemon.rules import RuleSet, load_rules
from triggerd.daemon.state import RunRow, StateDB
from triggerd.sources.events import FileEvent
from triggerd.sources.pv import PvEvent

ROOT = "/data/mx1"
MTIME_NS = 1_764_096_917_123_456_789


def rule(
    name: str = "compress",
    *,
    workflow: str = "squashfs_compress",
    params: str = '{ file = "{path}", visit = "{match[visit]}" }',
    limits: str = "",
    enabled: bool = True,
    pattern: str = r"(?P<visit>[^/]+)/raw/.+\.h5$",
) -> str:
    """The TOML of one file rule under /data/mx1."""
    lines = ["[[rule]]", f'name = "{name}"', f'workflow = "{workflow}"', "params = " + params]
    if limits:
        lines.append("limits = " + limits)
    if not enabled:
        lines.append("enabled = false")
    lines += ["", "[rule.files]", f'roots = ["{ROOT}"]', f"pattern = '{pattern}'", ""]
    return "\n".join(lines)


def ev(
    relative: str,
    t: float = 0.0,
    *,
    size: int = 100,
    mtime_ns: int = MTIME_NS,
    inode: int | None = None,
) -> FileEvent:
    """A complete file under /data/mx1 seen at ``t``; the inode is fixed per path."""
    path = f"{ROOT}/{relative}"
    return FileEvent(
        path,
        ROOT,
        size,
        mtime_ns,
        zlib.crc32(path.encode()) if inode is None else inode,
        "closed",
        t,
    )


class Harness:
    """A dispatcher over a real state file, recording what it submits and notifies."""

    def __init__(self, state: StateDB, rules: RuleSet, *, mark_submitted: bool = False):
        self.state = state
        self.mark_submitted = mark_submitted
        self.submitted: list[RunRow] = []
        self.notes: list[tuple[str, str, dict[str, Any]]] = []
        self.d = Dispatcher(state, rules, submit=self.submit, record_event=self.notify)

    def submit(self, row: RunRow) -> None:
        self.submitted.append(row)
        if self.mark_submitted:  # as the service does once the executor took the run
            self.state.set_state(row.run_id, "submitted", attempt=True)

    def notify(self, kind: str, message: str, **fields: Any) -> None:
        self.notes.append((kind, message, fields))

    def of(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [note for note in self.notes if note[0] == kind]

    @property
    def ids(self) -> list[str]:
        return [row.run_id for row in self.submitted]


@pytest.fixture
def state(tmp_path: Path):
    db = StateDB(tmp_path / "state.sqlite").open()
    yield db
    db.close()


@pytest.fixture
def load(tmp_path: Path):
    """``load(*rule_texts) -> RuleSet``, each call from a directory of its own."""
    numbers = itertools.count()

    def load(*texts: str) -> RuleSet:
        directory = tmp_path / f"triggers{next(numbers)}"
        directory.mkdir()
        (directory / "rules.toml").write_text("\n".join(texts))
        return load_rules([directory])

    return load


@pytest.fixture
def make(state, load):
    """``make(*rule_texts) -> Harness`` over the test's state file."""

    def make(*texts: str) -> Harness:
        return Harness(state, load(*texts))

    return make


# -- one file, one rule ------------------------------------------------------------------


def test_matching_file_is_queued_and_submitted_once_with_rendered_params(make, state):
    """A matching file becomes one run in the outbox, submitted at once with its params rendered."""
    h = make(rule())
    event = ev("v1/raw/a.h5", 10.0)
    assert h.d.on_file(ev("v1/processed/a.h5", 10.0), 10.0) == []  # no match: nothing at all
    assert h.submitted == [] and h.notes == []

    (run_id,) = h.d.on_file(event, 10.0)
    (row,) = h.submitted
    assert (row.run_id, row.rule, row.workflow) == (run_id, "compress", "squashfs_compress")
    assert row.params == {"file": f"{ROOT}/v1/raw/a.h5", "visit": "v1"}
    assert row.trigger == [event.to_dict()]
    assert row.key == idempotency_key("compress", [event])
    assert state.run(run_id) is not None and state.dispatched("compress", event.identity)
    assert [entry.run_id for entry in state.ledger_for(event.path)] == [run_id]
    (fired,) = h.of("trigger.fired")
    assert (
        fired[2]["run"] == run_id
        and fired[2]["rule"] == "compress"
        and fired[2]["workflow"] == "squashfs_compress"
    )
    assert (h.d.queued(), h.d.running()) == (0, 1)


def test_same_file_version_is_skipped_as_already_dispatched(make):
    """The same version of a file again is skipped with a reason and never submitted twice."""
    h = make(rule())
    assert len(h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)) == 1
    assert h.d.on_file(ev("v1/raw/a.h5", 2.0), 2.0) == []
    assert len(h.submitted) == 1
    (skipped,) = h.of("trigger.skipped")
    assert skipped[2]["rule"] == "compress"
    assert skipped[2]["data"]["reason"] == "duplicate"
    assert "dispatched before" in skipped[1]
    assert skipped[2]["data"]["event"]["path"] == f"{ROOT}/v1/raw/a.h5"


@pytest.mark.parametrize("change", [{"size": 200}, {"mtime_ns": MTIME_NS + 1}, {"inode": 99}])
def test_new_version_of_a_file_fires_again(make, state, change):
    """A rewrite (other size or mtime) or a replacement (other inode) of a file is a new trigger."""
    h = make(rule())
    first, second = ev("v1/raw/a.h5", 1.0), ev("v1/raw/a.h5", 2.0, **change)
    (run1,) = h.d.on_file(first, 1.0)
    (run2,) = h.d.on_file(second, 2.0)
    assert h.ids == [run1, run2] and run1 != run2
    assert h.submitted[0].key != h.submitted[1].key
    assert h.of("trigger.skipped") == []
    assert len(state.ledger_for(first.path)) == 2


def test_two_rules_matching_one_file_give_two_runs(make, state):
    """Each rule that matches a file starts its own run, with its own key and ledger row."""
    h = make(rule("compress"), rule("reduce", workflow="saxs_reduce", params='{ name = "{name}" }'))
    event = ev("v1/raw/a.h5", 1.0)
    run_ids = h.d.on_file(event, 1.0)
    assert len(run_ids) == 2 and h.ids == run_ids
    assert [(r.rule, r.workflow, r.params) for r in h.submitted] == [
        ("compress", "squashfs_compress", {"file": event.path, "visit": "v1"}),
        ("reduce", "saxs_reduce", {"name": "a.h5"}),
    ]
    assert h.submitted[0].key != h.submitted[1].key
    assert {entry.rule for entry in state.ledger_for(event.path)} == {"compress", "reduce"}


def test_paused_rule_skips_until_resumed(make, state):
    """A paused rule skips files with a reason and marks nothing dispatched; resumed, it fires."""
    h = make(rule())
    h.d.paused.add("compress")
    paused_file = ev("v1/raw/a.h5", 1.0)
    assert h.d.on_file(paused_file, 1.0) == []
    (skipped,) = h.of("trigger.skipped")
    assert skipped[2]["data"]["reason"] == "paused"
    assert skipped[1] == f"compress: {paused_file.path} skipped: the rule is paused"
    assert not state.dispatched("compress", paused_file.identity)
    h.d.paused.discard("compress")
    (run_id,) = h.d.on_file(ev("v1/raw/b.h5", 2.0), 2.0)
    assert h.ids == [run_id]


def test_rule_disabled_in_its_file_starts_paused(make):
    """enabled = false in the rule file makes the rule start paused; another rule still fires."""
    h = make(rule("off", enabled=False), rule("on"))
    assert h.d.paused == {"off"}
    assert len(h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)) == 1
    assert [r.rule for r in h.submitted] == ["on"]
    assert [note[2]["rule"] for note in h.of("trigger.skipped")] == ["off"]


def test_draining_skips_new_files(make, state):
    """While draining, matching files are skipped with a reason and nothing is queued."""
    h = make(rule())
    h.d.draining = True
    assert h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0) == []
    (skipped,) = h.of("trigger.skipped")
    assert skipped[2]["data"]["reason"] == "draining"
    assert h.submitted == [] and h.d.queued() == 0 and state.counts() == {}


# -- concurrency and rate ----------------------------------------------------------------


def test_concurrency_limit_holds_runs_in_order(make, state):
    """With concurrent = 2, five files give two submitted runs; each finished run
    releases the next, in order."""
    h = make(rule(limits="{ concurrent = 2 }"))
    run_ids = [h.d.on_file(ev(f"v1/raw/{n}.h5", float(n)), float(n))[0] for n in range(5)]
    assert h.ids == run_ids[:2]
    assert (h.d.queued(), h.d.running()) == (3, 2)
    assert [row.run_id for row in state.queued()] == run_ids  # all still in the outbox
    h.d.finished(run_ids[1], 10.0)
    assert h.ids == run_ids[:3]
    assert (h.d.queued(), h.d.running()) == (2, 2)
    h.d.finished(run_ids[1], 11.0)  # a second report of the same end frees nothing
    assert h.ids == run_ids[:3]
    h.d.finished(run_ids[0], 12.0)
    h.d.finished(run_ids[2], 13.0)
    assert h.ids == run_ids
    assert (h.d.queued(), h.d.running()) == (0, 2)


def test_rule_at_its_limit_does_not_hold_up_another_rule(make):
    """A rule with a full queue does not delay the runs of another rule."""
    h = make(
        rule("slow", limits="{ concurrent = 1 }"),
        rule("fast", pattern=r"(?P<visit>[^/]+)/fast/.+\.h5$"),
    )
    h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)
    h.d.on_file(ev("v1/raw/b.h5", 2.0), 2.0)
    (fast,) = h.d.on_file(ev("v1/fast/c.h5", 3.0), 3.0)
    assert [r.rule for r in h.submitted] == ["slow", "fast"]
    assert h.ids[-1] == fast and h.d.queued() == 1


def test_rate_limit_defers_until_the_window_moves(make):
    """With rate = '2/min', a third run waits until 60 s after the first and
    starts when pumped then."""
    h = make(rule(limits='{ rate = "2/min" }'))
    now = 1000.0
    run_ids = [h.d.on_file(ev(f"v1/raw/{n}.h5", now), now)[0] for n in range(3)]
    assert h.ids == run_ids[:2] and h.d.queued() == 1
    assert h.d.next_rate_slot(now) == now + 60
    h.d.finished(run_ids[0], now + 1)  # ending a run does not lift a rate limit
    h.d.pump(now + 59)
    assert h.ids == run_ids[:2]
    h.d.pump(now + 61)
    assert h.ids == run_ids and h.d.queued() == 0


def test_rate_limit_counts_a_released_run_from_when_it_was_submitted(make):
    """A run released by tick(now) counts against the rate limit from ``now``, not from
    when its file was seen."""
    h = make(rule(limits='{ debounce = "5s", rate = "1/min" }'))
    h.d.on_file(ev("v1/raw/a.h5", 0.0), 0.0)
    h.d.tick(5.0)
    assert len(h.submitted) == 1
    h.d.on_file(ev("v2/raw/b.h5", 31.0), 31.0)
    h.d.tick(36.0)
    assert len(h.submitted) == 1 and h.d.queued() == 1
    assert h.d.next_rate_slot(36.0) == 65.0  # one run per minute: the first started at 5
    h.d.pump(60.0)
    assert len(h.submitted) == 1, "a second run 55 s after the first breaks rate = '1/min'"


def test_next_rate_slot_is_none_when_no_run_waits(make):
    """With nothing queued, next_rate_slot asks for no wake-up (a past slot would
    make the daemon spin)."""
    h = make(rule(limits='{ rate = "2/min" }'))
    h.d.on_file(ev("v1/raw/a.h5", 0.0), 0.0)
    assert h.d.queued() == 0
    h.d.pump(61.0)
    assert h.d.next_rate_slot(61.0) is None


def test_rejected_submit_frees_its_slot(make, state):
    """A run the executor refused (the service marks it rejected and calls
    finished) frees its slot."""
    h = make(rule(limits="{ concurrent = 1 }"))
    first = h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)[0]
    second = h.d.on_file(ev("v1/raw/b.h5", 2.0), 2.0)[0]
    assert h.ids == [first]
    state.set_state(first, "rejected", error="no such workflow")
    h.d.finished(first, 3.0)
    assert h.ids == [first, second]
    assert h.d.running() == 1 and h.d.queued() == 0


# -- debounce and batching ---------------------------------------------------------------


def test_debounce_releases_one_run_after_the_quiet_period(make, state):
    """Three files rendering the same params within the debounce become one run
    5 s after the last."""
    h = make(rule(params='{ dataset = "{dir}" }', limits='{ debounce = "5s" }'))
    events = [ev(f"v1/raw/{n}.h5", float(n)) for n in range(3)]
    for event in events:
        assert h.d.on_file(event, event.seen_at) == []
    assert h.d.held() == 3 and state.counts() == {}
    assert h.d.tick(6.9) == pytest.approx(7.0)
    assert h.submitted == [] and h.d.held() == 3
    assert h.d.tick(7.1) is None
    (row,) = h.submitted
    assert [t["path"] for t in row.trigger] == [e.path for e in events]
    assert row.params == {"dataset": f"{ROOT}/v1/raw"}
    assert row.key == idempotency_key("compress", events)
    for event in events:
        assert state.dispatched("compress", event.identity)
        assert [entry.run_id for entry in state.ledger_for(event.path)] == [row.run_id]
    assert h.d.held() == 0
    assert h.d.on_file(events[0], 8.0) == []  # and a late repeat is already dispatched


def test_debounce_keeps_groups_with_different_params_apart(make):
    """Files rendering different params are debounced separately, each group its own run."""
    h = make(rule(params='{ dataset = "{dir}" }', limits='{ debounce = "5s" }'))
    h.d.on_file(ev("v1/raw/a.h5", 0.0), 0.0)
    h.d.on_file(ev("v2/raw/b.h5", 3.0), 3.0)
    h.d.on_file(ev("v1/raw/c.h5", 1.0), 1.0)
    assert h.d.tick(6.5) == pytest.approx(8.0)
    assert [r.params for r in h.submitted] == [{"dataset": f"{ROOT}/v1/raw"}]
    h.d.tick(8.0)
    assert [r.params["dataset"] for r in h.submitted] == [f"{ROOT}/v1/raw", f"{ROOT}/v2/raw"]
    assert [len(r.trigger) for r in h.submitted] == [2, 1]


def test_debounce_with_files_param_gives_one_run_with_all_files(make):
    """A debounced rule using {files}/{count} still groups by its other params: one
    run lists every file."""
    h = make(
        rule(
            params='{ dataset = "{dir}", files = "{files}", count = "{count}" }',
            limits='{ debounce = "5s" }',
        )
    )
    events = [ev(f"v1/raw/{n}.h5", float(n)) for n in range(3)]
    for event in events:
        h.d.on_file(event, event.seen_at)
    h.d.tick(7.1)
    assert [r.params for r in h.submitted] == [
        {"dataset": f"{ROOT}/v1/raw", "files": [e.path for e in events], "count": 3}
    ]


def test_batch_is_released_at_its_size(make, state):
    """With batch = 3, the third file releases one run whose {files} and {count} cover all three."""
    h = make(
        rule(
            params='{ files = "{files}", count = "{count}", first = "{name}" }',
            limits="{ batch = 3 }",
        )
    )
    events = [ev(f"v{n}/raw/{n}.h5", float(n)) for n in range(3)]
    assert h.d.on_file(events[0], 0.0) == [] and h.d.on_file(events[1], 1.0) == []
    assert h.submitted == [] and h.d.held() == 2
    (run_id,) = h.d.on_file(events[2], 2.0)
    (row,) = h.submitted
    assert row.run_id == run_id
    assert row.params == {"files": [e.path for e in events], "count": 3, "first": "0.h5"}
    assert all(state.dispatched("compress", e.identity) for e in events)
    assert h.d.held() == 0


def test_batch_window_releases_a_partial_batch(make):
    """With batch_window = '10s', the files held so far go out as one run 10 s after the first."""
    h = make(
        rule(
            params='{ files = "{files}", count = "{count}" }',
            limits='{ batch = 5, batch_window = "10s" }',
        )
    )
    now = 100.0
    h.d.on_file(ev("v1/raw/a.h5", now), now)
    h.d.on_file(ev("v1/raw/b.h5", now + 4), now + 4)
    assert h.d.tick(now + 9.9) == pytest.approx(now + 10)
    assert h.submitted == []
    assert h.d.tick(now + 10) is None
    (row,) = h.submitted
    assert row.params == {"files": [f"{ROOT}/v1/raw/a.h5", f"{ROOT}/v1/raw/b.h5"], "count": 2}


def test_same_file_twice_in_a_held_group_counts_once(make):
    """A file version reported twice while held is one member of the group."""
    h = make(rule(params='{ count = "{count}" }', limits='{ batch_window = "10s" }'))
    h.d.on_file(ev("v1/raw/a.h5", 0.0), 0.0)
    h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)
    assert h.d.held() == 1
    (skipped,) = h.of("trigger.skipped")
    assert skipped[2]["data"]["reason"] == "duplicate" and "held for the next run" in skipped[1]
    h.d.tick(10.0)
    assert [r.params for r in h.submitted] == [{"count": 1}]


@pytest.mark.parametrize("closed", ["paused", "draining"])
def test_held_files_released_while_closed_are_skipped_one_event_each(make, closed):
    """Files held by debounce when the rule is paused (or the daemon drains) start no run:
    each is one trigger.skipped naming the file, and nothing stays held."""
    h = make(rule(params='{ dataset = "{dir}" }', limits='{ debounce = "5s" }'))
    events = [ev(f"v1/raw/{n}.h5", float(n)) for n in range(3)]
    for event in events:
        h.d.on_file(event, event.seen_at)
    if closed == "paused":
        h.d.paused.add("compress")
    else:
        h.d.draining = True
    assert h.d.tick(10.0) is None
    assert h.submitted == [] and h.d.held() == 0
    skipped = h.of("trigger.skipped")
    assert [(f["data"]["reason"], f["data"]["event"]["path"]) for _, _, f in skipped] == [
        (closed, e.path) for e in events
    ]


def test_held_file_dispatched_meanwhile_is_skipped_as_duplicate(make, state):
    """A held file whose version the ledger got meanwhile (another run took it) is skipped
    at release, with its own event; the rest of the group still runs."""
    h = make(rule(params='{ dataset = "{dir}" }', limits='{ debounce = "5s" }'))
    taken, fresh = ev("v1/raw/a.h5", 0.0), ev("v1/raw/b.h5", 0.0)
    h.d.on_file(taken, 0.0)
    h.d.on_file(fresh, 0.0)
    state.enqueue(
        run_id="other",
        key="other",
        rule="compress",
        workflow="w",
        params={},
        trigger=[],
        files=[taken.identity],
        waiting=False,
    )
    h.d.tick(10.0)
    (row,) = h.submitted
    assert [t["path"] for t in row.trigger] == [fresh.path]
    (skipped,) = h.of("trigger.skipped")
    assert (skipped[2]["data"]["reason"], skipped[2]["data"]["event"]["path"]) == (
        "duplicate",
        taken.path,
    )


# -- keys, manual runs, the outbox ---------------------------------------------------------


def test_idempotency_key_is_stable_for_rule_and_file_versions():
    """The key depends on the rule and the set of file versions, not on their order."""
    a, b, c = ev("v1/raw/a.h5"), ev("v1/raw/b.h5"), ev("v1/raw/c.h5")
    key = idempotency_key("compress", [a, b, c])
    assert key.startswith("file:")
    assert idempotency_key("compress", [c, a, b]) == key
    assert idempotency_key("compress", [a, b, c]) == key
    assert idempotency_key("reduce", [a, b, c]) != key
    assert idempotency_key("compress", [a, b]) != key
    assert idempotency_key("compress", [a, b, ev("v1/raw/c.h5", size=101)]) != key
    assert idempotency_key("compress", [ev("v1/raw/a.h5", 99.0)]) == idempotency_key(
        "compress", [a]
    )  # seen_at is not identity


def test_manual_start_bypasses_rule_limits(make, state):
    """start_manual queues a run with no rule and key 'manual:<id>', submitted even when a
    rule is at its limit."""
    h = make(rule(limits="{ concurrent = 1 }"))
    h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)
    h.d.on_file(ev("v1/raw/b.h5", 2.0), 2.0)
    assert (h.d.running(), h.d.queued()) == (1, 1)
    run_id = h.d.start_manual("squashfs_compress", {"dataset": "/x"}, now=3.0)
    row = h.submitted[-1]
    assert (row.run_id, row.rule, row.key, row.params, row.replay_of) == (
        run_id,
        None,
        f"manual:{run_id}",
        {"dataset": "/x"},
        None,
    )
    assert row.trigger == [{"type": "manual"}]
    assert state.run(run_id).state == "queued"  # the outbox row; the service marks it submitted
    assert (h.d.running(), h.d.queued()) == (2, 1)
    fired = h.of("trigger.fired")[-1]
    assert fired[2]["run"] == run_id and fired[2]["rule"] is None
    h.d.finished(run_id, 4.0)  # a manual run ending frees no rule slot
    assert (h.d.running(), h.d.queued()) == (1, 1)


def test_replay_keeps_what_it_replays(make, state):
    """A replay has key 'replay:<id>' and remembers the run it replays."""
    h = make(rule())
    (original,) = h.d.on_file(ev("v1/raw/a.h5", 1.0), 1.0)
    old = state.run(original)
    run_id = h.d.start_manual(
        old.workflow, old.params, replay_of=original, trigger=old.trigger, now=2.0
    )
    row = h.submitted[-1]
    assert (row.run_id, row.key, row.replay_of, row.params, row.trigger) == (
        run_id,
        f"replay:{run_id}",
        original,
        old.params,
        old.trigger,
    )
    assert state.run(run_id).replay_of == original


def test_drop_removes_a_queued_run(make):
    """drop() takes a queued run out of the queue so it never starts; unknown or started
    runs are not dropped."""
    h = make(rule(limits="{ concurrent = 1 }"))
    run_ids = [h.d.on_file(ev(f"v1/raw/{n}.h5", float(n)), float(n))[0] for n in range(3)]
    assert h.d.drop(run_ids[1]) is True
    assert h.d.queued() == 1
    assert h.d.drop(run_ids[1]) is False
    assert h.d.drop(run_ids[0]) is False  # already submitted
    assert h.d.drop("no-such-run") is False
    h.d.finished(run_ids[0], 5.0)
    assert h.ids == [run_ids[0], run_ids[2]]


def test_replace_rules_keeps_groups_of_surviving_rules(make, load):
    """On reload, held groups of rules that still exist stay (under the new rule);
    those of removed rules go."""
    debounce = '{ debounce = "5s" }'
    h = make(
        rule("keep", params='{ dataset = "{dir}" }', limits=debounce),
        rule("gone", params='{ dataset = "{dir}" }', limits=debounce),
    )
    h.d.on_file(ev("v1/raw/a.h5", 0.0), 0.0)
    h.d.on_file(ev("v1/raw/b.h5", 1.0), 1.0)
    assert h.d.held() == 4
    h.d.replace_rules(
        load(
            rule("keep", workflow="new_workflow", params='{ dataset = "{dir}" }', limits=debounce),
            rule("added"),
        )
    )
    assert h.d.held() == 2
    skipped = h.of("trigger.skipped")
    assert [(f["rule"], f["data"]["reason"]) for _, _, f in skipped] == [
        ("gone", "reloaded-away")
    ] * 2
    h.d.tick(6.0)
    (row,) = h.submitted
    assert (row.rule, row.workflow, len(row.trigger)) == ("keep", "new_workflow", 2)
    assert [r.name for r in h.d.rules] == ["keep", "added"]


def test_replace_rules_skips_held_files_the_new_rule_no_longer_matches(make, load):
    """A reload that narrows a rule's pattern: the held files it no longer matches are
    skipped (reloaded-away), the others still run, and releasing the group does not fail."""
    debounce = '{ debounce = "5s" }'
    h = make(rule(params='{ dataset = "{root}" }', limits=debounce))
    h.d.on_file(ev("v1/raw/a.h5", 0.0), 0.0)
    h.d.on_file(ev("v2/raw/b.h5", 0.0), 0.0)
    h.d.replace_rules(
        load(rule(params='{ dataset = "{root}" }', limits=debounce, pattern=r"v2/raw/.+\.h5$"))
    )
    (skipped,) = h.of("trigger.skipped")
    assert (skipped[2]["data"]["reason"], skipped[2]["data"]["event"]["path"]) == (
        "reloaded-away",
        f"{ROOT}/v1/raw/a.h5",
    )
    h.d.tick(6.0)
    (row,) = h.submitted
    assert [t["path"] for t in row.trigger] == [f"{ROOT}/v2/raw/b.h5"]


def test_replace_rules_keeps_operator_pauses_of_surviving_rules(make, load):
    """A rule an operator paused stays paused across a reload; a removed rule's
    pause is forgotten."""
    h = make(rule("a"), rule("b"))
    h.d.paused |= {"a", "b"}
    h.d.replace_rules(load(rule("a"), rule("c", enabled=False)))
    assert h.d.paused == {"a", "c"}


def test_outbox_survives_a_restart(tmp_path, load):
    """Queued runs written by one process are loaded, in order, by the dispatcher of the next."""
    path = tmp_path / "state.sqlite"
    rules = load(rule(limits="{ concurrent = 1 }"))
    first_state = StateDB(path).open()
    first = Harness(first_state, rules, mark_submitted=True)
    events = [ev(f"v1/raw/{n}.h5", float(n)) for n in range(3)]
    run_ids = [first.d.on_file(event, event.seen_at)[0] for event in events]
    assert first.ids == run_ids[:1] and first.d.queued() == 2
    first_state.close()  # the process dies with one run submitted, two queued

    second_state = StateDB(path).open()
    try:
        assert len(second_state.requeue_unfinished()) == 1
        second = Harness(second_state, rules)
        assert second.d.queued() == 3 and second.submitted == []
        second.d.pump(10.0)
        assert second.ids == run_ids[:1]
        second.d.finished(run_ids[0], 11.0)
        second.d.finished(run_ids[1], 12.0)
        assert second.ids == run_ids
        assert second.submitted[2].params == {"file": events[2].path, "visit": "v1"}
        assert second.d.on_file(events[0], 13.0) == []  # the ledger survived too
        assert second.of("trigger.skipped")[0][2]["data"]["reason"] == "duplicate"
    finally:
        second_state.close()


# -- PV events ---------------------------------------------------------------------------

PV_RULE = """[[rule]]
name = "scan"
workflow = "reduce"
params = { file = "{pv[BL:FILE]}", at = "{timestamp}" }
limits = { concurrent = 1 }
[rule.pv]
name = "BL:ACQ"
when = "falling"
snapshot = ["BL:FILE"]
"""


def pv_ev(timestamp: float, *, file: str | None = "/d/a.h5") -> PvEvent:
    seen = timestamp - 1 if file is not None else None  # None: never had a value
    snapshot = {
        "BL:FILE": {"value": file, "timestamp": seen, "severity": 0, "connected": file is not None}
    }
    return PvEvent(
        rule="scan",
        pv="BL:ACQ",
        value=0,
        old_value=1,
        timestamp=timestamp,
        severity=0,
        reason="falling",
        seen_at=timestamp,
        snapshot=snapshot,
    )


def test_pv_event_runs_once_through_the_outbox_with_limits(make, state):
    """A PV match is queued with its snapshot in the trigger; the same event again (same rule,
    PV, IOC time stamp and value) is a duplicate; concurrency holds the next one in the queue."""
    h = make(PV_RULE)
    match = h.d.on_pv(pv_ev(100.0))
    run_id = h.d.fire_pv(match, 100.0)
    (row,) = h.submitted
    assert row.run_id == run_id and row.params == {
        "file": "/d/a.h5",
        "at": "1970-01-01T00:01:40.000000Z",
    }
    assert row.key == pv_key("scan", pv_ev(100.0))
    assert (
        row.trigger[0]["snapshot"]["BL:FILE"]["value"] == "/d/a.h5"
        and row.trigger[0]["type"] == "pv"
    )
    assert h.d.fire_pv(h.d.on_pv(pv_ev(100.0)), 100.5) is None
    assert h.of("trigger.skipped")[0][2]["data"]["reason"] == "duplicate"
    second = h.d.fire_pv(h.d.on_pv(pv_ev(101.0)), 101.0)
    assert second is not None and len(h.submitted) == 1 and h.d.queued() == 1
    h.d.finished(run_id, 102.0)
    assert h.ids == [run_id, second]


def test_pv_event_of_a_paused_rule_or_with_a_missing_snapshot_starts_nothing(make):
    """Every PV event that starts no run is one trigger.skipped with its reason and the
    event as its source: paused, draining, a rule reloaded away; a snapshot PV without value
    or a parameter that cannot be formatted at error level."""
    h = make(PV_RULE)
    h.d.paused.add("scan")
    assert h.d.on_pv(pv_ev(1.0)) is None
    h.d.paused.clear()
    h.d.draining = True
    assert h.d.on_pv(pv_ev(1.5)) is None
    h.d.draining = False
    assert h.d.on_pv(pv_ev(2.0, file=None)) is None
    assert (
        h.d.on_pv(
            PvEvent(
                rule="gone",
                pv="X",
                value=1,
                old_value=0,
                timestamp=3.0,
                severity=0,
                reason="",
                seen_at=3.0,
            )
        )
        is None
    )
    skipped = h.of("trigger.skipped")
    assert [(f["rule"], f["data"]["reason"], f["level"]) for _, _, f in skipped] == [
        ("scan", "paused", "info"),
        ("scan", "draining", "info"),
        ("scan", "snapshot-failed", "error"),
        ("gone", "reloaded-away", "info"),
    ]
    assert "BL:FILE (no value yet)" in skipped[2][1] and skipped[2][1].startswith(
        "scan: BL:ACQ = 0 skipped: "
    )
    assert all(f["source"]["pv"] in ("BL:ACQ", "X") for _, _, f in skipped)
    assert h.of("trigger.failed") == [] and h.submitted == []


def test_pv_event_whose_params_cannot_be_rendered_is_skipped_at_error_level(make):
    """A value the format spec of a parameter cannot take: skipped, reason params-failed."""
    h = make(PV_RULE.replace('at = "{timestamp}"', 'at = "{value:.2f}"'))
    assert h.d.on_pv(dataclasses.replace(pv_ev(1.0), value="text")) is None
    ((_, message, fields),) = h.of("trigger.skipped")
    assert (fields["data"]["reason"], fields["level"]) == ("params-failed", "error")
    assert "cannot render the parameters" in message


def test_pv_match_with_a_file_waits_in_the_outbox_until_ready_or_failed(make, state):
    """wait_for_file: the run is written as 'waiting' (not submitted); file_ready queues it with
    the file in its trigger; file_failed rejects it with the reason; both only once."""
    h = make(PV_RULE + 'wait_for_file = "{pv[BL:FILE]}"\n')
    first = h.d.fire_pv(h.d.on_pv(pv_ev(1.0)), 1.0)
    second = h.d.fire_pv(h.d.on_pv(pv_ev(2.0, file="/d/b.h5")), 2.0)
    assert [r.run_id for r in state.waiting()] == [first, second] and h.submitted == []
    assert [n[2]["run"] for n in h.of("trigger.waiting")] == [first, second]
    h.d.file_ready(first, {"path": "/d/a.h5", "size": 3}, 3.0)
    (row,) = h.submitted
    assert row.run_id == first and row.trigger[0]["file"] == {"path": "/d/a.h5", "size": 3}
    assert row.trigger[0]["wait_for_file"] == "/d/a.h5"
    h.d.file_failed(second, "file /d/b.h5 not complete after 60 s: it does not exist")
    h.d.file_failed(second, "again")
    h.d.file_ready(second, {"path": "/d/b.h5"}, 4.0)
    assert state.run(second).state == "rejected" and "it does not exist" in state.run(second).error
    assert len(h.of("trigger.failed")) == 1 and len(h.submitted) == 1
