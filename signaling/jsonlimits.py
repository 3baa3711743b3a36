"""JSON from strangers: bounded nesting, and text made of Unicode scalar values only.

``json.loads`` recurses once per nesting level, so a body of a few thousand
``[`` raises ``RecursionError`` (not a ``ValueError``) in the parser or in
whatever walks the result later. ``loads`` measures the nesting first, without
recursion, and refuses too deep a document as invalid JSON. JSON may also carry
lone surrogates (``"\\ud800"``): Python keeps them in ``str``, but they cannot be
encoded as UTF-8, so such text could be stored and then never be sent, relayed or
exported again. ``bad_text`` finds them (and NUL, which PostgreSQL text refuses).
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

# A JSON string: a quote, then runs of ordinary characters or escapes ("unrolled"
# so the regex engine neither backtracks nor recurses on a long string).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Opening brackets count +1, closing ones -1 (as signed bytes).
_DEPTH = str.maketrans({"[": "\x01", "{": "\x01", "]": "\xff", "}": "\xff"})
_BAD_TEXT = re.compile("[\ud800-\udfff\x00]")


class TooDeep(ValueError):
    """The document nests deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


def depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count).

    Linear in the length and without recursion; meant to run before a parser
    that recurses. Malformed text gets some number: the parser refuses it after.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    steps = array("b", brackets.translate(_DEPTH).encode("latin-1"))
    return max(0, max(accumulate(steps)))


def deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` in ``text``.

    Text with no more opening brackets than ``limit`` cannot (counting them is
    C speed); only the rest is measured (about 50 ms a megabyte).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    return depth(text) > limit


def loads(raw: str | bytes, *, max_depth: int) -> Any:
    """``json.loads`` of UTF-8 text nesting at most ``max_depth`` levels.

    Raises:
        TooDeep: nested deeper than ``max_depth`` (a ``ValueError``).
        ValueError: not UTF-8, or not JSON (``json.JSONDecodeError``), or a
            number too long to convert.
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if deeper_than(text, max_depth):
        raise TooDeep(max_depth)
    return json.loads(text)


def bad_text(value: str) -> bool:
    """Whether ``value`` holds a lone surrogate or NUL (not storable, not sendable)."""
    return _BAD_TEXT.search(value) is not None


def bad_keys_or_text(data: Any) -> bool:
    """Whether any string in ``data`` (keys included) is ``bad_text``; iterative."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if bad_text(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
