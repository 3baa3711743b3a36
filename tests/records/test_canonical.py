"""Canonical JSON keeps its exact bytes: every stored signature is a hash of them."""

from __future__ import annotations

import hashlib

from records.canonical import canonical_json


def test_sorted_keys_no_spaces_utf8() -> None:
    body = {"impression": "肺炎", "findings": "湿啰音", "notes": None, "n": [1, 2.5]}
    # Non-ASCII characters as UTF-8 bytes, not \u escapes.
    expected = '{"findings":"湿啰音","impression":"肺炎","n":[1,2.5],"notes":null}'.encode()
    assert canonical_json(body) == expected
    assert b"\\u" not in canonical_json(body)


def test_same_hash_whatever_the_key_order() -> None:
    a = canonical_json({"b": 1, "a": {"y": 2, "x": 3}})
    b = canonical_json({"a": {"x": 3, "y": 2}, "b": 1})
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
