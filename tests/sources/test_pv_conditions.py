"""PV trigger conditions as a state machine: hand-made events in, decisions out."""

from __future__ import annotations

import math

import pytest

from triggerd.errors import ConfigError
from triggerd.sources.pv_conditions import CONDITION_KEYS, KINDS, Condition, EnumValue, PvRuleState

INVALID, MAJOR = 3, 2


class Feed:
    """Feeds values one second apart (IOC timestamp = daemon clock) and records decisions."""

    def __init__(self, rule: dict, *, t: float = 0.0) -> None:
        self.state = PvRuleState(Condition.parse(rule, "rule 'test'"))
        self.t = t

    def __call__(self, value, *, severity: int = 0, dt: float = 1.0):
        self.t += dt
        return self.state.update(value, timestamp=self.t, severity=severity, now=self.t)

    def fires(self, *values) -> list[bool]:
        return [self(v).fire for v in values]

    def tick(self, at: float):
        self.t = at
        return self.state.tick(at)


def fires_after_initial(rule: dict, initial, *values) -> list[bool]:
    feed = Feed(rule)
    assert feed(initial).fire is False  # the initial value never fires by default
    return feed.fires(*values)


# ---------------------------------------------------------------------------- every kind


@pytest.mark.parametrize(
    ("rule", "initial", "values", "expected"),
    [
        ({"when": "change"}, 1, [1, 2, 2, 3.5, 3.5], [False, True, False, True, False]),
        ({"when": "change"}, "a", ["a", "b"], [False, True]),
        ({"when": "rising"}, 0, [1, 2, 0, 0, 5], [True, False, False, False, True]),
        ({"when": "rising"}, False, [True, True, False, True], [True, False, False, True]),
        ({"when": "falling"}, 1, [1, 0, 0, 1, 0], [False, True, False, False, True]),
        (
            {"when": "falling", "threshold": 10},
            20,
            [11, 10, 9, 15, 3],
            [False, True, False, False, True],
        ),
        (
            {"when": "above", "threshold": 5},
            0,
            [5, 6, 7, 4, 5.5],
            [False, True, False, False, True],
        ),
        (
            {"when": "below", "threshold": 5},
            9,
            [5, 4, 3, 6, 4.9],
            [False, True, False, False, True],
        ),
        (
            {"when": "enter_range", "low": 10, "high": 20},
            0,
            [5, 10, 15, 25, 20],
            [False, True, False, False, True],
        ),
        (
            {"when": "leave_range", "low": 10, "high": 20},
            15,
            [12, 21, 30, 15, 9],
            [False, True, False, False, True],
        ),
        ({"when": "equals", "value": 3}, 0, [1, 3, 3, 2, 3.0], [False, True, False, False, True]),
        ({"when": "not_equals", "value": 0}, 0, [0, 1, 1, 0, 2], [False, True, False, False, True]),
        (
            {"when": "equals", "value": "Done"},
            "Idle",
            ["Acquire", "Done", "Done"],
            [False, True, False],
        ),
        (
            {"when": "string_equals", "value": "Done"},
            "Idle",
            ["Acquire", b"Done\0\0", "Done"],
            [False, True, False],
        ),
        (
            {"when": "regex", "pattern": r"\.h5$"},
            "",
            ["a.tif", "a.h5", "a.h5", "b.h5"],
            [False, True, False, True],
        ),
        (
            {"when": "transition", "from": 1, "to": 0},
            0,
            [1, 2, 0, 1, 0],
            [False, False, False, False, True],
        ),
        (
            {"when": "transition", "to": "Done"},
            "Idle",
            ["Done", "Done", "Busy", "Done"],
            [True, False, False, True],
        ),
        (
            {"when": "transition", "from": "Busy"},
            "Idle",
            ["Done", "Busy", "Idle"],
            [False, False, True],
        ),
        (
            {"when": "increment"},
            20,
            [21, 21, 25, 0, 1, 1.0],
            [True, False, True, False, True, False],
        ),
    ],
)
def test_every_kind_fires_and_does_not_fire(rule, initial, values, expected):
    assert fires_after_initial(rule, initial, *values) == expected


