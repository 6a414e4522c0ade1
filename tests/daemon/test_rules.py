"""Trigger rules: loading with errors that blame, and matching/rendering as pure functions."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from triggerd.daemon.rules import (
    FileRule,
    Limits,
    Rule,
    RulesError,
    RuleSet,
    TriggerFailed,
    glob_match,
    load_rules,
)
from triggerd.errors import ConfigError
from triggerd.sources.events import FileEvent
from triggerd.sources.pv import PvEvent

REPO = Path(__file__).resolve().parents[2]
MTIME_NS = 1_764_096_917_123_456_789  # 2025-11-25T18:55:17.123456789Z


def event(path: str, root: str = "/data/mx1", *, size: int = 1234, inode: int = 42) -> FileEvent:
    """A complete file as a source would report it."""
    return FileEvent(path=path, root=root, size=size, mtime_ns=MTIME_NS, inode=inode)


def write(directory: Path, name: str, text: str) -> Path:
    """Write a rule file ``name`` into ``directory``, creating it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def load_one(tmp_path: Path, text: str) -> Rule:
    """The single rule of a rule file holding ``text``."""
    (rule,) = load_rules([write(tmp_path / "triggers", "r.toml", text).parent]).rules
    return rule


def load_error(tmp_path: Path, *texts: str, **kwargs) -> RulesError:
    """The error of loading rule files a.toml, b.toml, ... holding ``texts``."""
    for number, text in enumerate(texts):
        write(tmp_path / "triggers", f"{chr(ord('a') + number)}.toml", text)
    with pytest.raises(RulesError) as caught:
        load_rules([tmp_path / "triggers"], **kwargs)
    return caught.value


def file_rule(params: dict | None = None, **files) -> Rule:
    """A hand-built file rule under /data/mx1 unless ``roots`` says otherwise."""
    files.setdefault("roots", ("/data/mx1",))
    return Rule(name="r", workflow="w", params=params or {}, files=FileRule(**files))


MX = """
[[rule]]
name = "compress-dataset"
workflow = "squashfs_compress"
params = { dataset = "{dir}", visit = "{match[visit]}", file = "{path}" }
limits = { concurrent = 2, debounce = "5s", batch = 10, batch_window = "30s", rate = "10/min" }

[rule.files]
roots = ["/data/mx1"]
pattern = '(?P<visit>[^/]+)/raw/.+\\.h5$'
ignore = ["*.tmp", ".*"]
"""


# -- rendering ---------------------------------------------------------------------------


def test_every_file_placeholder_renders():
    """Each file placeholder renders the event's value; mtime is ISO 8601 UTC."""
    names = ["path", "name", "stem", "suffix", "dir", "relative", "root", "mtime"]
    params = {n: f"<{{{n}}}>" for n in names} | {
        "size": "s={size}",
        "inode": "i={inode}",
        "count": "c={count}",
        "group": "{match[visit]}-{match[1]}-{match[0]}",
    }
    rule = file_rule(params, pattern=r"(?P<visit>[^/]+)/raw/")
    match = rule.match(event("/data/mx1/v42/raw/scan_001.h5"))
    assert match is not None
    assert match.params == {
        "path": "</data/mx1/v42/raw/scan_001.h5>",
        "name": "<scan_001.h5>",
        "stem": "<scan_001>",
        "suffix": "<.h5>",
        "dir": "</data/mx1/v42/raw>",
        "relative": "<v42/raw/scan_001.h5>",
        "root": "</data/mx1>",
        "mtime": "<2025-11-25T18:55:17.123456Z>",
        "size": "s=1234",
        "inode": "i=42",
        "count": "c=1",
        "group": "v42-v42-v42/raw/",
    }
    assert match.groups == {"visit": "v42", "0": "v42/raw/", "1": "v42"}


def test_a_value_that_is_one_placeholder_keeps_its_type():
    """ "{size}" is an int, "{files}" a list, "{path}" a str; anything more is a string."""
    params = {
        "size": "{size}",
        "inode": "{inode}",
        "count": "{count}",
        "files": "{files}",
        "path": "{path}",
        "padded": "{size:>6}",
        "text": "{size} B",
        "repr": "{name!r}",
    }
    params = file_rule(params).match(event("/data/mx1/a.h5")).params
    assert params == {
        "size": 1234,
        "inode": 42,
        "count": 1,
        "files": ["/data/mx1/a.h5"],
        "path": "/data/mx1/a.h5",
        "padded": "  1234",
        "text": "1234 B",
        "repr": "'a.h5'",
    }


