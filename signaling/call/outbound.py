"""Wire messages from the server to the browser, one frozen dataclass per ``type``.

The other direction of ``messages.py``: everything the server sends on a
WebSocket is one of these, through ``Channel.send`` (or ``encode`` once and
``Channel.send_text`` to many), so no message is a free-form dict. The JSON keys
are the field names in declaration order after ``type``, with two rules:

- a trailing underscore is dropped (``from_`` is sent as ``from``, a Python
  keyword);
- a field declared with ``omit_if_none()`` is left out while it is None (the
  message has that key only sometimes); every other field is always sent, None
  as ``null``.

Nested parts (a peer's tile, a timeline event, the recording status) are
dataclasses of their own without a ``type``. The browser's ``signaling.js`` and
the page modules handle the names in ``SERVER_MESSAGE_TYPES``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from records.models import Event


def omit_if_none() -> Any:
    """A field that defaults to None and is left out of the JSON while None."""
    return field(default=None, metadata={"omit_if_none": True})


# -- nested parts ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IceServer:
    """One entry of ``RTCConfiguration.iceServers``."""

    urls: tuple[str, ...]
    username: str | None = omit_if_none()
    credential: str | None = omit_if_none()


@dataclass(frozen=True, kw_only=True)
class PeerInfo:
    """What the others' tiles show of one participant."""

    peer_id: str
    display_name: str
    title: str | None
    role: str
    institution: str
    audio: bool
    video: bool
    connected: bool


@dataclass(frozen=True, kw_only=True)
class EventInfo:
    """A timeline event as call pages show it."""

    id: int
    at: str
    kind: str
    actor_id: str | None
    actor_name: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event, names: dict[str, str]) -> EventInfo:
        """``event`` with its actor's name looked up in ``names`` (peer id -> name)."""
        return cls(
            id=event.id,
            at=event.at.isoformat(),
            kind=event.kind,
            actor_id=event.actor_id,
            actor_name=names.get(event.actor_id or "", ""),
            data=event.data,
        )


@dataclass(frozen=True, kw_only=True)
class RecordingInfo:
    """Whether this call can be recorded, and who is being recorded now."""

    available: bool
    allowed: bool
    max_bitrate: int | None = omit_if_none()  # only when available
    recording: tuple[str, ...] = ()
    # The server relays this call: each page sends once, on its recording
    # leg, and receives the others from the server (no browser mesh).
    relay: bool | None = omit_if_none()  # only when available


# -- messages ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Hello:
    """First message on every socket: who the server knows the socket as."""

    type: ClassVar[str] = "hello"
    account_id: str


@dataclass(frozen=True, kw_only=True)
class Pong:
    """The answer to a ``ping``."""

    type: ClassVar[str] = "pong"


@dataclass(frozen=True, kw_only=True)
class Error:
    """A message or action was refused; the socket stays open."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    field: str | None = None  # the offending field of the client's message


@dataclass(frozen=True, kw_only=True)
class ChatNotStored:
    """To the sender: a chat line (already relayed) could not be stored; it may resend."""

    type: ClassVar[str] = "error"
    code: str = "chat_not_stored"
    message: str = "the message could not be stored"
    ref: str


@dataclass(frozen=True, kw_only=True)
class Joined:
    """To the one who joined: the call as it is, and what they missed."""

    type: ClassVar[str] = "joined"
    consultation_id: str
    peer_id: str
    resumed: bool
    peers: tuple[PeerInfo, ...]
    ice_servers: tuple[IceServer, ...]
    ice_transport_policy: str
    state: str
    recording: RecordingInfo
    events: tuple[EventInfo, ...]


@dataclass(frozen=True, kw_only=True)
class PeerJoined:
    """To the others: someone joined (or came back: ``resumed``)."""

    type: ClassVar[str] = "peer_joined"
    peer: PeerInfo
    resumed: bool


@dataclass(frozen=True, kw_only=True)
class PeerLeft:
    """To the others: someone left, or their place lapsed."""

    type: ClassVar[str] = "peer_left"
    peer_id: str


@dataclass(frozen=True, kw_only=True)
class PeerState:
    """To the others: someone's socket dropped (their place is kept for a while)."""

    type: ClassVar[str] = "peer_state"
    peer_id: str
    connected: bool


@dataclass(frozen=True, kw_only=True)
class RelayedOffer:
    """An SDP offer from another participant."""

    type: ClassVar[str] = "offer"
    from_: str
    sdp: str


@dataclass(frozen=True, kw_only=True)
class RelayedAnswer:
    """An SDP answer from another participant."""

    type: ClassVar[str] = "answer"
    from_: str
    sdp: str


@dataclass(frozen=True, kw_only=True)
class RelayedCandidate:
    """An ICE candidate from another participant."""

    type: ClassVar[str] = "candidate"
    from_: str
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, kw_only=True)
class RelayedChat:
    """A chat line from another participant, before it is stored."""

    type: ClassVar[str] = "chat"
    from_: str
    ref: str
    text: str


@dataclass(frozen=True, kw_only=True)
class ChatFailed:
    """To the others: that line of ``from_`` is not on the record."""

    type: ClassVar[str] = "chat_failed"
    from_: str
    ref: str


