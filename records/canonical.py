"""Canonical JSON: the one byte form of a signed body.

An opinion's signature is a SHA-256 over these bytes, and the FHIR export carries
them so that a receiving system can check that hash. Changing a single byte of
the form (key order, spacing, escaping) breaks every stored signature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The bytes a signature's SHA-256 is taken over.

    Args:
        body: a JSON-able mapping (the signed fields of an opinion).

    Returns:
        The body as JSON with sorted keys, no spaces, non-ASCII characters as
        themselves (not ``\\u`` escapes), encoded as UTF-8.
    """
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