def test_non_string_params_and_escaped_braces_pass_through():
    """Ints, bools, lists and tables are not rendered; '{{' renders a literal brace."""
    params = {
        "n": 3,
        "on": True,
        "names": ["{path}"],
        "table": {"x": "{name}"},
        "json": '{{"a": "{name}"}}',
    }
    rendered = file_rule(params).match(event("/data/mx1/a.h5")).params
    assert rendered == {
        "n": 3,
        "on": True,
        "names": ["{path}"],
        "table": {"x": "{name}"},
        "json": '{"a": "a.h5"}',
    }


def test_batch_render_lists_every_file_and_takes_the_rest_from_the_first():
    """render() of three events gives {files} of all three, {count} 3, and the first one's name."""
    rule = file_rule(
        {"files": "{files}", "count": "{count}", "first": "{name}", "visit": "{match[v]}"},
        pattern=r"(?P<v>\w+)/",
    )
    events = [event(f"/data/mx1/{v}/f{n}.h5") for n, v in enumerate(["a", "b", "c"])]
    assert rule.render(events) == {
        "files": ["/data/mx1/a/f0.h5", "/data/mx1/b/f1.h5", "/data/mx1/c/f2.h5"],
        "count": 3,
        "first": "f0.h5",
        "visit": "a",
    }
    with pytest.raises(ValueError, match="at least one"):
        rule.render([])
    with pytest.raises(ValueError, match="not under roots"):
        rule.render([event("/elsewhere/x.h5")])


def test_hostile_file_names_render_verbatim():
    """Spaces, quotes, ';', '$()', newlines and undecodable bytes reach params unchanged."""
    rule = file_rule({"path": "{path}", "name": "{name}", "msg": "file {name} done"})
    for name in [
        "a b.h5",
        "it's \"q\".h5",
        "x; rm -rf ~.h5",
        "$(reboot).h5",
        "two\nlines.h5",
        os.fsdecode(b"caf\xe9.h5"),
        "{path}.h5",
        "%s.h5",
    ]:
        params = rule.match(event(f"/data/mx1/{name}")).params
        assert params == {"path": f"/data/mx1/{name}", "name": name, "msg": f"file {name} done"}


# -- matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "relative", "matches"),
    [
        ("**/*.h5", "a.h5", True),
        ("**/*.h5", "x/y/a.h5", True),
        ("**/*.h5", "x/a.h5x", False),
        ("*.h5", "a.h5", True),
        ("*.h5", "x/a.h5", False),
        ("raw/**/*.h5", "raw/a.h5", True),
        ("raw/**/*.h5", "raw/1/2/a.h5", True),
        ("raw/**/*.h5", "cooked/a.h5", False),
        ("**", "x/y/z", True),
        ("scan_??.h5", "scan_01.h5", True),
        ("scan_[0-9]*", "scan_x", False),
    ],
)
def test_glob_double_star_spans_directories(glob, relative, matches):
    """A glob matches the whole path under the root; only '**' crosses '/'."""
    assert glob_match(glob, relative.split("/")) is matches
    rule = file_rule(glob=glob)
    assert (rule.match(event(f"/data/mx1/{relative}")) is not None) is matches


def test_pattern_is_searched_in_the_relative_path_with_named_groups():
    """The regex sees the path under the root, not the root, and yields its groups."""
    rule = file_rule(
        {"visit": "{match[visit]}"}, pattern=r"^(?P<visit>[^/]+)/raw/.+\.h5$", roots=("/data",)
    )
    assert rule.match(event("/data/mx1-123/raw/x/a.h5", "/data")).params == {"visit": "mx1-123"}
    assert rule.match(event("/data/raw/a.h5", "/data")) is None
    assert (
        rule.explain(event("/data/v/processed/a.h5", "/data"))
        == "pattern does not match 'v/processed/a.h5'"
    )


def test_ignore_applies_to_the_name_and_each_directory_under_the_root():
    """'.*' skips hidden files and everything in hidden directories, but not a hidden root."""
    rule = file_rule(ignore=("*.tmp", ".*"), roots=("/data/.hidden-root",))
    root = "/data/.hidden-root"
    assert rule.match(event(f"{root}/a/b.h5", root)) is not None
    assert rule.explain(event(f"{root}/a/b.tmp", root)) == "ignored by '*.tmp'"
    assert rule.explain(event(f"{root}/.a.h5", root)) == "ignored by '.*'"
    assert (
        rule.explain(event(f"{root}/x/.cache/y/b.h5", root))
        == "ignored by '.*' (directory '.cache')"
    )


