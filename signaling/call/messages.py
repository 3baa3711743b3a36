"""Wire messages of the WebSocket, one frozen dataclass per client ``type``.

Every message is a JSON object with a ``type``. Parsing checks the size, the
JSON, the type and each field (type and length) and raises ``ProtocolError`` with
a stable code; it never trusts the input (no ``assert``). The browser's
``web/static/js/signaling.js`` mirrors these names; what the server sends back
is in ``outbound.py``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from records.vocab import ErrorCode

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP = 32 * 1024
MAX_CHAT = 2000
ID_LEN = 32


class ProtocolError(Exception):
    """A message that cannot be accepted; the socket stays open."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _limit(n: int) -> dict[str, int]:
    return {"max": n}


@dataclass(frozen=True, kw_only=True)
class Join:
    """Join (or, with the same ``tab_id``, resume) a consultation's call."""

    type: ClassVar[str] = "join"
    consultation_id: str = field(metadata=_limit(ID_LEN))
    tab_id: str = field(metadata=_limit(64))
    # Timeline events after this id are replayed (what was missed while away).
    resume_after: int | None = None


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
    sdp_mline_index: int | None = None


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
    sdp: str = field(metadata=_limit(MAX_SDP))


@dataclass(frozen=True, kw_only=True)
class RecCandidate:
    """A trickled ICE candidate of the recording connection."""

    type: ClassVar[str] = "rec_candidate"
    candidate: str = field(metadata=_limit(1024))
    sdp_mid: str | None = field(default=None, metadata=_limit(64))
    sdp_mline_index: int | None = None


@dataclass(frozen=True, kw_only=True)
class RecStop:
    """The sender stops its recording leg (e.g. before a reconnect)."""

    type: ClassVar[str] = "rec_stop"


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
        DocShow,
        DocOpen,
        Ping,
    )
}
# Every ``type`` a browser may send.
CLIENT_MESSAGE_TYPES: frozenset[str] = frozenset(TYPES)


def _check(name: str, hint: Any, value: Any, limit: int | None) -> None:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} must not be negative", name)
            return
        if kind is str and isinstance(value, str):
            if limit is not None and len(value) > limit:
                raise ProtocolError(
                    ErrorCode.FIELD_TOO_LONG, f"{name} is longer than {limit}", name
                )
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
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(ErrorCode.INVALID_JSON, "message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, "message must be a JSON object")
    kind = data.pop("type", None)
    cls = TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type", "type")
    hints, fields = _SHAPES[cls.type]
    for name in data:
        if name not in fields:
            raise ProtocolError(ErrorCode.UNKNOWN_FIELD, f"unknown field {name}", name)
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"{name} is required", name)
            continue
        _check(name, hints[name], data[name], f.metadata.get("max"))
    return typing.cast(ClientMessage, cls(**data))