def test_every_kind_is_covered_above():
    """A new kind must come with a row in the table above."""
    assert set(KINDS) == {
        "change",
        "rising",
        "falling",
        "equals",
        "not_equals",
        "above",
        "below",
        "enter_range",
        "leave_range",
        "transition",
        "string_equals",
        "regex",
        "increment",
    }


def test_a_fire_reports_the_value_and_what_it_was_compared_with():
    feed = Feed({"when": "falling"})
    feed(1)
    decision = feed(0)
    assert (decision.fire, decision.value, decision.old_value, decision.error) == (True, 0, 1, None)
    assert decision.reason == "falling 0"
    assert decision.check_at is None


def test_numpy_values_are_numbers_and_char_arrays():
    np = pytest.importorskip("numpy")
    assert fires_after_initial({"when": "above", "threshold": 1.5}, np.float64(0), np.int32(2)) == [
        True
    ]
    assert fires_after_initial({"when": "rising"}, np.bool_(False), np.bool_(True)) == [True]
    name = np.frombuffer(b"/data/x_0001.h5\0\0\0junk", dtype=np.int8)
    feed = Feed({"when": "regex", "pattern": r"^/data/.+\.h5$"})
    feed(np.zeros(8, dtype=np.int8))
    decision = feed(name)
    assert decision.fire and decision.value == "/data/x_0001.h5"


def test_change_compares_arrays_and_nan_without_error():
    np = pytest.importorskip("numpy")
    assert fires_after_initial(
        {"when": "change"}, np.array([1, 2]), np.array([1, 2]), np.array([1, 3])
    ) == [False, True]
    assert fires_after_initial({"when": "change"}, math.nan, math.nan, 1.0) == [False, True]


# ------------------------------------------------------------------------- hysteresis


def test_above_with_hysteresis_does_not_chatter_around_the_threshold():
    noisy = [10.1, 9.9, 10.2, 9.8, 10.05, 9.6, 10.3]
    assert (
        fires_after_initial({"when": "above", "threshold": 10, "hysteresis": 0.5}, 0, *noisy)
        == [True] + [False] * 6
    )
    # Without hysteresis the same noise fires on every upward crossing.
    assert fires_after_initial({"when": "above", "threshold": 10}, 0, *noisy) == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    # Back beyond the band, it re-arms.
    assert fires_after_initial(
        {"when": "above", "threshold": 10, "hysteresis": 0.5}, 0, 11, 9.5, 11
    ) == [True, False, True]


def test_below_and_falling_with_hysteresis():
    assert fires_after_initial(
        {"when": "below", "threshold": 5, "hysteresis": 1}, 10, 4, 5.5, 4, 6, 4
    ) == [True, False, False, False, True]
    assert fires_after_initial(
        {"when": "falling", "threshold": 5, "hysteresis": 1}, 10, 5, 5.5, 5, 6.5, 5
    ) == [True, False, False, False, True]


def test_range_hysteresis():
    enter = {"when": "enter_range", "low": 10, "high": 20, "hysteresis": 1}
    assert fires_after_initial(enter, 0, 10, 9.5, 10, 8.9, 10, 20.5, 20, 21.5, 19) == [
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        True,
    ]
    leave = {"when": "leave_range", "low": 10, "high": 20, "hysteresis": 1}
    assert fires_after_initial(leave, 15, 9.9, 10.5, 9.9, 11, 20.1, 19.5, 20.1, 18, 9) == [
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        True,
    ]


def test_a_first_value_inside_the_condition_is_not_armed():
    """Starting above the threshold, it must go back below before an 'above' can fire."""
    assert fires_after_initial({"when": "above", "threshold": 10}, 12, 13, 9, 11) == [
        False,
        False,
        True,
    ]


# ------------------------------------------------------------------------- severity