def test_ignore_with_a_slash_matches_the_relative_path():
    """An ignore entry with '/' is a glob on the whole relative path."""
    rule = file_rule(ignore=("scratch/**",))
    assert rule.explain(event("/data/mx1/scratch/x/a.h5")) == "ignored by 'scratch/**'"
    assert rule.match(event("/data/mx1/keep/scratch/a.h5")) is not None


def test_non_recursive_rule_sees_only_files_directly_in_the_root():
    """recursive = false matches /root/a.h5 but not /root/sub/a.h5."""
    rule = file_rule(recursive=False)
    assert rule.match(event("/data/mx1/a.h5")) is not None
    assert rule.match(event("/data/mx1/sub/a.h5")) is None
    assert "recursive = false" in rule.explain(event("/data/mx1/sub/a.h5"))


def test_a_file_outside_the_roots_does_not_match():
    """Paths are compared as text: a sibling with the root as prefix is not under it."""
    rule = file_rule(roots=("/data/mx1/",))
    for path in ["/data/mx10/a.h5", "/data/mx1", "/other/a.h5"]:
        assert rule.match(event(path)) is None
        assert rule.explain(event(path)) == "not under roots '/data/mx1'"
    assert rule.match(event("/data/mx1/a.h5", "/data/mx1/")) is not None


def test_nested_roots_prefer_the_events_root_then_the_deepest():
    """{root}/{relative} come from the root the event was seen under, else the deepest one."""
    rule = file_rule({"root": "{root}", "rel": "{relative}"}, roots=("/data", "/data/mx1"))
    assert rule.match(event("/data/mx1/a.h5", "/data")).params == {
        "root": "/data",
        "rel": "mx1/a.h5",
    }
    assert rule.match(event("/data/mx1/a.h5", "/elsewhere")).params == {
        "root": "/data/mx1",
        "rel": "a.h5",
    }


def test_explain_says_matches_or_why_not():
    """explain gives one line per outcome, and match agrees with it."""
    rule = file_rule(
        {"visit": "{match[visit]}"}, pattern=r"(?P<visit>[^/]+)/raw/.+\.h5$", ignore=("*.tmp",)
    )
    cases = {
        "/data/mx1/v1/raw/a.h5": "matches",
        "/data/mx2/v1/raw/a.h5": "not under roots '/data/mx1'",
        "/data/mx1/v1/raw/a.tmp": "ignored by '*.tmp'",
        "/data/mx1/v1/raw/a.cbf": "pattern does not match 'v1/raw/a.cbf'",
    }
    for path, why in cases.items():
        assert rule.explain(event(path)) == why
        assert (rule.match(event(path)) is not None) is (why == "matches")
    manual = Rule(name="m", workflow="w")
    assert "manual-only" in manual.explain(event("/data/mx1/a.h5"))


def test_ruleset_matches_every_rule_in_file_order_paused_or_not(tmp_path):
    """Two files' rules that match the same event come back in file order, disabled ones too."""
    second = MX.replace("compress-dataset", "second").replace(
        "[rule.files]", "enabled = false\n\n[rule.files]"
    )
    write(tmp_path / "t", "b.toml", MX)
    write(tmp_path / "t", "a.toml", second)
    rules = load_rules([tmp_path / "t"])
    assert [m.rule.name for m in rules.match(event("/data/mx1/v1/raw/a.h5"))] == [
        "second",
        "compress-dataset",
    ]
    assert rules.by_name("second").enabled is False
    assert rules.files == (str(tmp_path / "t" / "a.toml"), str(tmp_path / "t" / "b.toml"))
    with pytest.raises(KeyError, match="compress-dataset"):
        rules.by_name("nope")


# -- loading -----------------------------------------------------------------------------