@dataclass(frozen=True, kw_only=True)
class RelayedMediaState:
    """Another participant's microphone and camera state."""

    type: ClassVar[str] = "media_state"
    from_: str
    audio: bool
    video: bool


@dataclass(frozen=True, kw_only=True)
class RelayedDocShow:
    """Another participant shows everyone a document."""

    type: ClassVar[str] = "doc_show"
    from_: str
    document_id: str
    page: int | None


@dataclass(frozen=True, kw_only=True)
class TimelineEvent:
    """An event stored on the consultation's timeline."""

    type: ClassVar[str] = "event"
    event: EventInfo


@dataclass(frozen=True, kw_only=True)
class StateChanged:
    """The consultation's state changed (live; ended ``by`` someone)."""

    type: ClassVar[str] = "state"
    state: str
    by: str | None = omit_if_none()


@dataclass(frozen=True, kw_only=True)
class RecordingChanged:
    """A participant's recording leg changed state: recording, stopped (asked
    for), interrupted (it ended by itself while they stayed) or failed.

    ``kept``: only the file stopped (``reason``: ``disk_full``,
    ``write_failed``); the leg's connection goes on and, in a relayed call,
    still carries the participant to the others (their relay link stays, and
    their page keeps its leg: the server records it again when it can).
    """

    type: ClassVar[str] = "recording"
    peer_id: str
    state: str
    kept: bool | None = omit_if_none()
    reason: str | None = omit_if_none()


@dataclass(frozen=True, kw_only=True)
class RecAnswer:
    """The recorder's answer to the sender's ``rec_offer``."""

    type: ClassVar[str] = "rec_answer"
    sdp: str


@dataclass(frozen=True, kw_only=True)
class RelayOffer:
    """The server's offer of a send-only connection carrying ``source``'s
    camera and microphone to this page (the relay of a recorded call)."""

    type: ClassVar[str] = "relay_offer"
    source: str
    sdp: str


@dataclass(frozen=True, kw_only=True)
class ConsultationChanged:
    """Push: a consultation's state or assignment changed (identifiers and states only)."""

    type: ClassVar[str] = "consultation.changed"
    id: str
    state: str
    escalated: bool
    department_id: str


@dataclass(frozen=True, kw_only=True)
class ConsultationOverdue:
    """Push to the coordinators: a consultation passed its deadline (``accept`` or
    ``complete``; identifiers and states only)."""

    type: ClassVar[str] = "consultation.overdue"
    id: str
    state: str
    department_id: str
    deadline: str


ServerMessage = (
    Hello
    | Pong
    | Error
    | ChatNotStored
    | Joined
    | PeerJoined
    | PeerLeft
    | PeerState
    | RelayedOffer
    | RelayedAnswer
    | RelayedCandidate
    | RelayedChat
    | ChatFailed
    | RelayedMediaState
    | RelayedDocShow
    | TimelineEvent
    | StateChanged
    | RecordingChanged
    | RecAnswer
    | RelayOffer
    | ConsultationChanged
    | ConsultationOverdue
)
SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    Hello,
    Pong,
    Error,
    ChatNotStored,
    Joined,
    PeerJoined,
    PeerLeft,
    PeerState,
    RelayedOffer,
    RelayedAnswer,
    RelayedCandidate,
    RelayedChat,
    ChatFailed,
    RelayedMediaState,
    RelayedDocShow,
    TimelineEvent,
    StateChanged,
    RecordingChanged,
    RecAnswer,
    RelayOffer,
    ConsultationChanged,
    ConsultationOverdue,
)
# Every ``type`` the browser may receive ("error" has two shapes: one name).
SERVER_MESSAGE_TYPES: frozenset[str] = frozenset(cls.type for cls in SERVER_MESSAGES)


# -- encoding ----------------------------------------------------------------------

# Per class: its ``type`` (None for nested parts) and (attribute, key, omit if None)
# per field. Worked out once per class: a relay encodes thousands a second.
_Plan = tuple[str | None, tuple[tuple[str, str, bool], ...]]
_PLANS: dict[type[Any], _Plan] = {}


def _plan(cls: type[Any]) -> _Plan:
    kind = cls.__dict__.get("type")
    return (
        kind if isinstance(kind, str) else None,
        tuple(
            (f.name, f.name.removesuffix("_"), bool(f.metadata.get("omit_if_none")))
            for f in dataclasses.fields(cls)
        ),
    )


def _wire(obj: Any) -> dict[str, Any]:
    """The JSON object of a message or nested part (``json``'s ``default`` hook)."""
    cls = type(obj)
    plan = _PLANS.get(cls)
    if plan is None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not a wire message")
        plan = _PLANS[cls] = _plan(cls)
    kind, fields = plan
    out: dict[str, Any] = {} if kind is None else {"type": kind}
    for attribute, key, omit in fields:
        value = getattr(obj, attribute)
        if value is None and omit:
            continue
        out[key] = value
    return out


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_wire)


def encode(message: ServerMessage) -> str:
    """The JSON text of a message, as every channel sends it.

    To send one message to many channels, encode it once and hand the text to
    each channel's ``send_text``.
    """
    return _ENCODER.encode(_wire(message))


def to_wire(message: ServerMessage) -> dict[str, Any]:
    """The message as the JSON object a browser receives (for tests and logs)."""
    decoded: dict[str, Any] = json.loads(encode(message))
    return decoded
