"""Text from outside (file names, PV values, what tasks print) on its way to people and to JSON.

A file name on Linux is any bytes but ``/`` and NUL. triggerd holds it as Python does
(``os.fsdecode``): bytes that are not UTF-8 become lone surrogates U+DC80..U+DCFF
(PEP 383, "surrogateescape"), so ``os.fsencode`` gives the exact bytes back. Two
conventions follow, used everywhere text leaves the daemon:

**JSON** (every API answer, every ``--json``): UTF-8, with each such byte written as the
JSON escape ``\\udcXX`` (XX: the byte). A name that is valid UTF-8 reads as itself; one
that is not stays readable, and is still one string in one field. To get the exact
bytes: in Python ``os.fsencode(json.loads(text)["path"])``; elsewhere, each ``\\udcXX``
is the byte 0xXX. (The escape is valid JSON; strict parsers that refuse lone
surrogates, such as serde_json, need that rule applied first.)

**Text for a person** (tables, log lines, ``show``, ``explain``): :func:`shown` escapes
what could forge or hide what an operator reads: control characters (a newline or CR in
a name would start a fake line, ESC would send terminal commands), bidi and other
invisible format characters (U+202E reverses what follows), line separators and the
non-UTF-8 bytes. Each becomes a visible backslash escape (``\\n``, ``\\x1b``,
``\\u202e``, ``\\xff``). A backslash itself is left as it is: text that already
holds escapes (a task's output, captured as ``\\xff``) stays readable, at the price
that a name spelled with a literal ``\\n`` looks like one with a newline; the JSON
tells them apart.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

__all__ = ["dumps", "shown"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")
# What the escaping looks at: C0/DEL/C1 controls, surrogates, and everything
# in the "format" and "separator" categories below U+FFFF and above (checked one by one).
_CANDIDATE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]|[^\x00-\uffff]"
)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8: show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(char: str) -> bool:
    return char in _NAMED or unicodedata.category(char) in (
        "Cc",
        "Cf",
        "Cs",
        "Zl",
        "Zp",
        "Co",
        "Cn",
    )


def shown(value: Any) -> str:
    """``value`` as text a person can read without being misled (see the module doc).

    >>> shown("a\\nb\\u202ec\\udcff")
    'a\\\\nb\\\\u202ec\\\\xff'
    """
    text = value if isinstance(value, str) else str(value)
    if not _CANDIDATE.search(text):
        return text  # the common case: nothing to escape
    return _CANDIDATE.sub(
        lambda m: _escape(m.group()) if _needs_escape(m.group()) else m.group(), text
    )


def dumps(data: Any, *, indent: int | None = None) -> str:
    """``data`` as JSON text: UTF-8 as itself, a non-UTF-8 byte of a name as ``\\udcXX``
    (see the module doc), anything else that JSON cannot hold as ``str(value)``."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, default=str)
    # A lone surrogate can only stand inside a JSON string here: escaping it in place
    # gives the same string back to any reader, as text that encodes to UTF-8.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