def test_the_design_example_loads_with_typed_limits(tmp_path):
    """The DESIGN.md rule loads: durations in seconds, rate as (count, per seconds)."""
    rule = load_one(tmp_path, MX)
    assert rule.limits == Limits(
        concurrent=2, debounce=5.0, batch=10, batch_window=30.0, rate=(10, 60.0)
    )
    assert rule.files.pattern.pattern == r"(?P<visit>[^/]+)/raw/.+\.h5$"
    assert (rule.files.complete, rule.files.catch_up, rule.files.recursive) == (
        "closed",
        "missed",
        True,
    )
    assert (rule.source, rule.index, rule.enabled) == (
        str(tmp_path / "triggers" / "r.toml"),
        0,
        True,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [('"250ms"', 0.25), ('"5s"', 5.0), ('"2m"', 120.0), ('"1h"', 3600.0), ("1.5", 1.5), ("3", 3.0)],
)
def test_durations_take_a_unit_or_plain_seconds(tmp_path, text, seconds):
    """debounce accepts ms, s, m, h and plain numbers of seconds."""
    rule = load_one(
        tmp_path, f'[[rule]]\nname = "r"\nworkflow = "w"\nlimits = {{ debounce = {text} }}\n'
    )
    assert rule.limits.debounce == seconds


def test_rates_per_second_minute_and_hour(tmp_path):
    """'N/s', 'N/min' and 'N/h' become (N, 1), (N, 60) and (N, 3600)."""
    for text, rate in [("5/s", (5, 1.0)), ("10/min", (10, 60.0)), ("2/h", (2, 3600.0))]:
        rule = load_one(
            tmp_path, f'[[rule]]\nname = "r"\nworkflow = "w"\nlimits = {{ rate = "{text}" }}\n'
        )
        assert rule.limits.rate == rate


def test_toml_syntax_error_names_file_and_line(tmp_path):
    """A TOML syntax error gives the file and the line tomllib found it on."""
    err = load_error(tmp_path, '[[rule]]\nname = "r"\nworkflow = w\n')
    assert str(err).startswith(f"{tmp_path / 'triggers' / 'a.toml'}: line 3: invalid TOML")
    assert err.source == str(tmp_path / "triggers" / "a.toml")


def test_unknown_key_lists_the_allowed_ones(tmp_path):
    """A misspelt key is reported with its line and the keys that are allowed there."""
    err = load_error(tmp_path, MX.replace("ignore =", "ignores ="))
    (problem,) = err.problems
    assert problem.key == "rule[0].files.ignores"
    assert problem.line == 11
    assert (
        "unknown key (allowed: roots, pattern, glob, recursive, ignore, complete" in problem.message
    )


def test_bad_duration_names_key_line_and_value(tmp_path):
    """debounce = 'soon' is reported as '<file>: line N: key ...: expected a
    duration ..., got 'soon''."""
    err = load_error(tmp_path, MX.replace('"5s"', '"soon"'))
    expected = (
        f"{tmp_path / 'triggers' / 'a.toml'}: line 6: "
        "key 'rule[0].limits.debounce': expected a duration like '5s'"
    )
    assert str(err).startswith(expected)
    assert str(err).endswith("got 'soon'")
    assert err.key == "rule[0].limits.debounce"


def test_unknown_placeholder_names_rule_key_and_allowed_names(tmp_path):
    """'{dirname}' is refused at load with the key rule[2].params.dataset and the allowed names."""
    text = "".join(
        f'[[rule]]\nname = "r{n}"\nworkflow = "w"\n[rule.files]\nroots = ["/d"]\n' for n in range(2)
    )
    text += (
        '[[rule]]\nname = "r2"\nworkflow = "w"\nparams = { dataset = "{dirname}" }\n'
        '[rule.files]\nroots = ["/d"]\n'
    )
    (problem,) = load_error(tmp_path, text).problems
    assert (problem.key, problem.line) == ("rule[2].params.dataset", 14)
    assert "unknown placeholder '{dirname}'" in problem.message
    assert "{path}" in problem.message and "{match[...]}" in problem.message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("{path.__class__}", "attribute access is not allowed"),
        ("{match[v].upper}", "attribute access"),
        ("{path[0]}", "only {match[group]} may be indexed"),
        ("{match}", "name a group"),
        ("{}", "positional"),
        ("{0}", "positional"),
        ("{name", "expected '}'"),
        ("{files}.txt", "must be the whole value"),
        ("{size:d}{name:d}", "bad format spec"),
        ("{size:{name}}", "inside a format spec"),
        ("{path!x}", "unknown conversion"),
    ],
)
def test_dangerous_or_malformed_placeholders_are_refused_at_load(tmp_path, value, why):
    """Attribute access, other indexing, positional fields and bad specs never reach rendering."""
    text = MX.replace('file = "{path}"', f"file = '{value}'")
    (problem,) = load_error(tmp_path, text).problems
    assert problem.key == "rule[0].params.file"
    assert why in problem.message


