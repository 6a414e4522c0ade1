"""triggerd.text: names that are not clean text, on their way to people and to JSON."""

from __future__ import annotations

import json
import os

import pytest

from triggerd.text import dumps, shown


@pytest.mark.parametrize(
    ("raw", "seen"),
    [
        ("plain name.h5", "plain name.h5"),
        ("café_Ω_数据.h5", "café_Ω_数据.h5"),  # UTF-8 is text, not a problem
        ("two\nlines", "two\\nlines"),
        ("cr\rover", "cr\\rover"),
        ("tab\there", "tab\\there"),
        ("esc\x1b[2Jclear", "esc\\x1b[2Jclear"),
        ("del\x7f c1\x85", "del\\x7f c1\\x85"),
        ("bidi\u202etxt.exe", "bidi\\u202etxt.exe"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("caf" + os.fsdecode(b"\xff") + ".h5", "caf\\xff.h5"),  # the byte, as the name had it
        ("tag\U000e0041", "tag\\U000e0041"),
        ("emoji 😀", "emoji 😀"),
    ],
)
def test_shown_escapes_what_could_forge_or_hide_text(raw, seen):
    assert shown(raw) == seen
    assert "\n" not in shown(raw) and "\x1b" not in shown(raw)
    shown(raw).encode()  # printable on any UTF-8 terminal


def test_shown_takes_any_value():
    assert shown(42) == "42" and shown(None) == "None"


def test_json_keeps_utf8_readable_and_a_non_utf8_byte_recoverable():
    name = os.fsdecode(b"/data/caf\xff\xc3\xa9.h5")
    text = dumps({"path": name, "n": 1, "bidi": "a\u202eb"})
    assert '"/data/caf\\udcffé.h5"' in text  # é as itself, the odd byte as its escape
    text.encode("utf-8")  # what every HTTP answer is
    assert os.fsencode(json.loads(text)["path"]) == b"/data/caf\xff\xc3\xa9.h5"
    assert json.loads(text)["bidi"] == "a\u202eb"  # JSON is data: it is not escaped for people
