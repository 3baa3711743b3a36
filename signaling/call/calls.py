"""Calls: the relay between the members of one consultation's call.

The live call is a mesh of browser-to-browser WebRTC connections (up to four
people); the server only relays offers, answers and candidates between the
members of one room, never to anyone else. A member whose socket drops stays in
the room, marked disconnected, for ``grace_seconds``: the media between browsers
usually survives a signaling outage, and the page resumes with the same
``tab_id`` (and an ICE restart) without the others seeing them leave.

Each client message type has one handler (the table ``Calls.handlers``); every
message sent back is a dataclass of ``outbound``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from records import logcontext
from records.errors import RecordsError
from records.models import Consultation, Event
from records.vocab import ErrorCode, EventKind
from signaling.call import messages as m
from signaling.call import outbound as o
from signaling.call.hub import Channel
from signaling.call.ice import IceConfig
from signaling.call.legs import RecordingLegs
from signaling.call.ports import CallDirectory, CallRecording, CallVerifier, CallWorkflow
from signaling.call.rooms import Member, Room, broadcast, log_failure, send, timeline_event
from signaling.errors import SignalingError
from signaling.workflow import policy
from signaling.workflow.base import Actor
from signaling.workflow.lifecycle import State
from signaling.workflow.policy import MAX_PARTICIPANTS

log = logging.getLogger(__name__)


# An end the database could not store is tried again after these many seconds,
# doubling up to the maximum, until it is stored.
END_RETRY_FIRST = 0.5
END_RETRY_MAX = 30.0

# A handler of one client message type: the sender's room and place, the message.
Handler = Callable[[Room, Member, Any], Awaitable[None]]
_M = TypeVar("_M")


def _route(
    cls: type[_M], handler: Callable[[Room, Member, _M], Awaitable[None]]
) -> tuple[type[Any], Handler]:
    """One row of the dispatch table; mypy checks the handler takes ``cls``."""
    return cls, handler


class Calls:
    """Every room on this server, and the message handling for them."""

    def __init__(
        self,
        *,
        workflow: CallWorkflow,
        directory: CallDirectory,
        ice: IceConfig,
        grace_seconds: float = 30.0,
        recording: CallRecording | None = None,
        recording_max_bitrate: int = 500_000,
        relay: bool = False,
        relay_max_bitrate: int = 1_500_000,
        verifier: CallVerifier | None = None,
    ) -> None:
        """Wire the call handling.

        Args:
            workflow: the consultation workflow (access rules, timeline, states).
            directory: institution names for the participants' tiles.
            ice: ICE servers and the candidate filter.
            grace_seconds: how long a dropped member keeps their place.
            recording: the recording service; None: calls are not recorded.
            recording_max_bitrate: the cap each page sets on its recording leg.
            relay: relay the calls the server records (each page sends once, to
                the server, which records and forwards; no browser mesh).
            relay_max_bitrate: the cap on a leg that carries the live call.
            verifier: refuses a join whose identity check (the second factor)
                is too old; None: no check.
        """
        self.verifier = verifier
        self.workflow = workflow
        self.directory = directory
        self.ice = ice
        self.grace_seconds = grace_seconds
        self.rooms: dict[str, Room] = {}
        self.legs = RecordingLegs(
            recording,
            self.rooms,
            max_bitrate=recording_max_bitrate,
            relay=relay,
            relay_max_bitrate=relay_max_bitrate,
        )
        self._where: dict[Channel, tuple[Room, Member]] = {}
        self.dropped_candidates = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Client message class -> its handler, for a member of a room. ``join``
        # (no room yet) and ``ping`` (answered by the socket) are not in it.
        self.handlers: dict[type[Any], Handler] = dict(
            [
                _route(m.Offer, self._on_offer),
                _route(m.Answer, self._on_answer),
                _route(m.Candidate, self._on_candidate),
                _route(m.Chat, self._on_chat),
                _route(m.MediaState, self._on_media_state),
                _route(m.RecOffer, self._on_rec_offer),
                _route(m.RecCandidate, self._on_rec_candidate),
                _route(m.RecStop, self._on_rec_stop),
                _route(m.RelayAnswer, self._on_relay_answer),
                _route(m.DocShow, self._on_doc_show),
                _route(m.DocOpen, self._on_doc_open),
                _route(m.Leave, self._on_leave),
                _route(m.End, self._on_end),
            ]
        )

    # -- entry points -------------------------------------------------------------

    async def receive(self, actor: Actor, channel: Channel, raw: str | bytes) -> None:
        """Parse one text frame from ``channel`` and act on it; never raises.

        A refused message (bad shape, or a rule says no) is answered with an
        ``error`` carrying its code, and the channel stays usable. So is a
        failure nobody foresaw (a bug: logged with its traceback, answered
        ``internal``): one message must not take the sender's socket down. A
        reply to a client that is already gone is dropped.
        """
        try:
            msg = m.parse(raw)
            if isinstance(msg, m.Ping):
                reply: o.ServerMessage = o.Pong()
            else:
                await self.handle(actor, channel, msg)
                return
        except m.ProtocolError as exc:
            reply = o.Error(code=exc.code, message=exc.message, field=exc.field)
        except (SignalingError, RecordsError) as exc:
            # A records error is a refusal with its code as on the HTTP API
            # (the database's disk is full: ``storage_full``), not a bug.
            reply = o.Error(code=exc.code, message=exc.message)
        except Exception:
            log.exception("peer=%s message not handled", actor.id)
            reply = o.Error(code=ErrorCode.INTERNAL, message="internal server error")
        await self._reply(channel, reply)

    @staticmethod
    async def _reply(channel: Channel, message: o.ServerMessage) -> None:
        try:
            await channel.send(message)
        except Exception as exc:  # the client went away before its answer
            log.info("reply not sent: %s", type(exc).__name__)

    async def handle(self, actor: Actor, channel: Channel, msg: m.ClientMessage) -> None:
        """Act on one validated message from ``channel``.

        ``join`` comes first on a socket; every other message goes to its
        handler in ``self.handlers`` with the sender's room and place.

        Raises:
            SignalingError: with a code the socket reports as an ``error`` message.
        """
        if isinstance(msg, m.Join):
            # Log lines (and the tasks, recording threads) started from here
            # carry the consultation's id.
            with logcontext.bound(msg.consultation_id):
                await self._join(actor, channel, msg)
            return
        where = self._where.get(channel)
        if where is None:
            raise SignalingError("join a consultation first", code=ErrorCode.NOT_JOINED)
        handler = self.handlers.get(type(msg))
        if handler is None:  # ping: answered in ``receive``
            raise SignalingError("not a call message", code=ErrorCode.UNKNOWN_TYPE)
        with logcontext.bound(where[0].consultation_id):
            await handler(*where, msg)

    async def _on_offer(self, room: Room, member: Member, msg: m.Offer) -> None:
        target = self._target(room, msg.to)
        sdp = self.ice.filter_sdp(msg.sdp)
        await send(target, o.RelayedOffer(from_=member.peer_id, sdp=sdp))

    async def _on_answer(self, room: Room, member: Member, msg: m.Answer) -> None:
        target = self._target(room, msg.to)
        sdp = self.ice.filter_sdp(msg.sdp)
        await send(target, o.RelayedAnswer(from_=member.peer_id, sdp=sdp))

    async def _on_candidate(self, room: Room, member: Member, msg: m.Candidate) -> None:
        target = self._target(room, msg.to)
        if not self.ice.candidate_allowed(msg.candidate):
            self.dropped_candidates += 1
            return
        await send(
            target,
            o.RelayedCandidate(
                from_=member.peer_id,
                candidate=msg.candidate,
                sdp_mid=msg.sdp_mid,
                sdp_mline_index=msg.sdp_mline_index,
            ),
        )

    async def _on_chat(self, room: Room, member: Member, msg: m.Chat) -> None:
        text = msg.text.strip()
        if not text:
            raise SignalingError("empty chat message", code=ErrorCode.INVALID_FIELD)
        ref = msg.ref or uuid.uuid4().hex
        if not room.remember_chat(member.peer_id, ref):
            return  # sent again after a reconnect: already relayed and stored
        # The others read the line at once; storing it waits for the database,
        # and neither they nor the offers and candidates behind it on this
        # socket wait for that. The stored ``event`` (same ``ref``) follows and
        # marks the line as on the record; ``chat_failed`` if it could not be
        # stored. One chain per member keeps the member's lines in order.
        await broadcast(
            room, o.RelayedChat(from_=member.peer_id, ref=ref, text=text), exclude=member
        )
        member.chat_tail = self._spawn(self._chat(room, member, text, ref, member.chat_tail))

    async def _on_media_state(self, room: Room, member: Member, msg: m.MediaState) -> None:
        member.audio, member.video = msg.audio, msg.video
        await broadcast(
            room,
            o.RelayedMediaState(from_=member.peer_id, audio=msg.audio, video=msg.video),
            exclude=member,
        )

    async def _on_rec_offer(self, room: Room, member: Member, msg: m.RecOffer) -> None:
        await self.legs.start(room, member, msg.sdp)

    async def _on_rec_candidate(self, room: Room, member: Member, msg: m.RecCandidate) -> None:
        await self.legs.candidate(room, member, msg)

    async def _on_rec_stop(self, room: Room, member: Member, msg: m.RecStop) -> None:
        await self.legs.stop(room, member.peer_id)

    async def _on_relay_answer(self, room: Room, member: Member, msg: m.RelayAnswer) -> None:
        await self.legs.relay_answer(room, member, msg)

    async def _on_doc_show(self, room: Room, member: Member, msg: m.DocShow) -> None:
        event = await self.workflow.document_event(
            member.actor, room.consultation_id, msg.document_id, EventKind.DOCUMENT_SHOWN, msg.page
        )
        await broadcast(
            room,
            o.RelayedDocShow(from_=member.peer_id, document_id=msg.document_id, page=msg.page),
            exclude=member,
        )
        await broadcast(room, timeline_event(room, event))

    async def _on_doc_open(self, room: Room, member: Member, msg: m.DocOpen) -> None:
        event = await self.workflow.document_event(
            member.actor, room.consultation_id, msg.document_id, EventKind.DOCUMENT_OPENED, msg.page
        )
        await broadcast(room, timeline_event(room, event))

    async def _on_leave(self, room: Room, member: Member, msg: m.Leave) -> None:
        await self._remove(room, member, EventKind.LEFT)

    async def _on_end(self, room: Room, member: Member, msg: m.End) -> None:
        try:
            consultation = await self.workflow.end(member.actor, room.consultation_id)
        except SignalingError:
            raise
        except Exception as exc:
            # The database could not store it (its disk is full, ...): the end
            # is not dropped but tried again until it is stored, and the sender
            # is told meanwhile; the call goes on until then.
            log_failure(exc, "consultation=%s end not stored; retrying", room.consultation_id)
            self._spawn(self._end_later(room, member))
            raise SignalingError(
                "the end of the call could not be saved yet; it is retried",
                code=ErrorCode.END_NOT_STORED,
            ) from exc
        await self._ended(room, member, consultation.state)

    async def _end_later(self, room: Room, member: Member) -> None:
        delay = END_RETRY_FIRST
        while True:
            await asyncio.sleep(delay)  # a backoff timer: nothing to wait on
            delay = min(delay * 2, END_RETRY_MAX)
            try:
                consultation = await self.workflow.end(member.actor, room.consultation_id)
            except SignalingError as exc:
                log.info("consultation=%s end dropped: %s", room.consultation_id, exc.code)
                return  # ended meanwhile, or no longer allowed
            except Exception:
                log.warning("consultation=%s end still not stored", room.consultation_id)
                continue
            await self._ended(
                self.rooms.get(room.consultation_id, room), member, consultation.state
            )
            return

    async def _ended(self, room: Room, member: Member, state: str) -> None:
        await broadcast(room, o.StateChanged(state=state, by=member.peer_id))
        if self.legs.available:
            # Finished off the message path: the files are finalized (seek
            # index, hash) and stored while the pages move on.
            self._spawn(self.legs.finish(room.consultation_id, member.peer_id))
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
            broadcast(room, o.PeerState(peer_id=member.peer_id, connected=False), exclude=member)
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
            event = await self.workflow.call_event(
                member.actor, room.consultation_id, EventKind.CHAT, {"text": text, "ref": ref}
            )
        except Exception as exc:
            log_failure(exc, "consultation=%s chat not stored", room.consultation_id)
            room.chat_refs.pop((member.peer_id, ref), None)  # the page may send it again
            # The sender may have resumed on a new socket meanwhile.
            current = room.members.get(member.peer_id, member)
            await send(current, o.ChatNotStored(ref=ref))
            await broadcast(room, o.ChatFailed(from_=member.peer_id, ref=ref), exclude=current)
            return
        await broadcast(room, timeline_event(room, event))

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

    async def consultation_changed(self, consultation: Consultation) -> None:
        """Drop from the call whoever lost their place in it (the workflow's listener).

        A specialist taken off the case by a reassignment is no longer a
        participant: they get an ``error`` (``not_participant``), leave the room
        (the others see them go), their recording leg stops, and nothing is
        relayed to or from them again. A request cancelled or declined while
        people wait in its call closes the room for everyone.
        """
        room = self.rooms.get(consultation.id)
        if room is None:
            return
        if consultation.state in (State.CANCELLED, State.DECLINED):
            await broadcast(room, o.StateChanged(state=consultation.state))
            for member in list(room.members.values()):
                self._forget(member)
                await self.legs.stop(room, member.peer_id)
            self.rooms.pop(room.consultation_id, None)
            return
        for member in list(room.members.values()):
            if policy.is_participant(member.actor.account, consultation):
                continue
            log.info(
                "consultation=%s peer=%s no longer a participant",
                room.consultation_id,
                member.peer_id,
            )
            await send(
                member,
                o.Error(
                    code=ErrorCode.NOT_PARTICIPANT,
                    message="you are no longer a participant of this call",
                ),
            )
            await self._remove(room, member, EventKind.LEFT)

    def is_joined(self, channel: Channel) -> bool:
        """Whether ``channel`` is in a call here."""
        return channel in self._where

    def room_of(self, consultation_id: str) -> Room | None:
        """The room of a consultation, if anyone is in it."""
        return self.rooms.get(consultation_id)

    # -- internals ----------------------------------------------------------------

    async def _join(self, actor: Actor, channel: Channel, msg: m.Join) -> None:
        if channel in self._where:
            raise SignalingError("this socket is already in a call", code=ErrorCode.ALREADY_JOINED)
        consultation = await self.workflow.call_access(actor, msg.consultation_id)
        present = self.rooms.get(consultation.id)
        returning = present.members.get(actor.id) if present else None
        # A physician confirms their identity before the consultation, not again
        # when their own tab reconnects to it mid-call (a dropped network).
        if self.verifier is not None and (returning is None or returning.tab_id != msg.tab_id):
            await self.verifier.require_verified(actor)
        room = self.rooms.setdefault(consultation.id, Room(consultation.id))
        await self.legs.opened(room)
        existing = room.members.get(actor.id)
        resumed = False
        if existing is not None:
            if existing.connected and existing.tab_id != msg.tab_id:
                raise SignalingError(
                    "you are already in this call in another window", code=ErrorCode.ALREADY_IN_CALL
                )
            # Same tab coming back (or a stale entry): the new socket takes over.
            self._forget(existing)
            resumed = True
        elif sum(1 for x in room.members.values()) >= MAX_PARTICIPANTS:
            raise SignalingError("the call is full", code=ErrorCode.CALL_FULL)
        # A returning member is known to the others already (their pages hold
        # its connection); a new one is not, until it is answered.
        member = Member(
            actor=actor, channel=channel, tab_id=msg.tab_id, welcomed=existing is not None
        )
        if existing is not None:
            member.audio, member.video = existing.audio, existing.video
            # Lines still being stored stay in order.
            member.chat_tail = existing.chat_tail
        room.members[actor.id] = member
        self._where[channel] = (room, member)

        names = await self._institution_names()
        missed: list[Event] = []
        if msg.resume_after is not None:
            missed = await self.workflow.events_after(actor, room.consultation_id, msg.resume_after)
        event = await self.workflow.call_event(
            actor, room.consultation_id, EventKind.REJOINED if resumed else EventKind.JOINED
        )
        recording = await self.legs.info(room)
        # From here to the send, nothing is awaited: whoever joins meanwhile
        # either is in this list or sees this member in theirs.
        peers = tuple(
            x.describe(names) for x in room.members.values() if x is not member and x.welcomed
        )
        member.welcomed = True
        await send(
            member,
            o.Joined(
                consultation_id=room.consultation_id,
                peer_id=member.peer_id,
                resumed=resumed,
                peers=peers,
                ice_servers=self.ice.servers(actor.id, self.workflow.clock.now()),
                ice_transport_policy=self.ice.transport_policy,
                state=consultation.state,
                recording=recording,
                events=tuple(o.EventInfo.of(e, room.names()) for e in missed),
            ),
        )
        await broadcast(
            room, o.PeerJoined(peer=member.describe(names), resumed=resumed), exclude=member
        )
        await broadcast(room, timeline_event(room, event))
        await self.legs.joined(room, member)
        connected = sum(1 for x in room.members.values() if x.connected and x.welcomed)
        if consultation.state == State.ACCEPTED and connected >= 2:
            try:
                live = await self.workflow.go_live(actor, room.consultation_id)
            except SignalingError as exc:
                log.info("consultation=%s not live: %s", room.consultation_id, exc.code)
                # Another join made it live meanwhile and told the room, this
                # member among it, before their `joined` went out with the
                # state read when they began: they are told again, in order.
                try:
                    now = await self.workflow.call_access(actor, room.consultation_id)
                except SignalingError:
                    return  # cancelled or declined meanwhile: the room is told so
                if now.state != consultation.state and room.members.get(actor.id) is member:
                    await send(member, o.StateChanged(state=now.state))
            else:
                await broadcast(room, o.StateChanged(state=live.state))

    def _target(self, room: Room, peer_id: str) -> Member:
        target = room.members.get(peer_id)
        if target is None or not target.connected:
            # Also the answer for peers of other consultations: nothing leaks.
            raise SignalingError("no such participant in this call", code=ErrorCode.UNKNOWN_PEER)
        return target

    async def _institution_names(self) -> dict[str, str]:
        return {i.id: i.name for i in await self.directory.institutions()}

    def _forget(self, member: Member) -> None:
        if member.grace is not None:
            member.grace.cancel()
            member.grace = None
        self._where.pop(member.channel, None)

    async def _remove(self, room: Room, member: Member, kind: EventKind) -> None:
        self._forget(member)
        await self.legs.left(room, member.peer_id)
        if room.members.get(member.peer_id) is member:
            del room.members[member.peer_id]
        event = await self.workflow.call_event(member.actor, room.consultation_id, kind)
        await broadcast(room, o.PeerLeft(peer_id=member.peer_id))
        names = room.names() | {member.peer_id: member.actor.account.display_name}
        await broadcast(room, timeline_event(room, event, names))
        if not room.members:
            self.rooms.pop(room.consultation_id, None)

    async def _expire(self, room: Room, member: Member) -> None:
        member.grace = None
        if not member.connected and room.members.get(member.peer_id) is member:
            await self._remove(room, member, EventKind.LEFT)