def test_invalid_severity_never_fires_and_is_not_a_baseline():
    feed = Feed({"when": "change"})
    feed(1)
    ignored = feed(99, severity=INVALID)
    assert ignored.fire is False and "INVALID" in ignored.reason
    assert feed.state.baseline == 1
    assert feed(1).fire is False  # compared with 1, not with the INVALID 99
    assert feed(2, severity=MAJOR).fire is True  # MAJOR is allowed by default


def test_invalid_initial_value_is_not_the_baseline_either():
    feed = Feed({"when": "equals", "value": 5})
    feed(5, severity=INVALID)
    assert feed.state.baseline is None
    assert feed(5).fire is False  # this is the initial value: no fire
    assert feed(6).fire is False


def test_severity_max_is_configurable():
    feed = Feed({"when": "change", "severity_max": "NO_ALARM"})
    feed(1)
    assert feed(2, severity=1).fire is False
    assert feed(3).fire is True
    assert Condition.parse({"when": "change", "severity_max": 3}, "r").severity_max == 3


# ------------------------------------------------------------------ connect, reconnect


def test_the_initial_value_on_connect_does_not_fire_by_default():
    feed = Feed({"when": "equals", "value": 1})
    feed.state.connected(0.0)
    decision = feed(1)
    assert decision.fire is False and "initial" in decision.reason


def test_the_initial_value_fires_with_fire_on_connect_if_it_satisfies_the_condition():
    assert Feed({"when": "equals", "value": 1, "fire_on_connect": True})(1).fire is True
    assert Feed({"when": "equals", "value": 1, "fire_on_connect": True})(0).fire is False
    assert Feed({"when": "above", "threshold": 5, "fire_on_connect": True})(6).fire is True
    assert Feed({"when": "change", "fire_on_connect": True})(0).fire is True
    feed = Feed({"when": "above", "threshold": 5, "fire_on_connect": True})
    assert feed.fires(6, 7) == [True, False]  # and it is not armed twice


@pytest.mark.parametrize("across", ["compare", "ignore"])
def test_a_reconnect_with_the_same_value_never_fires(across):
    for rule in (
        {"when": "change"},
        {"when": "equals", "value": 1},
        {"when": "above", "threshold": 0},
        {"when": "change", "fire_on_connect": True},
    ):
        feed = Feed({**rule, "across_disconnect": across})
        feed.state.connected(0.0)
        feed(1)
        feed.state.disconnected(feed.t)
        feed.state.connected(feed.t)
        assert feed(1).fire is False, rule


def test_a_reconnect_with_a_changed_value_fires_under_compare():
    feed = Feed({"when": "change", "across_disconnect": "compare"})
    feed(1)
    feed.state.disconnected(feed.t)
    assert feed.state.is_connected is False
    feed.state.connected(feed.t)
    decision = feed(2)
    assert (decision.fire, decision.old_value, decision.value) == (True, 1, 2)


def test_a_reconnect_with_a_changed_value_only_sets_the_baseline_under_ignore():
    feed = Feed({"when": "change", "across_disconnect": "ignore"})
    feed(1)
    feed.state.disconnected(feed.t)
    feed.state.connected(feed.t)
    decision = feed(2)
    assert decision.fire is False and "reconnect" in decision.reason
    assert feed.state.baseline == 2
    assert feed(3).fire is True


@pytest.mark.parametrize(
    "rule",
    [
        {"when": "transition", "from": "Capturing", "to": "Done"},
        {"when": "falling"},
        {"when": "equals", "value": 0},
        {"when": "change"},
        {"when": "increment"},
    ],
)
def test_by_default_a_value_arriving_with_a_reconnect_never_fires(rule):
    """The IOC killed mid-capture comes back with its restart values (Capturing -> Done): by
    default that is a new baseline, not a capture that ended; the next real change fires."""
    feed = Feed(rule)
    assert Condition.parse(rule, "r").across_disconnect == "ignore"
    start, restart, again, then = (
        ("Capturing", "Done", "Capturing", "Done") if "from" in rule else (5, 0, 5, 0)
    )
    if rule["when"] == "increment":
        start, restart, again, then = 5, 0, 1, 2
    feed.state.connected(0.0)
    feed(start)
    feed.state.disconnected(feed.t)
    feed.state.connected(feed.t)
    decision = feed(restart)
    assert (
        decision.fire is False
        and "reconnect" in decision.reason
        and "across_disconnect = 'compare'" in decision.reason
    )
    assert feed.state.baseline == restart
    assert feed.fires(again, then) == (
        [True, True] if rule["when"] in ("change", "increment") else [False, True]
    )


