"""Rooms: who is in which consultation's call, and the relay between them.

The live call is a mesh of browser-to-browser WebRTC connections (up to four
people); the server only relays offers, answers and candidates between the
members of one room, never to anyone else. A member whose socket drops stays in
the room, marked disconnected, for ``grace_seconds``: the media between browsers
usually survives a signaling outage, and the page resumes with the same
``tab_id`` (and an ICE restart) without the others seeing them leave.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from records.models import Event
from signaling import messages as m
from signaling.errors import SignalingError
from signaling.hub import Channel, encode
from signaling.ice import IceConfig
from signaling.workflow.base import Actor
from signaling.workflow.consultations import ConsultationService
from signaling.workflow.directory import DirectoryService
from signaling.workflow.lifecycle import State
from signaling.workflow.policy import MAX_PARTICIPANTS
from signaling.workflow.recording import RecordingService

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
    grace: asyncio.TimerHandle | None = None
    chat_tail: asyncio.Task[None] | None = None

    @property
    def peer_id(self) -> str:
        """Participants are identified by their account id."""
        return self.actor.id

    def describe(self, institution_names: dict[str, str]) -> dict[str, Any]:
        """What the others' tiles show."""
        account = self.actor.account
        return {
            "peer_id": self.peer_id,
            "display_name": account.display_name,
            "title": account.title,
            "role": account.role,
            "institution": institution_names.get(account.institution_id, ""),
            "audio": self.audio,
            "video": self.video,
            "connected": self.connected,
        }


@dataclass(eq=False)
class Room:
    """The call of one consultation."""

    consultation_id: str
    members: dict[str, Member] = field(default_factory=dict)
    # (peer id, ref) of the latest chat lines (an ordered set): a line sent again
    # after a reconnect is not relayed or stored twice, even when the sender's
    # place had lapsed meanwhile.
    chat_refs: dict[tuple[str, str], None] = field(default_factory=dict)


def event_message(event: Event, names: dict[str, str]) -> dict[str, Any]:
    """A timeline event as sent to call pages."""
    return {
        "type": "event",
        "event": {
            "id": event.id,
            "at": event.at.isoformat(),
            "kind": event.kind,
            "actor_id": event.actor_id,
            "actor_name": names.get(event.actor_id or "", ""),
            "data": event.data,
        },
    }


