"""Rooms: who is in which consultation's call.

A room holds the members of one consultation's call (up to four people). A
member whose socket dropped stays in the room, marked disconnected, until the
grace period of ``Calls`` runs out or the same tab comes back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from records.errors import StorageFull
from records.models import Event
from signaling.call import outbound as o
from signaling.call.hub import Channel
from signaling.call.outbound import PeerInfo
from signaling.workflow.base import Actor

log = logging.getLogger(__name__)

CHAT_REFS_KEPT = 1024  # per room


@dataclass(eq=False)
class Member:
    """One participant of a call."""

    actor: Actor
    channel: Channel
    tab_id: str
    audio: bool = True
    video: bool = True
    connected: bool = True
    # False from a first join's place in the room until its ``joined`` is
    # sent: until then the others are not told of them (their ``joined``'s
    # peers, whether the call goes live), or they would offer a connection to
    # a page that does not know its own place yet.
    welcomed: bool = True
    grace: asyncio.TimerHandle | None = None
    chat_tail: asyncio.Task[None] | None = None

    @property
    def peer_id(self) -> str:
        """Participants are identified by their account id."""
        return self.actor.id

    def describe(self, institution_names: dict[str, str]) -> PeerInfo:
        """What the others' tiles show."""
        account = self.actor.account
        return PeerInfo(
            peer_id=self.peer_id,
            display_name=account.display_name,
            title=account.title,
            role=account.role,
            institution=institution_names.get(account.institution_id, ""),
            audio=self.audio,
            video=self.video,
            connected=self.connected,
        )


@dataclass(eq=False)
class Room:
    """The call of one consultation."""

    consultation_id: str
    members: dict[str, Member] = field(default_factory=dict)
    # (peer id, ref) of the latest chat lines (an ordered set): a line sent again
    # after a reconnect is not relayed or stored twice, even when the sender's
    # place had lapsed meanwhile.
    chat_refs: dict[tuple[str, str], None] = field(default_factory=dict)
    # Whether the server relays this call (decided when the room opens: the
    # server relays the calls it records; None until then).
    relay: bool | None = None

    def remember_chat(self, peer_id: str, ref: str) -> bool:
        """Note a chat line; False if it was seen already (sent again after a reconnect)."""
        key = (peer_id, ref)
        if key in self.chat_refs:
            return False
        self.chat_refs[key] = None
        if len(self.chat_refs) > CHAT_REFS_KEPT:
            del self.chat_refs[next(iter(self.chat_refs))]
        return True

    def names(self) -> dict[str, str]:
        """Display names of the members, by peer id."""
        return {pid: x.actor.account.display_name for pid, x in self.members.items()}


# -- delivery ---------------------------------------------------------------------


async def send(member: Member, message: o.ServerMessage | str) -> None:
    """Deliver to one member (a disconnected one is skipped; a failed send logged)."""
    if not member.connected:
        return
    try:
        if isinstance(message, str):
            await member.channel.send_text(message)
        else:
            await member.channel.send(message)
    except Exception as exc:
        log.info("send to peer=%s failed: %s", member.peer_id, type(exc).__name__)


async def broadcast(room: Room, message: o.ServerMessage, exclude: Member | None = None) -> None:
    """Deliver to every member of ``room`` but ``exclude``, encoded once."""
    text = o.encode(message)
    await asyncio.gather(*(send(x, text) for x in list(room.members.values()) if x is not exclude))


def timeline_event(
    room: Room, event: Event, names: dict[str, str] | None = None
) -> o.TimelineEvent:
    """A stored timeline event as the room's pages get it (with the members' names)."""
    return o.TimelineEvent(event=o.EventInfo.of(event, room.names() if names is None else names))


def log_failure(exc: BaseException, message: str, *args: object) -> None:
    """Log a failure to store something: with its traceback when it is a bug;
    in one line when the database's disk is full (``records.db`` has said so)."""
    if isinstance(exc, StorageFull):
        log.info(message + ": %s", *args, exc.code)
    else:
        log.error(message, *args, exc_info=exc)