def test_a_reconnect_accepts_an_older_ioc_timestamp():
    """An IOC that rebooted with its clock behind is still heard after the reconnect."""
    state = PvRuleState(Condition.parse({"when": "change", "across_disconnect": "compare"}, "r"))
    state.update(1, timestamp=100.0, now=1.0)
    assert "out of order" in state.update(2, timestamp=50.0, now=2.0).reason
    state.disconnected(3.0)
    state.connected(4.0)
    assert state.update(2, timestamp=50.0, now=5.0).fire is True


# --------------------------------------------------------------------- debounce, settle


def test_debounce_suppresses_a_second_fire_inside_the_hold_off():
    feed = Feed({"when": "change", "debounce": "5s"})
    feed(0)
    assert feed(1).fire is True  # t=2
    suppressed = feed(2, dt=2)  # t=4
    assert suppressed.fire is False and "debounce" in suppressed.reason
    assert suppressed.skipped == "debounce" and suppressed.value == 2  # recorded as trigger.skipped
    assert feed(3, dt=2.9).fire is False  # t=6.9
    assert feed(4, dt=0.1).fire is True  # t=7: the hold-off is over


def test_debounce_does_not_defer_the_suppressed_fire_and_keeps_the_baseline():
    feed = Feed({"when": "equals", "value": 1, "debounce": 10})
    feed(0)
    assert feed.fires(1, 0, 1) == [True, False, False]
    assert feed(1, dt=20).fire is False  # unchanged, so nothing fires later either
    assert feed.fires(0, 1) == [False, True]


def test_only_a_fire_that_debounce_drops_is_marked_skipped():
    """A value that does not meet the condition is no skip; one the hold-off drops is."""
    feed = Feed({"when": "equals", "value": 1, "debounce": 10})
    feed(0)
    assert [(d.fire, d.skipped) for d in (feed(1), feed(0), feed(1), feed(1))] == [
        (True, None),
        (False, None),
        (False, "debounce"),
        (False, None),
    ]


def test_settle_fires_only_if_the_condition_still_holds_at_check_at():
    feed = Feed({"when": "equals", "value": 1, "settle": 2})
    feed(0)  # t=1
    pending = feed(1)  # t=2
    assert pending.fire is False and pending.check_at == 4.0
    assert feed(1, dt=0.5).check_at == 4.0  # still holds: the same deadline
    early = feed.tick(3.0)
    assert early.fire is False and early.check_at == 4.0
    fired = feed.tick(4.0)
    assert (
        fired.fire is True and fired.value == 1 and fired.old_value == 0 and fired.check_at is None
    )
    assert feed.tick(5.0).fire is False


def test_settle_is_cancelled_by_a_flap():
    feed = Feed({"when": "above", "threshold": 10, "settle": 2})
    feed(0)  # t=1
    assert feed(11).check_at == 4.0  # t=2, settle 2s
    flap = feed(9, dt=0.5)
    assert flap.fire is False and "cancelled" in flap.reason and flap.check_at is None
    assert feed.tick(4.0).fire is False
    # A new crossing starts a new settle.
    again = feed(12, dt=0.5)
    assert again.check_at == feed.t + 2
    assert feed.tick(again.check_at).fire is True


