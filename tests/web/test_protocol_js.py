"""The browser and the server speak the same protocol, checked from both sides' code.

The server's message types come from the typed dataclasses (``SERVER_MESSAGE_TYPES``,
``CLIENT_MESSAGE_TYPES``); the page's from its one handler table (``HANDLERS`` in
call-state.js), the socket module's transport messages, and every ``send`` of a
``{type: ...}`` literal. A type added on one side only fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from signaling.call.messages import CLIENT_MESSAGE_TYPES
from signaling.call.outbound import SERVER_MESSAGE_TYPES

JS = Path(__file__).resolve().parents[2] / "web" / "static" / "js"


def handler_table() -> set[str]:
    """The keys of ``HANDLERS`` in call-state.js (one literal object)."""
    source = (JS / "call-state.js").read_text(encoding="utf-8")
    start = source.index("export const HANDLERS = Object.freeze({")
    body = source[start : source.index("\n});", start)]
    return set(re.findall(r'^  "?([a-z_.]+)"?:', body, flags=re.MULTILINE))


def transport_types() -> set[str]:
    """The server messages socket.js consumes itself (never reach the handlers)."""
    source = (JS / "socket.js").read_text(encoding="utf-8")
    return set(re.findall(r'message\.type === "([a-z_.]+)"', source))


def sent_types() -> set[str]:
    """Every message type a page module sends to the server."""
    found: set[str] = set()
    for path in JS.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        # A send(...) or close(...) with a literal type, possibly on the next line.
        found |= set(re.findall(r'(?:send|close)\(\{\s*type: "([a-z_.]+)"', source))
        found |= set(re.findall(r'send\(\{\n\s*type: "([a-z_.]+)"', source))
    return found


def test_the_page_handles_every_server_message_and_no_other() -> None:
    handled = handler_table() | transport_types()
    assert transport_types() == {"hello", "pong"}
    assert handled - SERVER_MESSAGE_TYPES == set(), "the page handles types the server never sends"
    assert SERVER_MESSAGE_TYPES - handled == set(), "server messages with no handler in the page"


def test_the_page_sends_only_what_the_server_parses() -> None:
    sent = sent_types()
    assert {"join", "offer", "answer", "candidate", "chat", "ping", "rec_offer"} <= sent
    assert sent - CLIENT_MESSAGE_TYPES == set(), "the page sends types the server refuses"