def test_unknown_match_group_is_refused(tmp_path):
    """{match[run]} with a pattern that has no group 'run' (or a glob) fails at load."""
    err = load_error(tmp_path, MX.replace("{match[visit]}", "{match[run]}"))
    assert "no group 'run' (named groups: 'visit')" in err.problems[0].message
    err = load_error(tmp_path, MX.replace("pattern =", "glob = '**/*.h5'\n# pattern ="))
    assert "has no pattern" in err.problems[0].message
    err = load_error(tmp_path, MX.replace("{match[visit]}", "{match[2]}"))
    assert "the pattern has 1 group(s)" in err.problems[0].message


def test_duplicate_rule_names_across_files_name_both_files(tmp_path):
    """The same name in a.toml and b.toml is an error naming both files."""
    err = load_error(tmp_path, MX, MX)
    (problem,) = err.problems
    assert problem.source == str(tmp_path / "triggers" / "b.toml")
    assert str(tmp_path / "triggers" / "a.toml") in problem.message
    assert "'compress-dataset' is already used" in problem.message


def test_unknown_workflow_is_reported_when_workflows_are_known(tmp_path):
    """known_workflows returning False gives "rule 'x': workflow 'y' not found
    in workflows dirs"."""
    err = load_error(tmp_path, MX, known_workflows=lambda name: name == "other")
    assert err.problems[0].key == "rule[0].workflow"
    assert (
        "rule 'compress-dataset': workflow 'squashfs_compress' not found in workflows dirs"
        in str(err)
    )
    assert len(load_rules([tmp_path / "triggers"], known_workflows=lambda name: True)) == 1


def test_pattern_and_glob_together_are_refused(tmp_path):
    """A files table with both pattern and glob is an error."""
    (problem,) = load_error(tmp_path, MX.replace("ignore =", "glob = '*.h5'\nignore =")).problems
    assert problem.key == "rule[0].files"
    assert "pattern" in problem.message and "glob" in problem.message


def test_all_problems_of_all_files_come_in_one_report(tmp_path):
    """Problems of four files (values, placeholder, syntax, [rule] for [[rule]], no rules) come
    in one report, in file order."""
    bad = (
        MX.replace('"5s"', '"soon"')
        .replace("concurrent = 2", "concurrent = 0")
        .replace("{dir}", "{folder}")
    )
    bad += '[rule.pv]\nname = "X"\n'
    err = load_error(tmp_path, bad, "[[rule]\n", '[rule]\nname = "x"\n', "")
    text = str(err)
    assert text.startswith("8 problems in trigger rules:\n")
    keys = [(Path(p.source).name, p.key) for p in err.problems]
    assert keys == [
        ("a.toml", "rule[0]"),
        ("a.toml", "rule[0].params.dataset"),
        ("a.toml", "rule[0].limits.concurrent"),
        ("a.toml", "rule[0].limits.debounce"),
        ("a.toml", "rule[0].pv.when"),
        ("b.toml", None),
        ("c.toml", "rule"),
        ("d.toml", None),
    ]
    assert "not both" in err.problems[0].message
    assert "missing: expected one of change, rising" in err.problems[4].message
    assert "invalid TOML" in err.problems[5].message
    assert "double brackets" in err.problems[6].message
    assert "no [[rule]] tables" in err.problems[7].message
    assert all(line.startswith(f"  {tmp_path}") for line in text.splitlines()[1:])
    assert isinstance(err, ConfigError) and err.source is None


def test_missing_required_keys_and_wrong_types(tmp_path):
    """A rule without name/workflow or with a non-table params is reported key by key."""
    err = load_error(
        tmp_path, '[[rule]]\nparams = "x"\nenabled = "yes"\n[rule.files]\nroots = []\n'
    )
    messages = {p.key: p.message for p in err.problems}
    assert messages == {
        "rule[0].name": "required key is missing",
        "rule[0].workflow": "required key is missing",
        "rule[0].params": "expected a table, got 'x'",
        "rule[0].enabled": "expected true or false, got 'yes'",
        "rule[0].files.roots": "expected at least one directory, got a list",
    }


def test_rule_without_files_table_is_manual_only(tmp_path):
    """No [rule.files]: the rule loads, never matches a file, renders literal params, and may not
    use placeholders."""
    rule = load_one(
        tmp_path, '[[rule]]\nname = "m"\nworkflow = "w"\nparams = { mode = "full {{x}}", n = 1 }\n'
    )
    assert rule.files is None and rule.pv is None
    assert rule.match(event("/data/mx1/a.h5")) is None
    assert rule.render([]) == {"mode": "full {x}", "n": 1}
    text = '[[rule]]\nname = "m"\nworkflow = "w"\nparams = { p = "{path}" }\n'
    (problem,) = load_error(tmp_path / "bad", text).problems
    assert "no [rule.files] table" in problem.message