def test_settle_on_change_waits_for_the_value_to_stop_changing():
    feed = Feed({"when": "change", "settle": 2})
    feed(0)  # t=1
    assert feed(1).check_at == 4.0  # t=2
    assert feed(2).check_at == 5.0  # t=3: changed again, the clock restarts
    fired = feed.tick(5.0)
    assert (fired.fire, fired.value, fired.old_value) == (True, 2, 0)
    # Changing back to where it started cancels.
    assert feed(3).check_at == 8.0  # t=6
    assert feed(2).check_at is None


def test_a_disconnect_cancels_a_pending_settle():
    feed = Feed({"when": "rising", "settle": 1})
    feed(0)
    assert feed(1).check_at is not None
    assert "cancelled" in feed.state.disconnected(feed.t).reason
    assert feed.tick(feed.t + 5).fire is False


def test_settle_and_debounce_together():
    feed = Feed({"when": "rising", "settle": 1, "debounce": 10})
    feed(0)  # t=1
    feed(1)  # t=2, due 3
    assert feed.tick(3.0).fire is True
    feed(0)  # t=4
    suppressed = feed(1)  # t=5: inside the hold-off of the fire at t=3
    assert (
        suppressed.fire is False
        and "debounce" in suppressed.reason
        and suppressed.skipped == "debounce"
    )
    assert suppressed.check_at is None  # suppressed, not settling
    feed(0, dt=10)  # t=15
    assert feed(1).check_at == 17.0  # t=16: the hold-off is over, settling again
    assert feed.tick(17.0).fire is True


# ------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("rule", "good", "bad", "expected"),
    [
        ({"when": "above", "threshold": 5}, 0, "high", "expected a number, got str"),
        ({"when": "regex", "pattern": "x"}, "a", 3.5, "expected a string or char array, got float"),
        ({"when": "equals", "value": 2}, 0, b"2", "expected a number, got bytes"),
        (
            {"when": "string_equals", "value": "x"},
            "a",
            [1.5, 2.5],
            "expected a string or char array, got list",
        ),
        (
            {"when": "increment"},
            3,
            "img_0004.h5",
            (
                "when = 'increment' needs a numeric counter PV (like FileNumber_RBV): "
                "expected a number, got str"
            ),
        ),
        ({"when": "increment"}, 3, 3.5, "a counter counts in whole numbers"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_for_that_rule_and_the_state_stays_usable(
    rule, good, bad, expected
):
    feed = Feed(rule)
    feed(good)
    decision = feed(bad)
    assert decision.fire is False
    assert expected in decision.error
    assert rule["when"] in decision.error
    assert feed.state.baseline == good
    assert feed(good).fire is False  # nothing changed


def test_a_wrong_type_cancels_a_pending_settle_and_the_rule_recovers():
    feed = Feed({"when": "above", "threshold": 5, "settle": 1})
    feed(0)
    feed(6)
    assert feed("oops").check_at is None
    assert feed.tick(feed.t + 2).fire is False
    assert feed(7).fire is False  # still inside: no new crossing
    feed(0)
    assert feed(9).check_at is not None


# ------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        ({}, "when", "missing"),
        ({"when": "sideways"}, "when", "unknown condition 'sideways'"),
        ({"when": "above"}, "threshold", "needs a numeric threshold"),
        ({"when": "above", "threshold": "5"}, "threshold", "expected a number"),
        ({"when": "enter_range", "high": 3}, "low", "needs a numeric low"),
        ({"when": "leave_range", "low": 3}, "high", "needs a numeric high"),
        ({"when": "enter_range", "low": 3, "high": 1}, "high", "high >= low"),
        (
            {"when": "leave_range", "low": 0, "high": 1, "hysteresis": 0.6},
            "hysteresis",
            "cannot re-arm",
        ),
        ({"when": "above", "threshold": 1, "hysteresis": -1}, "hysteresis", ">= 0"),
        ({"when": "above", "threshold": 1, "low": 0}, "low", "not used by when = 'above'"),
        ({"when": "regex", "pattern": "(unclosed"}, "pattern", "not a valid regular expression"),
        ({"when": "regex"}, "pattern", "needs a pattern"),
        ({"when": "equals"}, "value", "needs a value"),
        ({"when": "equals", "value": [1]}, "value", "expected a number, bool or string"),
        ({"when": "string_equals", "value": 1}, "value", "needs a string"),
        ({"when": "transition"}, "to", "needs 'from', 'to' or both"),
        ({"when": "transition", "from": 1, "to": "x"}, "to", "both be numbers or both be strings"),
        ({"when": "change", "debounce": -1}, "debounce", "duration >= 0"),
        ({"when": "change", "settle": "soon"}, "settle", "expected a duration like '5s'"),
        ({"when": "change", "severity_max": "BAD"}, "severity_max", "expected one of NO_ALARM"),
        ({"when": "change", "severity_max": 7}, "severity_max", "expected one of"),
        ({"when": "change", "fire_on_connect": "yes"}, "fire_on_connect", "true or false"),
        ({"when": "change", "across_disconnect": "maybe"}, "across_disconnect", "ignore, compare"),
        ({"when": "change", "each": True}, "each", "not used by when = 'change'"),
        ({"when": "increment", "each": "yes"}, "each", "true or false"),
        (
            {"when": "increment", "fire_on_connect": True},
            "fire_on_connect",
            "never fires on connect",
        ),
        ({"when": "increment", "settle": "1s"}, "settle", "takes no settle"),
        ({"when": "increment", "threshold": 1}, "threshold", "it takes: each"),
    ],
)
def test_parse_errors_name_the_rule_and_the_key(rule, key, words):
    with pytest.raises(ConfigError) as caught:
        Condition.parse(rule, "triggers/mx.toml: rule 'process-scan'")
    assert caught.value.key == key
    assert caught.value.source == "triggers/mx.toml: rule 'process-scan'"
    assert words in str(caught.value)
    assert f"key '{key}'" in str(caught.value)