class Calls:
    """Every room on this server, and the message handling for them."""

    def __init__(
        self,
        *,
        consultations: ConsultationService,
        directory: DirectoryService,
        ice: IceConfig,
        grace_seconds: float = 30.0,
        recording: RecordingService | None = None,
        recording_max_bitrate: int = 500_000,
    ) -> None:
        """Wire the call handling.

        Args:
            consultations: access rules, timeline and states of the consultation.
            directory: institution names for the participants' tiles.
            ice: ICE servers and the candidate filter.
            grace_seconds: how long a dropped member keeps their place.
            recording: the recording service; None: calls are not recorded.
            recording_max_bitrate: the cap each page sets on its recording leg.
        """
        self.service = consultations
        self.directory = directory
        self.ice = ice
        self.grace_seconds = grace_seconds
        self.recording = recording
        self.recording_max_bitrate = recording_max_bitrate
        if recording is not None:
            recording.listener = self._recording_changed
        self.rooms: dict[str, Room] = {}
        self._where: dict[Channel, tuple[Room, Member]] = {}
        self.dropped_candidates = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- entry points -------------------------------------------------------------

    async def handle(self, actor: Actor, channel: Channel, msg: m.ClientMessage) -> None:
        """Act on one validated message from ``channel``.

        Raises:
            SignalingError: with a code the socket reports as an ``error`` message.
        """
        if isinstance(msg, m.Join):
            await self._join(actor, channel, msg)
            return
        where = self._where.get(channel)
        if where is None:
            raise SignalingError("join a consultation first", code="not_joined")
        room, member = where
        if isinstance(msg, m.Offer | m.Answer):
            target = self._target(room, msg.to)
            await self._send(
                target,
                {"type": msg.type, "from": member.peer_id, "sdp": self.ice.filter_sdp(msg.sdp)},
            )
        elif isinstance(msg, m.Candidate):
            target = self._target(room, msg.to)
            if not self.ice.candidate_allowed(msg.candidate):
                self.dropped_candidates += 1
                return
            await self._send(
                target,
                {
                    "type": "candidate",
                    "from": member.peer_id,
                    "candidate": msg.candidate,
                    "sdp_mid": msg.sdp_mid,
                    "sdp_mline_index": msg.sdp_mline_index,
                },
            )
        elif isinstance(msg, m.Chat):
            text = msg.text.strip()
            if not text:
                raise SignalingError("empty chat message", code="invalid_field")
            ref = msg.ref or uuid.uuid4().hex
            key = (member.peer_id, ref)
            if key in room.chat_refs:
                return  # sent again after a reconnect: already relayed and stored
            room.chat_refs[key] = None
            if len(room.chat_refs) > CHAT_REFS_KEPT:
                del room.chat_refs[next(iter(room.chat_refs))]
            # The others read the line at once; storing it waits for the database,
            # and neither they nor the offers and candidates behind it on this
            # socket wait for that. The stored ``event`` (same ``ref``) follows and
            # marks the line as on the record; ``chat_failed`` if it could not be
            # stored. One chain per member keeps the member's lines in order.
            await self._broadcast(
                room,
                {"type": "chat", "from": member.peer_id, "ref": ref, "text": text},
                exclude=member,
            )
            member.chat_tail = self._spawn(self._chat(room, member, text, ref, member.chat_tail))
        elif isinstance(msg, m.MediaState):
            member.audio, member.video = msg.audio, msg.video
            await self._broadcast(
                room,
                {
                    "type": "media_state",
                    "from": member.peer_id,
                    "audio": msg.audio,
                    "video": msg.video,
                },
                exclude=member,
            )
        elif isinstance(msg, m.RecOffer):
            await self._record(room, member, msg.sdp)
        elif isinstance(msg, m.RecCandidate):
            if self.recording is None:
                raise SignalingError("recording is not available", code="recording_unavailable")
            await self.recording.candidate(
                member.actor,
                room.consultation_id,
                msg.candidate,
                msg.sdp_mid,
                msg.sdp_mline_index,
            )
        elif isinstance(msg, m.DocShow | m.DocOpen):
            kind = "document_shown" if isinstance(msg, m.DocShow) else "document_opened"
            event = await self.service.document_event(
                member.actor, room.consultation_id, msg.document_id, kind, msg.page
            )
            if isinstance(msg, m.DocShow):
                await self._broadcast(
                    room,
                    {
                        "type": "doc_show",
                        "from": member.peer_id,
                        "document_id": msg.document_id,
                        "page": msg.page,
                    },
                    exclude=member,
                )
            await self._broadcast(room, event_message(event, self._names(room)))
        elif isinstance(msg, m.RecStop):
            await self._stop_recording(room, member.peer_id)
        elif isinstance(msg, m.Leave):
            await self._remove(room, member, "left")
        elif isinstance(msg, m.End):
            consultation = await self.service.end(member.actor, room.consultation_id)
            await self._broadcast(
                room, {"type": "state", "state": consultation.state, "by": member.peer_id}
            )
            if self.recording is not None:
                # Finished off the message path: the files are finalized (seek
                # index, hash) and stored while the pages move on.
                self._spawn(self._finish_recordings(room.consultation_id))
            for other in list(room.members.values()):
                self._forget(other)
            self.rooms.pop(room.consultation_id, None)

    def disconnected(self, channel: Channel) -> None:
        """The socket behind ``channel`` is gone; keep the place for a grace period.

        Synchronous on purpose: it runs in the socket handler's ``finally``, which
        aiohttp may be cancelling; the notifications go out in tasks of our own.
        """
        where = self._where.pop(channel, None)
        if where is None:
            return
        room, member = where
        if member.channel is not channel:
            return  # already replaced by a resumed socket
        member.connected = False
        self._spawn(
            self._broadcast(
                room,
                {"type": "peer_state", "peer_id": member.peer_id, "connected": False},
                exclude=member,
            )
        )
        loop = asyncio.get_running_loop()
        member.grace = loop.call_later(
            self.grace_seconds, lambda: self._spawn(self._expire(room, member))
        )

    async def _chat(
        self,
        room: Room,
        member: Member,
        text: str,
        ref: str,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            event = await self.service.call_event(
                member.actor, room.consultation_id, "chat", {"text": text, "ref": ref}
            )
        except Exception:
            log.exception("consultation=%s chat not stored", room.consultation_id)
            room.chat_refs.pop((member.peer_id, ref), None)  # the page may send it again
            # The sender may have resumed on a new socket meanwhile.
            current = room.members.get(member.peer_id, member)
            await self._send(
                current,
                {
                    "type": "error",
                    "code": "chat_not_stored",
                    "message": "the message could not be stored",
                    "ref": ref,
                },
            )
            await self._broadcast(
                room, {"type": "chat_failed", "from": member.peer_id, "ref": ref}, exclude=current
            )
            return
        await self._broadcast(room, event_message(event, self._names(room)))

    async def _finish_recordings(self, consultation_id: str) -> None:
        if self.recording is not None:
            await self.recording.stop_all(consultation_id)

    async def _record(self, room: Room, member: Member, sdp: str) -> None:
        if self.recording is None:
            raise SignalingError("recording is not available", code="recording_unavailable")
        try:
            answer = await self.recording.start(member.actor, room.consultation_id, sdp)
        except SignalingError:
            raise
        except Exception as exc:
            log.exception(
                "consultation=%s peer=%s recording failed to start",
                room.consultation_id,
                member.peer_id,
            )
            await self._broadcast(
                room, {"type": "recording", "peer_id": member.peer_id, "state": "failed"}
            )
            raise SignalingError("the recorder could not start", code="recording_failed") from exc
        await self._send(member, {"type": "rec_answer", "sdp": answer})
        await self._broadcast(
            room, {"type": "recording", "peer_id": member.peer_id, "state": "recording"}
        )

    async def _stop_recording(self, room: Room, peer_id: str) -> None:
        if self.recording is None or not self.recording.is_recording(room.consultation_id, peer_id):
            return
        await self.recording.stop(room.consultation_id, peer_id)

    async def _recording_changed(self, consultation_id: str, peer_id: str, state: str) -> None:
        room = self.rooms.get(consultation_id)
        if room is not None:
            await self._broadcast(room, {"type": "recording", "peer_id": peer_id, "state": state})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Forget every room (server shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for room in list(self.rooms.values()):
            for member in list(room.members.values()):
                self._forget(member)
        self.rooms.clear()

    def room_of(self, consultation_id: str) -> Room | None:
        """The room of a consultation, if anyone is in it."""
        return self.rooms.get(consultation_id)

    # -- internals ----------------------------------------------------------------

    async def _join(self, actor: Actor, channel: Channel, msg: m.Join) -> None:
        if channel in self._where:
            raise SignalingError("this socket is already in a call", code="already_joined")
        consultation = await self.service.call_access(actor, msg.consultation_id)
        room = self.rooms.setdefault(consultation.id, Room(consultation.id))
        existing = room.members.get(actor.id)
        resumed = False
        if existing is not None:
            if existing.connected and existing.tab_id != msg.tab_id:
                raise SignalingError(
                    "you are already in this call in another window", code="already_in_call"
                )
            # Same tab coming back (or a stale entry): the new socket takes over.
            self._forget(existing)
            resumed = True
        elif sum(1 for x in room.members.values()) >= MAX_PARTICIPANTS:
            raise SignalingError("the call is full", code="call_full")
        member = Member(actor=actor, channel=channel, tab_id=msg.tab_id)
        if existing is not None:
            member.audio, member.video = existing.audio, existing.video
            # Lines still being stored stay in order.
            member.chat_tail = existing.chat_tail
        room.members[actor.id] = member
        self._where[channel] = (room, member)

        names = await self._institution_names()
        missed: list[Event] = []
        if msg.resume_after is not None:
            missed = await self.service.events_after(actor, room.consultation_id, msg.resume_after)
        event = await self.service.call_event(
            actor, room.consultation_id, "rejoined" if resumed else "joined"
        )
        peers = [x.describe(names) for x in room.members.values() if x is not member]
        await self._send(
            member,
            {
                "type": "joined",
                "consultation_id": room.consultation_id,
                "peer_id": member.peer_id,
                "resumed": resumed,
                "peers": peers,
                "ice_servers": self.ice.servers(actor.id, self.service.clock.now()),
                "ice_transport_policy": self.ice.transport_policy,
                "state": consultation.state,
                "recording": await self._recording_info(room),
                "events": [event_message(e, self._names(room))["event"] for e in missed],
            },
        )
        await self._broadcast(
            room,
            {"type": "peer_joined", "peer": member.describe(names), "resumed": resumed},
            exclude=member,
        )
        await self._broadcast(room, event_message(event, self._names(room)))
        connected = sum(1 for x in room.members.values() if x.connected)
        if consultation.state == State.ACCEPTED and connected >= 2:
            try:
                live = await self.service.go_live(actor, room.consultation_id)
            except SignalingError as exc:
                log.info("consultation=%s not live: %s", room.consultation_id, exc.code)
            else:
                await self._broadcast(room, {"type": "state", "state": live.state})

    async def _recording_info(self, room: Room) -> dict[str, Any]:
        if self.recording is None:
            return {"available": False, "allowed": False, "recording": []}
        return {
            "available": True,
            "allowed": await self.recording.allowed(room.consultation_id),
            "max_bitrate": self.recording_max_bitrate,
            "recording": [
                pid
                for pid in room.members
                if self.recording.is_recording(room.consultation_id, pid)
            ],
        }

    def _target(self, room: Room, peer_id: str) -> Member:
        target = room.members.get(peer_id)
        if target is None or not target.connected:
            # Also the answer for peers of other consultations: nothing leaks.
            raise SignalingError("no such participant in this call", code="unknown_peer")
        return target

    def _names(self, room: Room) -> dict[str, str]:
        return {pid: x.actor.account.display_name for pid, x in room.members.items()}

    async def _institution_names(self) -> dict[str, str]:
        return {i.id: i.name for i in await self.directory.institutions()}

    async def _send(self, member: Member, message: dict[str, Any] | str) -> None:
        if not member.connected:
            return
        try:
            if isinstance(message, str):
                await member.channel.send_text(message)
            else:
                await member.channel.send(message)
        except Exception as exc:
            log.info("send to peer=%s failed: %s", member.peer_id, type(exc).__name__)

    async def _broadcast(
        self, room: Room, message: dict[str, Any], exclude: Member | None = None
    ) -> None:
        text = encode(message)  # once for the whole room
        await asyncio.gather(
            *(self._send(x, text) for x in list(room.members.values()) if x is not exclude)
        )

    def _forget(self, member: Member) -> None:
        if member.grace is not None:
            member.grace.cancel()
            member.grace = None
        self._where.pop(member.channel, None)

    async def _remove(self, room: Room, member: Member, kind: str) -> None:
        self._forget(member)
        await self._stop_recording(room, member.peer_id)
        if room.members.get(member.peer_id) is member:
            del room.members[member.peer_id]
        event = await self.service.call_event(member.actor, room.consultation_id, kind)
        await self._broadcast(room, {"type": "peer_left", "peer_id": member.peer_id})
        await self._broadcast(
            room,
            event_message(
                event, self._names(room) | {member.peer_id: member.actor.account.display_name}
            ),
        )
        if not room.members:
            self.rooms.pop(room.consultation_id, None)

    async def _expire(self, room: Room, member: Member) -> None:
        member.grace = None
        if not member.connected and room.members.get(member.peer_id) is member:
            await self._remove(room, member, "left")