AD_RULE = """[[rule]]
name = "scan"
workflow = "w"
[rule.params]
file = "{pv[BL:HDF:FullFileName_RBV]}"
sample = "{pv[BL:SAMPLE]}"
at = "{timestamp}"
capture = "{value}"
was = "{old_value}"
by = "{pvname}"
all = "{snapshot}"
label = "{pv[BL:SAMPLE]!s:>6}"
[rule.pv]
name = "BL:HDF:Capture_RBV"
when = "falling"
snapshot = ["BL:HDF:FullFileName_RBV", "BL:SAMPLE"]
snapshot_defaults = { "BL:SAMPLE" = "unknown" }
wait_for_file = "{pv[BL:HDF:FullFileName_RBV]}"
file_timeout = "30s"
"""


def pv_event(snapshot, value=0, old_value=1, timestamp=1_700_000_000.5):
    return PvEvent(
        rule="scan",
        pv="BL:HDF:Capture_RBV",
        value=value,
        old_value=old_value,
        timestamp=timestamp,
        severity=0,
        reason="falling",
        seen_at=timestamp,
        snapshot=snapshot,
    )


def taken(value, timestamp=1_700_000_000.25, connected=True):
    return {"value": value, "timestamp": timestamp, "severity": 0, "connected": connected}


def test_pv_rule_renders_its_event_and_snapshot(tmp_path):
    """A PV rule's params take the PV that fired, {pv[NAME]} of the snapshot PVs (values keep
    their type), {snapshot} with time stamps; wait_for_file is rendered the same way."""
    rule = load_one(tmp_path, AD_RULE)
    assert rule.pv.name == "BL:HDF:Capture_RBV" and rule.pv.condition.kind == "falling"
    assert rule.pv.file_timeout == 30.0 and rule.pv.file_settle == 0.5
    assert rule.match(event("/data/a.h5")) is None
    found = rule.render_pv(
        pv_event(
            {"BL:HDF:FullFileName_RBV": taken("/data/scan 1.h5"), "BL:SAMPLE": taken("lysozyme")}
        )
    )
    assert found.wait_for_file == "/data/scan 1.h5"
    assert found.params == {
        "file": "/data/scan 1.h5",
        "sample": "lysozyme",
        "at": "2023-11-14T22:13:20.500000Z",
        "capture": 0,
        "was": 1,
        "by": "BL:HDF:Capture_RBV",
        "label": "lysozyme",
        "all": {
            "BL:HDF:FullFileName_RBV": {
                "value": "/data/scan 1.h5",
                "timestamp": "2023-11-14T22:13:20.250000Z",
                "severity": 0,
                "missing": False,
            },
            "BL:SAMPLE": {
                "value": "lysozyme",
                "timestamp": "2023-11-14T22:13:20.250000Z",
                "severity": 0,
                "missing": False,
            },
        },
    }


def test_pv_rule_snapshot_defaults_and_missing_values(tmp_path):
    """A snapshot PV without a value (never seen, or disconnected) takes its default, marked
    missing; one without a default fails the trigger, naming the PV and why."""
    rule = load_one(tmp_path, AD_RULE)
    found = rule.render_pv(
        pv_event(
            {"BL:HDF:FullFileName_RBV": taken("/d/a.h5"), "BL:SAMPLE": taken("x", connected=False)}
        )
    )
    assert found.params["sample"] == "unknown"
    assert found.params["all"]["BL:SAMPLE"] == {
        "value": "unknown",
        "timestamp": None,
        "severity": None,
        "missing": True,
    }
    with pytest.raises(
        TriggerFailed, match=r"BL:HDF:FullFileName_RBV \(no value yet\).*snapshot_defaults"
    ):
        rule.render_pv(
            pv_event({"BL:HDF:FullFileName_RBV": taken(None, timestamp=None, connected=False)})
        )
    with pytest.raises(TriggerFailed, match=r"BL:HDF:FullFileName_RBV \(disconnected\)"):
        rule.render_pv(pv_event({"BL:HDF:FullFileName_RBV": taken("/d/a.h5", connected=False)}))