def test_parse_reads_a_rule_table_and_leaves_other_keys_alone():
    table = {
        "name": "SR13ID01:HDF1:Capture_RBV",
        "when": "falling",
        "snapshot": ["SR13ID01:HDF1:FullFileName_RBV"],
        "debounce": "250ms",
        "settle": 1,
        "severity_max": "minor",
    }
    cond = Condition.parse(table, "r")
    assert (cond.kind, cond.threshold, cond.debounce, cond.settle, cond.severity_max) == (
        "falling",
        0.0,
        0.25,
        1.0,
        1,
    )
    assert cond.fire_on_connect is False and cond.across_disconnect == "ignore"
    assert {"name", "snapshot"}.isdisjoint(CONDITION_KEYS)
    assert Condition.parse({"when": "above", "threshold": 2}, "r") == Condition(
        "above", threshold=2.0
    )


def test_enum_values_compare_as_index_or_as_state_name():
    """An EnumValue is its index for number conditions and its label for text ones; without
    a label a text condition reports why instead of comparing the index as text."""
    numeric = PvRuleState(Condition.parse({"when": "falling"}, where="t"))
    named = PvRuleState(Condition.parse({"when": "string_equals", "value": "Done"}, where="t"))
    for state in (numeric, named):
        state.connected(0.0)
        state.update(EnumValue(1, "Capture"), timestamp=1.0, now=1.0)
    assert numeric.update(EnumValue(0, "Done"), timestamp=2.0, now=2.0).fire
    decision = named.update(EnumValue(0, "Done"), timestamp=2.0, now=2.0)
    assert decision.fire and decision.value == "Done" and decision.old_value == "Capture"
    unnamed = named.update(EnumValue(3), timestamp=3.0, now=3.0)
    assert (
        not unnamed.fire and "enum index (3) whose state name the IOC did not send" in unnamed.error
    )
    assert EnumValue(2, "x") == 2 and repr(EnumValue(2, "x")) == "2 ('x')"


# ------------------------------------------------------------------- counters (increment)


