"""The recording legs of the calls: one send-only connection per recorded member.

``Calls`` hands the recording messages (``rec_offer``, ``rec_candidate``,
``rec_stop``, ``relay_answer``) here; this module asks the recording service to
start, feed and stop legs, tells the room what changed (``recording`` messages
and timeline events), and answers for the room whether and whom it records.

In a relayed room (the server relays the calls it records: ``relay``), a
member's leg is also their only uplink: once it runs, every other member is
offered a send-only connection carrying it (``relay_offer``), and a member who
joins is offered the legs already running.
"""

from __future__ import annotations

import asyncio

from records.models import Event
from records.vocab import ErrorCode
from signaling.call import messages as m
from signaling.call import outbound as o
from signaling.call.ports import CallRecording
from signaling.call.rooms import (
    Member,
    Room,
    broadcast,
    log_failure,
    send,
    timeline_event,
)
from signaling.errors import SignalingError


class RecordingLegs:
    """The recording side of every room of one ``Calls``."""

    def __init__(
        self,
        recording: CallRecording | None,
        rooms: dict[str, Room],
        *,
        max_bitrate: int,
        relay: bool = False,
        relay_max_bitrate: int = 1_500_000,
    ) -> None:
        """Use ``recording`` (None: calls are not recorded) for the rooms in ``rooms``.

        Args:
            recording: the recording service.
            rooms: the calls' rooms by consultation id (shared, not copied).
            max_bitrate: the cap each page sets on its recording leg.
            relay: relay the recorded calls through the server (else each page
                sends a capped copy to the recorder beside a browser mesh).
            relay_max_bitrate: the cap on a leg that carries the live call.
        """
        self.recording = recording
        self.rooms = rooms
        self.max_bitrate = max_bitrate
        self.relay = relay
        self.relay_max_bitrate = relay_max_bitrate
        if recording is not None:
            recording.listener = self.changed
            recording.present = self.present

    @property
    def available(self) -> bool:
        """Whether this server records calls at all."""
        return self.recording is not None

    def _service(self) -> CallRecording:
        if self.recording is None:
            raise SignalingError("recording is not available", code=ErrorCode.RECORDING_UNAVAILABLE)
        return self.recording

    async def start(self, room: Room, member: Member, sdp: str) -> None:
        """Answer a member's recording offer, and tell the room it records them."""
        recording = self._service()
        try:
            answer = await recording.start(member.actor, room.consultation_id, sdp)
        except SignalingError:
            raise
        except Exception as exc:
            log_failure(
                exc,
                "consultation=%s peer=%s recording failed to start",
                room.consultation_id,
                member.peer_id,
            )
            await broadcast(room, o.RecordingChanged(peer_id=member.peer_id, state="failed"))
            raise SignalingError(
                "the recorder could not start", code=ErrorCode.RECORDING_FAILED
            ) from exc
        await send(room.members.get(member.peer_id, member), o.RecAnswer(sdp=answer))
        if recording.is_recording(room.consultation_id, member.peer_id):
            await broadcast(room, o.RecordingChanged(peer_id=member.peer_id, state="recording"))
        elif (reason := recording.halted(room.consultation_id, member.peer_id)) is not None:
            # Its file failed at once (a full disk). The room is told by the
            # service, maybe before this answer, when the page takes a word
            # about its leg for its old leg's; told again now, the page acts
            # on it (and "recording" is not said: it would undo it).
            await send(
                room.members.get(member.peer_id, member),
                o.RecordingChanged(
                    peer_id=member.peer_id, state="failed", kept=True, reason=reason
                ),
            )
        if room.relay:
            viewers = [x for x in room.members.values() if x.peer_id != member.peer_id]
            await asyncio.gather(*(self._offer(room, member.peer_id, x) for x in viewers))

    async def opened(self, room: Room) -> None:
        """Decide, once per room, whether the server relays its call."""
        if room.relay is None:
            relay = self.relay and self.recording is not None
            room.relay = relay and await self._service().allowed(room.consultation_id)

    async def joined(self, room: Room, member: Member) -> None:
        """Offer a member who (re)joined a relayed room the legs that run."""
        if not room.relay or self.recording is None:
            return
        recording = self.recording
        sources = [
            pid
            for pid in room.members
            if pid != member.peer_id and recording.has_leg(room.consultation_id, pid)
        ]
        await asyncio.gather(*(self._offer(room, pid, member) for pid in sources))

    async def _offer(self, room: Room, source: str, viewer: Member) -> None:
        recording = self._service()
        try:
            sdp = await recording.relay_offer(room.consultation_id, source, viewer.peer_id)
        except Exception as exc:
            log_failure(
                exc,
                "consultation=%s relay %s -> %s failed",
                room.consultation_id,
                source,
                viewer.peer_id,
            )
            return
        if sdp is not None:
            # The viewer may have resumed on a new socket meanwhile.
            await send(
                room.members.get(viewer.peer_id, viewer), o.RelayOffer(source=source, sdp=sdp)
            )

    async def relay_answer(self, room: Room, member: Member, msg: m.RelayAnswer) -> None:
        """A member's answer for the relay of ``msg.source`` to them."""
        recording = self._service()
        if not await recording.relay_answer(
            room.consultation_id, msg.source, member.peer_id, msg.sdp
        ):
            raise SignalingError(
                "no relay from that participant is open", code=ErrorCode.UNKNOWN_PEER
            )

    async def left(self, room: Room, peer_id: str) -> None:
        """A member left: their leg stops, and so does every relay to them."""
        await self.stop(room, peer_id)
        if room.relay and self.recording is not None:
            try:
                await self.recording.relay_close(room.consultation_id, peer_id)
            except Exception as exc:
                log_failure(exc, "consultation=%s relays to %s", room.consultation_id, peer_id)

    async def candidate(self, room: Room, member: Member, msg: m.RecCandidate) -> None:
        """A trickled candidate for the member's leg."""
        await self._service().candidate(
            member.actor, room.consultation_id, msg.candidate, msg.sdp_mid, msg.sdp_mline_index
        )

    async def stop(self, room: Room, peer_id: str) -> None:
        """Stop and store a member's leg, if one runs (or is kept for the call)."""
        recording = self.recording
        if recording is None or not recording.has_leg(room.consultation_id, peer_id):
            return
        try:
            await recording.stop(room.consultation_id, peer_id)
        except Exception as exc:
            # The file or its row could not be stored (a full disk): whoever
            # asked (leave, rec_stop) goes on; the next start repairs the rest.
            log_failure(
                exc, "consultation=%s peer=%s recording not stored", room.consultation_id, peer_id
            )

    async def finish(self, consultation_id: str, ended_by: str | None = None) -> None:
        """Store every leg of a consultation whose call ended (by ``ended_by``)."""
        if self.recording is None:
            return
        try:
            await self.recording.stop_all(consultation_id, ended_by)
        except Exception as exc:
            log_failure(exc, "consultation=%s recordings not stored at the end", consultation_id)

    async def info(self, room: Room) -> o.RecordingInfo:
        """What a joining page is told about recording in ``room``."""
        if self.recording is None:
            return o.RecordingInfo(available=False, allowed=False)
        recording = self.recording
        return o.RecordingInfo(
            available=True,
            allowed=await recording.allowed(room.consultation_id),
            max_bitrate=self.relay_max_bitrate if room.relay else self.max_bitrate,
            relay=bool(room.relay),
            recording=tuple(
                pid for pid in room.members if recording.is_recording(room.consultation_id, pid)
            ),
        )

    def present(self, consultation_id: str, peer_id: str) -> bool:
        """Whether a member is in the consultation's call now (asked by the service)."""
        room = self.rooms.get(consultation_id)
        return room is not None and peer_id in room.members

    async def changed(
        self,
        consultation_id: str,
        peer_id: str,
        state: str,
        event: Event | None,
        *,
        kept: bool = False,
        reason: str | None = None,
    ) -> None:
        """A leg changed by itself (stopped, failed, interrupted; recording again
        after its file failed): tell the room, and why when it is known."""
        room = self.rooms.get(consultation_id)
        if room is None:
            return
        await broadcast(
            room,
            o.RecordingChanged(peer_id=peer_id, state=state, kept=kept or None, reason=reason),
        )
        if event is not None:
            await broadcast(room, timeline_event(room, event))
