"""Wire messages of the WebSocket, one frozen dataclass per client ``type``.

Every message is a JSON object with a ``type``. Parsing checks the size, the
nesting, the JSON, the type and each field (type, length, range, and for the SDP
and candidates that reach the server's own recorder, their shape) and raises
``ProtocolError`` with a stable code; it never trusts the input (no ``assert``).
Text must be Unicode scalar values without NUL: a lone surrogate (``"\ud800"``)
would be stored but could never be relayed or exported. The browser's
``web/static/js/signaling.js`` mirrors these names; what the server sends back
is in ``outbound.py``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from media.offer import offer_problem
from records.vocab import ErrorCode
from signaling import jsonlimits

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP = 32 * 1024
MAX_CHAT = 2000
ID_LEN = 32
# Every field is a scalar: a message nests one level. A little room is left so that
# a nested value is refused as ``invalid_field`` naming it; deeper is not JSON we read.
MAX_DEPTH = 8
# Integers fit a database INTEGER and a JavaScript number; event ids get 53 bits.
MAX_INT = 2**31 - 1
MAX_EVENT_ID = 2**53 - 1
MAX_MLINE = 1023
MAX_SHOWN_NAME = 64  # of a field name echoed in an error


class ProtocolError(Exception):
    """A message that cannot be accepted; the socket stays open."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _limit(n: int, check: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Field metadata: the longest string or the largest integer, and a shape check."""
    return {"max": n, "check": check}


def sdp_offer_problem(sdp: str) -> str | None:
    """What keeps ``sdp`` from being an offer the recorder can take (None: nothing).

    Parsed as the recorder (aiortc) will parse it, with what aiortc refuses
    checked too, so that bad input is refused here as ``invalid_field`` and never
    reaches a peer connection (``media.offer``).
    """
    if not sdp.startswith("v=0"):
        return "must be an SDP description (v=0 first)"
    return offer_problem(sdp)


def sdp_answer_problem(sdp: str) -> str | None:
    """What keeps ``sdp`` from being an answer aiortc can take (None: nothing)."""
    if not sdp.startswith("v=0"):
        return "must be an SDP description (v=0 first)"
    return offer_problem(sdp, recordable=False)


def _number(text: str, largest: int) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= largest


def ice_candidate_problem(candidate: str) -> str | None:
    """What keeps ``candidate`` from being an ICE candidate line (None: nothing; empty
    is the end of candidates). RFC 8839: foundation, component, transport,
    priority, address, port, ``typ`` and type, then name/value pairs."""
    if not candidate:
        return None
    parts = candidate.removeprefix("a=").removeprefix("candidate:").split()
    if len(parts) < 8 or (len(parts) - 8) % 2:
        return "must be foundation component transport priority address port typ type"
    if not (
        _number(parts[1], 256)
        and parts[2].lower() in ("udp", "tcp")
        and _number(parts[3], 2**32 - 1)
        and _number(parts[5], 65535)
        and parts[6] == "typ"
        and parts[7] in ("host", "srflx", "prflx", "relay")
    ):
        return "is not a candidate line"
    pairs = dict(zip(parts[8::2], parts[9::2], strict=True))
    if "rport" in pairs and not _number(pairs["rport"], 65535):
        return "has a bad rport"
    return None


@dataclass(frozen=True, kw_only=True)
class Join:
    """Join (or, with the same ``tab_id``, resume) a consultation's call."""

    type: ClassVar[str] = "join"
    consultation_id: str = field(metadata=_limit(ID_LEN))
    tab_id: str = field(metadata=_limit(64))
    # Timeline events after this id are replayed (what was missed while away).
    resume_after: int | None = field(default=None, metadata=_limit(MAX_EVENT_ID))


@dataclass(frozen=True, kw_only=True)
class Leave:
    """Leave the call (the consultation goes on for the others)."""

    type: ClassVar[str] = "leave"


@dataclass(frozen=True, kw_only=True)
class Offer:
    """An SDP offer for one other participant."""

    type: ClassVar[str] = "offer"
    to: str = field(metadata=_limit(ID_LEN))
    sdp: str = field(metadata=_limit(MAX_SDP))


@dataclass(frozen=True, kw_only=True)
class Answer:
    """An SDP answer for one other participant."""

    type: ClassVar[str] = "answer"
    to: str = field(metadata=_limit(ID_LEN))
    sdp: str = field(metadata=_limit(MAX_SDP))


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A trickled ICE candidate for one other participant (empty: end of candidates)."""

    type: ClassVar[str] = "candidate"
    to: str = field(metadata=_limit(ID_LEN))
    candidate: str = field(metadata=_limit(1024))
    sdp_mid: str | None = field(default=None, metadata=_limit(64))
    sdp_mline_index: int | None = field(default=None, metadata=_limit(MAX_MLINE))


@dataclass(frozen=True, kw_only=True)
class Chat:
    """A chat line; relayed at once, then stored on the timeline.

    ``ref`` is the sender's own name for the line (a page makes one per line): it
    comes back in the stored event, so the page can tell its line is on the record,
    and a line sent again after a reconnect is not stored twice.
    """

    type: ClassVar[str] = "chat"
    text: str = field(metadata=_limit(MAX_CHAT))
    ref: str | None = field(default=None, metadata=_limit(64))


@dataclass(frozen=True, kw_only=True)
class MediaState:
    """The sender's microphone and camera state, shown to the others."""

    type: ClassVar[str] = "media_state"
    audio: bool
    video: bool