def test_increment_fires_once_per_increase_and_names_the_values_it_did_not_see():
    """Channel Access coalesces fast updates: a counter seen going 20 -> 21 -> 25 fired for
    21 and once for 25, and the second fire says 22, 23, 24 came and went unseen."""
    feed = Feed({"when": "increment"})
    assert feed(20).fire is False  # the value at connect is a baseline
    one = feed(21)
    assert (one.fire, one.value, one.old_value, list(one.increments), list(one.missed)) == (
        True,
        21,
        20,
        [21],
        [],
    )
    jump = feed(25)
    assert (jump.fire, jump.value, jump.old_value) == (True, 25, 21)
    assert list(jump.increments) == [22, 23, 24, 25] and list(jump.missed) == [22, 23, 24]
    assert "increment by 4" in jump.reason


def test_a_counter_that_goes_down_is_a_new_baseline():
    """Acquisition restarted, FileNumber reset to 0: no fire, and counting goes on from 0."""
    feed = Feed({"when": "increment"})
    feed(7)
    reset = feed(0)
    assert reset.fire is False and "reset" in reset.reason and feed.state.baseline == 0
    assert feed(1).fire is True and list(feed(3).missed) == [2]


def test_a_counter_counts_a_value_read_as_a_float_and_each_changes_only_the_description():
    each = Condition.parse({"when": "increment", "each": True}, "r")
    assert each.each is True and each.describe() == "increment (each)"
    feed = Feed({"when": "increment", "each": True})
    feed(1.0)
    decision = feed(3.0)
    assert (
        decision.fire
        and decision.value == 3
        and isinstance(decision.value, int)
        and list(decision.increments) == [2, 3]
    )


def test_a_counter_across_a_reconnect_counts_only_under_compare():
    """Counts made while the connection was down fire on reconnect only when asked."""
    for across, expected in (("ignore", False), ("compare", True)):
        feed = Feed({"when": "increment", "across_disconnect": across})
        feed(5)
        feed.state.disconnected(feed.t)
        feed.state.connected(feed.t)
        decision = feed(8)
        assert decision.fire is expected, across
        if expected:
            assert list(decision.missed) == [6, 7]


def test_debounce_on_a_counter_keeps_the_increments_it_dropped():
    feed = Feed({"when": "increment", "debounce": 5})
    feed(0)
    assert feed(1).fire is True
    dropped = feed(3)
    assert (
        dropped.fire is False
        and dropped.skipped == "debounce"
        and list(dropped.increments) == [2, 3]
    )


# ------------------------------------------------------------- state names of enum PVs


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            {"when": "transition", "from": "Capture", "to": "Done"},
            "from = 'Capture' is not a state of the PV (its states: Done, Capturing)",
        ),
        ({"when": "equals", "value": "Acquire"}, "value = 'Acquire' is not a state of the PV"),
        ({"when": "string_equals", "value": "done"}, "value = 'done' is not a state"),
        (
            {"when": "transition", "from": 1, "to": 2},
            "to = 2 is not a state index of the PV (0..1: Done, Capturing)",
        ),
        (
            {"when": "regex", "pattern": "^Acq"},
            "pattern = '^Acq' matches none of the PV's states (Done, Capturing)",
        ),
    ],
)
def test_a_state_name_the_enum_pv_does_not_have_is_a_problem(rule, problem):
    """Checked once the IOC sent its state names: a typo would otherwise never fire, silently."""
    (found,) = Condition.parse(rule, "r").state_problems(("Done", "Capturing"))
    assert problem in found


def test_conditions_that_name_existing_states_or_no_state_have_no_problem():
    states = ("Done", "Capturing")
    for rule in (
        {"when": "transition", "from": "Capturing", "to": "Done"},
        {"when": "falling"},
        {"when": "equals", "value": 1},
        {"when": "change"},
        {"when": "increment"},
        {"when": "regex", "pattern": "ing$"},
        {"when": "equals", "value": True},
    ):
        assert Condition.parse(rule, "r").state_problems(states) == [], rule
    # names unknown: nothing to say
    assert Condition.parse({"when": "equals", "value": "Nope"}, "r").state_problems(()) == []
