"""Hypothesis strategies for the WebSocket wire protocol (``signaling.call.messages``).

``frames(peers)`` draws one client frame: a well-formed message of any type, or one
made hostile in one way (a field dropped, an unknown field added -- names may be
lone surrogates --, a value of the wrong type or out of range, random JSON, deep
nesting, the type changed) or raw text that is not a message at all. Sent as
``json.dumps`` writes it, so a lone surrogate goes on the wire as ``\\ud800``.

A Hypothesis test runs in a worker thread (``asyncio.to_thread``); ``on_loop`` runs
each example's coroutines on the test's own event loop, where the app lives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from signaling.call import messages as m

T = TypeVar("T")

# Deterministic (the same examples on every run and in CI), no example database.
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

LOOPBACK = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"
# The least a recording offer needs to get past the checks (``media.offer``).
REC_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
    "a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=ice-ufrag:abcd\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
)
NOT_TEXT = ["\ud800", "\udfff", "\x00", "\udc80"]

# Any code point, lone surrogates and NUL included.
any_char = st.characters(exclude_categories=()) | st.sampled_from(NOT_TEXT)
any_text = st.text(any_char, max_size=12) | st.sampled_from(["a\udc80b", "type\ud800"])
good_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
huge_ints = st.integers(min_value=2**31, max_value=2**70) | st.sampled_from([2**53, 2**63])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)


def nested(depth: int, inner: str = "1") -> str:
    """``depth`` arrays around ``inner``."""
    return "[" * depth + inner + "]" * depth


def good_values(peers: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """A well-formed value for every field name of every message type."""
    ids = st.sampled_from([*peers, "0" * 32]) | st.text("0123456789abcdef", max_size=32)
    return {
        "consultation_id": ids,
        "document_id": ids,
        "to": ids,
        "source": ids,
        "tab_id": good_text.filter(lambda s: len(s) <= 64),
        "resume_after": st.none() | st.integers(0, m.MAX_EVENT_ID),
        "page": st.none() | st.integers(0, m.MAX_INT),
        "sdp_mline_index": st.none() | st.integers(0, m.MAX_MLINE),
        "sdp": st.sampled_from([REC_OFFER, "v=0\r\n"]),
        "candidate": st.sampled_from([LOOPBACK, ""]),
        "sdp_mid": st.none() | st.sampled_from(["0", "1", "audio"]),
        "text": good_text.filter(lambda s: 0 < len(s) <= m.MAX_CHAT),
        "ref": st.none() | st.text("abcdef0123456789-", min_size=1, max_size=64),
        "audio": st.booleans(),
        "video": st.booleans(),
    }


def field_names() -> set[str]:
    """Every field of every client message type (``good_values`` must cover them)."""
    return {name for _, fields in m._SHAPES.values() for name in fields}


@st.composite
def frames(draw: st.DrawFn, peers: list[str]) -> str:
    """One client frame, well-formed or hostile (see the module docstring)."""
    values = good_values(peers)
    kind = draw(st.sampled_from(sorted(m.TYPES)))
    _, fields = m._SHAPES[kind]
    obj: dict[str, Any] = {"type": kind}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING
        if required or draw(st.booleans()):
            obj[name] = draw(values[name])
    # Half the frames are well-formed, so that every handler runs on real input too.
    how = draw(
        st.sampled_from(
            ["as is"] * 7 + ["drop", "add", "revalue", "retype", "nest", "not an object", "raw"]
        )
    )
    if how == "drop" and fields:
        obj.pop(draw(st.sampled_from(sorted(fields))), None)
    elif how == "add":
        obj[draw(any_text)] = draw(json_values)
    elif how == "revalue" and fields:
        obj[draw(st.sampled_from(sorted(fields)))] = draw(json_values | huge_ints)
    elif how == "retype":
        obj["type"] = draw(any_text | json_values)
    elif how == "nest":
        depth = draw(st.integers(1, 30_000))
        name = draw(st.sampled_from(sorted(fields) or ["x"]))
        body = json.dumps(obj)[:-1]
        sep = ", " if len(obj) else ""
        return f"{body}{sep}{json.dumps(name)}: {nested(depth)}}}"
    elif how == "not an object":
        return json.dumps(draw(json_values))
    elif how == "raw":
        return draw(any_text | st.sampled_from(["", "{", "[]", '{"type": "ping"', "null"]))
    return json.dumps(obj)


def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """From the Hypothesis thread (``asyncio.to_thread``): run ``coro`` on the test's
    loop, where the app's services live, and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)