def test_pv_rule_value_its_format_cannot_take_fails_the_trigger(tmp_path):
    """{value:.2f} on a text value is not a crash: the trigger fails with the
    value in the message."""
    rule = load_one(
        tmp_path,
        '[[rule]]\nname = "t"\nworkflow = "w"\nparams = { v = "{value:.2f}" }\n'
        '[rule.pv]\nname = "A:B"\nwhen = "change"\n',
    )
    assert rule.render_pv(pv_event({}, value=2.5)).params == {"v": "2.50"}
    with pytest.raises(TriggerFailed, match=r"A:B|Capture_RBV = 'text'"):
        rule.render_pv(pv_event({}, value="text"))


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (
            ('"{pv[BL:SAMPLE]}"', '"{pv[BL:OTHER]}"'),
            "rule[0].params.sample",
            "'BL:OTHER' is neither the rule's PV nor in its snapshot list",
        ),
        (
            ('"{pvname}"', '"{pv}"'),
            "rule[0].params.by",
            "name a PV, as in {pv[BL:DET:FileName_RBV]}",
        ),
        (
            ('"{snapshot}"', '"x {snapshot}"'),
            "rule[0].params.all",
            "a table of PVs: it must be the whole value",
        ),
        (('"{timestamp}"', '"{path}"'), "rule[0].params.at", "unknown placeholder '{path}'"),
        (
            ('"BL:SAMPLE" = "unknown"', '"BL:NOPE" = 1'),
            "rule[0].pv.snapshot_defaults.BL:NOPE",
            "not in snapshot",
        ),
        (
            ('wait_for_file = "{pv[BL:HDF:FullFileName_RBV]}"', 'wait_for_file = "{match[1]}"'),
            "rule[0].pv.wait_for_file",
            "unknown placeholder",
        ),
        (('file_timeout = "30s"', 'file_timeout = 0'), "rule[0].pv.file_timeout", "duration > 0"),
        (
            ('snapshot = ["BL:HDF:FullFileName_RBV", "BL:SAMPLE"]', 'snapshot = ["A", "A"]'),
            "rule[0].pv.snapshot",
            "each PV once",
        ),
        (
            ('file_timeout = "30s"', '[rule.limits]\nbatch = 2'),
            "rule[0].limits.batch",
            "not for a PV rule",
        ),
    ],
    ids=[
        "unknown-pv",
        "bare-pv",
        "snapshot-in-text",
        "file-placeholder",
        "default-of-unknown",
        "wait-template",
        "timeout",
        "duplicate",
        "batch",
    ],
)
def test_a_bad_pv_rule_placeholder_or_snapshot_names_its_key(tmp_path, edit, key, words):
    """Snapshot, defaults, wait_for_file and the PV placeholders are checked at
    load, with the key."""
    text = AD_RULE.replace(*edit)
    assert text != AD_RULE
    problems = load_error(tmp_path, text).problems
    assert [(p.key, words in p.message) for p in problems][:1] == [(key, True)], problems


def test_relative_roots_are_resolved_against_the_working_directory(tmp_path, monkeypatch):
    """roots = ["incoming", "../x/"] become absolute, normalised paths under the cwd at load."""
    monkeypatch.chdir(tmp_path)
    rule = load_one(
        tmp_path,
        '[[rule]]\nname = "r"\nworkflow = "w"\n[rule.files]\nroots = ["incoming", "../x/"]\n',
    )
    assert rule.files.roots == (str(tmp_path / "incoming"), str(tmp_path.parent / "x"))
    assert (
        rule.match(event(str(tmp_path / "incoming" / "a.dat"), str(tmp_path / "incoming")))
        is not None
    )


def test_missing_triggers_dir_is_empty_but_a_file_is_an_error(tmp_path):
    """A triggers dir that does not exist holds no rules; a file given as the dir is refused."""
    assert load_rules([tmp_path / "absent"]) == RuleSet()
    (tmp_path / "plain").write_text("")
    with pytest.raises(RulesError, match="not a directory"):
        load_rules([tmp_path / "plain"])


def test_hand_built_rule_checks_its_templates():
    """Building a Rule in code refuses an unknown placeholder like loading does."""
    with pytest.raises(ConfigError, match=re.escape("unknown placeholder '{nope}'")):
        file_rule({"x": "{nope}"})