@dataclass(frozen=True, kw_only=True)
class End:
    """End the consultation's call for everyone (clinic doctor or specialist)."""

    type: ClassVar[str] = "end"


@dataclass(frozen=True, kw_only=True)
class RecOffer:
    """The offer of the sender's send-only recording connection to the server."""

    type: ClassVar[str] = "rec_offer"
    sdp: str = field(metadata=_limit(MAX_SDP, sdp_offer_problem))


@dataclass(frozen=True, kw_only=True)
class RecCandidate:
    """A trickled ICE candidate of the recording connection."""

    type: ClassVar[str] = "rec_candidate"
    candidate: str = field(metadata=_limit(1024, ice_candidate_problem))
    sdp_mid: str | None = field(default=None, metadata=_limit(64))
    sdp_mline_index: int | None = field(default=None, metadata=_limit(MAX_MLINE))


@dataclass(frozen=True, kw_only=True)
class RecStop:
    """The sender stops its recording leg (e.g. before a reconnect)."""

    type: ClassVar[str] = "rec_stop"


@dataclass(frozen=True, kw_only=True)
class RelayAnswer:
    """The answer to the server's ``relay_offer``: the receiving side of the
    relay that carries ``source``'s camera and microphone to this page."""

    type: ClassVar[str] = "relay_answer"
    source: str = field(metadata=_limit(ID_LEN))
    sdp: str = field(metadata=_limit(MAX_SDP, sdp_answer_problem))


@dataclass(frozen=True, kw_only=True)
class DocShow:
    """Show a document to everyone in the call (their panels open it at ``page``)."""

    type: ClassVar[str] = "doc_show"
    document_id: str = field(metadata=_limit(ID_LEN))
    page: int | None = None


@dataclass(frozen=True, kw_only=True)
class DocOpen:
    """The sender opened a document in their own panel (a timeline event)."""

    type: ClassVar[str] = "doc_open"
    document_id: str = field(metadata=_limit(ID_LEN))
    page: int | None = None


@dataclass(frozen=True, kw_only=True)
class Ping:
    """Application-level ping (the server also sends WebSocket heartbeats)."""

    type: ClassVar[str] = "ping"


ClientMessage = (
    Join
    | Leave
    | Offer
    | Answer
    | Candidate
    | Chat
    | MediaState
    | End
    | RecOffer
    | RecCandidate
    | RecStop
    | RelayAnswer
    | DocShow
    | DocOpen
    | Ping
)
TYPES: dict[str, type[Any]] = {
    cls.type: cls
    for cls in (
        Join,
        Leave,
        Offer,
        Answer,
        Candidate,
        Chat,
        MediaState,
        End,
        RecOffer,
        RecCandidate,
        RecStop,
        RelayAnswer,
        DocShow,
        DocOpen,
        Ping,
    )
}
# Every ``type`` a browser may send.
CLIENT_MESSAGE_TYPES: frozenset[str] = frozenset(TYPES)


def _check(name: str, hint: Any, value: Any, meta: Any) -> None:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    limit: int | None = meta.get("max")
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            largest = MAX_INT if limit is None else limit
            if value < 0:
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} must not be negative", name)
            if value > largest:
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD, f"{name} must not be above {largest}", name
                )
            return
        if kind is str and isinstance(value, str):
            if limit is not None and len(value) > limit:
                raise ProtocolError(
                    ErrorCode.FIELD_TOO_LONG, f"{name} is longer than {limit}", name
                )
            if jsonlimits.bad_text(value):
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD, f"{name} is not valid Unicode text", name
                )
            check = meta.get("check")
            problem = check(value) if check is not None else None
            if problem is not None:
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} {problem}", name)
            return
    raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} has the wrong type", name)


# Resolving type hints costs ~50 µs a call; a message type's shape never changes,
# so it is worked out once.
_SHAPES: dict[str, tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]] = {
    name: (typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)})
    for name, cls in TYPES.items()
}


def parse(raw: str | bytes) -> ClientMessage:
    """Parse and validate one client message.

    Raises:
        ProtocolError: ``too_large``, ``invalid_json``, ``not_an_object``,
            ``unknown_type``, ``missing_field``, ``unknown_field``,
            ``invalid_field`` or ``field_too_long``.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"messages are limited to {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        data = jsonlimits.loads(raw, max_depth=MAX_DEPTH)
    except jsonlimits.TooDeep:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"messages nest at most {MAX_DEPTH} levels"
        ) from None
    except ValueError:  # also UnicodeDecodeError, and numbers too long to convert
        raise ProtocolError(ErrorCode.INVALID_JSON, "message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, "message must be a JSON object")
    for name in data:
        # Checked before any name is echoed in an error (which must be sendable).
        if jsonlimits.bad_text(name):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "a field name is not valid Unicode text")
    kind = data.pop("type", None)
    cls = TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type", "type")
    hints, fields = _SHAPES[cls.type]
    for name in data:
        if name not in fields:
            shown = name[:MAX_SHOWN_NAME]
            raise ProtocolError(ErrorCode.UNKNOWN_FIELD, f"unknown field {shown}", shown)
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"{name} is required", name)
            continue
        _check(name, hints[name], data[name], f.metadata)
    msg = typing.cast(ClientMessage, cls(**data))
    if isinstance(msg, RecCandidate) and msg.candidate and msg.sdp_mid is None:
        if msg.sdp_mline_index is None:  # the recorder could not place it
            raise ProtocolError(
                ErrorCode.MISSING_FIELD, "a candidate needs sdp_mid or sdp_mline_index", "sdp_mid"
            )
    return msg