def test_example_rule_file_loads_and_matches(tmp_path, monkeypatch):
    """triggers/incoming.toml loads against workflows/, matches var/incoming/x.dat, not
    x.tmp; its relative root is the checkout's var/incoming (relative to config/), from
    wherever it is loaded."""
    monkeypatch.chdir(tmp_path)
    rules = load_rules(
        [REPO / "triggers"],
        known_workflows=lambda n: (REPO / "workflows" / f"{n}.py").is_file(),
        base=REPO / "config",
    )
    rule = rules.by_name("file-info")
    root = str(REPO / "var" / "incoming")
    assert rule.files.roots == (root,)
    match = rule.match(event(f"{root}/sub/x.dat", root, size=5))
    assert match is not None
    assert match.params == {"path": f"{root}/sub/x.dat", "name": "x.dat", "size": 5}
    assert rule.match(event(f"{root}/x.tmp", root)) is None
    assert rule.explain(event(f"{root}/x.tmp", root)) == "ignored by '*.tmp'"


def test_example_pv_rule_file_loads_and_renders():
    """triggers/examples/areadetector.toml (not read by the daemon: a subdirectory) loads
    against workflows/ and renders file_info's parameters from a FileNumber_RBV increment
    (the counter pattern it recommends: Channel Access may coalesce Capture_RBV's edges)."""
    rules = load_rules(
        [REPO / "triggers" / "examples"],
        known_workflows=lambda n: (REPO / "workflows" / f"{n}.py").is_file(),
    )
    rule = rules.by_name("ad-capture-done")
    assert (rule.pv.name, rule.pv.condition.kind, rule.pv.condition.across_disconnect) == (
        "BL13:DET1:HDF1:FileNumber_RBV",
        "increment",
        "ignore",
    )
    event = PvEvent(
        rule=rule.name,
        pv="BL13:DET1:HDF1:FileNumber_RBV",
        value=21,
        old_value=20,
        timestamp=1.0,
        severity=0,
        reason="increment",
        seen_at=1.0,
        index=21,
        snapshot={"BL13:DET1:HDF1:FullFileName_RBV": taken("/data/a.h5")},
    )
    found = rule.render_pv(event)
    assert found.params == {"path": "/data/a.h5", "name": "unknown"}
    assert found.wait_for_file == "/data/a.h5"
    assert load_rules([REPO / "triggers"]).by_name("file-info")  # the examples dir is not read


@pytest.mark.parametrize("directory", ["triggers", "triggers/examples"])
def test_example_rules_drop_no_trigger_by_default(directory):
    """The example rules keep no limit that drops a trigger: every rule enabled, no PV
    debounce or settle (file rule limits only delay or group); the comments of the PV
    example's debounce and settle say that they drop."""
    rules = load_rules(
        [REPO / directory], known_workflows=lambda n: (REPO / "workflows" / f"{n}.py").is_file()
    )
    assert rules.rules
    for rule in rules:
        assert rule.enabled, rule.name
        if rule.pv is not None:
            assert (rule.pv.condition.debounce, rule.pv.condition.settle) == (0.0, 0.0), rule.name
    if directory == "triggers/examples":
        text = (REPO / directory / "areadetector.toml").read_text()
        assert "because both DROP captures" in text and 'reason "debounce"' in text


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ('when = "falling"\n', "rule[0].pv.name", "required key is missing"),
        ('name = "A B"\nwhen = "falling"\n', "rule[0].pv.name", "without spaces"),
        ('name = "A:B"\nwhen = "sometimes"\n', "rule[0].pv.when", "unknown condition 'sometimes'"),
        ('name = "A:B"\nwhen = "above"\n', "rule[0].pv.threshold", ""),
        ('name = "A:B"\nwhen = "regex"\npattern = "(unclosed"\n', "rule[0].pv.pattern", ""),
        (
            'name = "A:B"\nwhen = "above"\nthreshold = 1\nlow = 0\n',
            "rule[0].pv.low",
            "not used by when = 'above'",
        ),
        ('name = "A:B"\nwhen = "falling"\nsettle = "soon"\n', "rule[0].pv.settle", ""),
        ('name = "A:B"\nwhen = "falling"\nsnapshots = []\n', "rule[0].pv.snapshots", "unknown key"),
    ],
    ids=[
        "no-name",
        "spaces",
        "kind",
        "no-threshold",
        "bad-regex",
        "foreign-key",
        "bad-settle",
        "unknown",
    ],
)
def test_a_bad_pv_rule_names_its_key(tmp_path, table, key, words):
    """[rule.pv] is checked at load as the PV source will read it: each problem names the key."""
    text = '[[rule]]\nname = "p"\nworkflow = "w"\n[rule.pv]\n' + table
    (problem,) = load_error(tmp_path, text).problems
    assert problem.key == key and words in problem.message
