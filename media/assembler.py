"""One track's RTP payloads put back into frames: the recorder's depacketizer.

``FrameAssembler`` takes the payloads a leg kept (``seam.KeptPacket``), in
arrival order, and gives back whole encoded frames in sequence order: it waits
for packets that arrive late (reordered, or resent after a NACK), gives up a
frame whose hole is not filled in time, drops what would not decode until the
next keyframe, and strips the VP8/H.264 payload descriptors. It is pure
computation, run on the process's writer thread (``packets.WriterThread``) and
by ``packets.convert`` after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor

from media.rtp import pictures_skipped, starts_keyframe
from media.seam import EncodedFrame, is_keyframe

# How long a missing packet is waited for (NACK and retransmission) before the
# frame it belongs to is given up. Each lost frame costs the frames up to the
# next keyframe, so the file waits long (at 10 % loss and 300 ms a packet may
# need three requests); only the file's writing waits, not the live call.
REORDER_SECONDS = 2.0
# Packets sent before the first one that arrived, waited for at the start
# (unless that one begins a keyframe: a page begins with one).
START_SLACK = 16
# Losses kept with their cause (``FrameAssembler.losses``); later ones are not.
MAX_LOSSES = 32


@dataclass(slots=True)
class Loss:
    """Video frames that went missing, told by one packet (or the end).

    ``at``: that packet's arrival (``time.monotonic()``); ``frames``: the frames
    it tells lost (0: a hole that may have held a whole frame, H.264);
    ``cause``: ``hole`` (a packet not come in ``REORDER_SECONDS``), ``unfinished``
    (the next packet is another frame's: its last never came), ``start`` (a
    frame whose first packet is gone), ``jump`` (VP8's picture id skipped
    frames), ``end`` (the leg ended in a frame), each after ``hole, `` when a
    hole given up before it took no frame in hand; ``after``: the frames left out
    after it, up to the keyframe that ended the break.
    """

    at: float
    frames: int
    cause: str
    after: int = 0


def describe(losses: list[Loss], t0: float, *, more: bool = False) -> str:
    """``losses`` for a log line, their times in seconds since ``t0``:
    "1 at 3.06 s (hole), then 7 up to a keyframe; 2 at 9.51 s (jump)", and
    "; and more" when ``more`` (losses came past those kept)."""
    parts = []
    for loss in losses:
        text = f"{loss.frames} at {loss.at - t0:.2f} s ({loss.cause})"
        if loss.after:
            text += f", then {loss.after} up to a keyframe"
        parts.append(text)
    return "; ".join(parts) + ("; and more" if more else "")


class FrameAssembler:
    """Puts one track's RTP payloads back into frames, in sequence order.

    A packet may arrive late (reordered or retransmitted after a NACK); a hole
    is waited for ``REORDER_SECONDS`` of newer arrivals, then the frame it
    belongs to is dropped and the next frame that begins cleanly is taken.
    Video frames are whole only with their first packet (VP8: start of
    partition 0; H.264: a NAL's first fragment after a hole) and their marker
    packet.
    """

    def __init__(self, codec: str, kind: str) -> None:
        """An assembler for ``codec`` ("vp8", "h264", "opus") of ``kind``."""
        self.codec = codec
        self.mime = f"{kind}/{codec}"
        self.kind = kind
        self.audio = kind == "audio"
        self.clock_rate = 48000 if self.audio else 90000
        self.pending: dict[int, tuple[float, bool, int, bytes]] = {}
        self.next: int | None = None
        self.high = 0
        self.newest = 0.0
        self.frame: list[tuple[float, bytes]] = []
        self.frame_ts = 0
        self.after_gap = True  # the first frame must begin with its first packet
        self.ts_raw: int | None = None
        self.ts_ext = 0
        self.lost_frames = 0
        self.skipped_ts: int | None = None
        self.last_arrival = float("-inf")
        # A video frame went missing: the frames after it may reference it
        # (a lost keyframe breaks every frame up to the next one: FFmpeg
        # refuses them, libvpx draws garbage), so none is written until a
        # keyframe comes; ``broken`` stays set until then.
        self.broken = False
        self.picture_id: int | None = None  # VP8's, of the last frame begun
        # Why frames went missing (the first MAX_LOSSES; then ``losses_full``:
        # the last kept is no longer the break under way).
        self.losses: list[Loss] = []
        self.losses_full = False
        self.at = 0.0  # the arrival of the packet being taken
        self.after_hole = False  # a hole was given up, no frame in hand

    def add(self, arrival: float, marker: bool, seq: int, ts: int, payload: bytes) -> None:
        """Take one packet (no frame comes out before ``drain``)."""
        if self.next is None:
            # The first packet to arrive need not be the first sent: a few
            # before it are waited for (then given up like any hole), unless
            # it begins a keyframe. A page begins with one, and the recorder
            # asks for nothing before it (``lean``): waited for all the same,
            # every leg's first frames reached the writer REORDER_SECONDS
            # late, the leg took the writer's wait for a keyframe lost and
            # asked for another (``leg.ask_for_keyframes``), and that
            # keyframe made the browser's pacer drop the frames it held: 5 of
            # a 6 s township call's file, 2 s in, on a busy CI machine.
            self.high = seq + (1 << 20)
            keyframe = not self.audio and starts_keyframe(self.mime, payload)
            self.next = self.high - (0 if keyframe else START_SLACK)
            ext = self.high
        else:
            ext = self.high + ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
            if ext > self.high:
                self.high = ext
        if ext < self.next:
            return  # already taken (a duplicate retransmission) or given up
        self.pending[ext] = (arrival, marker, ts, payload)
        if arrival > self.newest:
            self.newest = arrival

    def drain(self, final: bool = False) -> list[EncodedFrame]:
        """The frames that are complete (``final``: give up every hole)."""
        out: list[EncodedFrame] = []
        pending = self.pending
        while pending:
            assert self.next is not None  # noqa: S101 - set with the first packet
            item = pending.pop(self.next, None)
            if item is None:
                lowest = min(pending)
                if not final and self.newest - pending[lowest][0] < REORDER_SECONDS:
                    break  # a retransmission may still fill the hole
                self._skip_to(lowest)
                continue
            self.next += 1
            arrival, marker, ts, payload = item
            self.at = arrival
            if not payload:
                continue  # a FEC packet's place in the sequence (``media/ulpfec.py``)
            if self.audio:
                self._emit(out, ts, [(arrival, payload)])
                continue
            if self.frame and ts != self.frame_ts:
                # The next number is another frame's, and this frame's last
                # packet (its marker) never came: the sender dropped the rest of
                # it unsent. libwebrtc's pacer does, when a keyframe is queued
                # (it drops the stream's queued packets before they get their
                # numbers: no hole). Written, it decodes to a broken picture
                # (the frame before last's, in township calls). The keyframe
                # comes next, here: no keyframe is asked for (a request would
                # make the browser flush the frame then in flight in turn, and
                # so on: a loop of keyframes on a 1 Mbit/s uplink).
                keyframe_next = starts_keyframe(self.mime, payload)
                self._lost(1, "unfinished", ts=self.frame_ts, keyframe_next=keyframe_next)
                self.frame = []
            try:
                start, data = self._depayload(payload)
            except ValueError:
                self.frame = []
                self.after_gap = True
                continue
            if not self.frame:
                if self.after_gap and not start:
                    # The middle of a frame whose start was lost: counted once
                    # (by the picture id's jump where there is one).
                    first = ts != self.skipped_ts
                    lost = 1 if first and self.picture_id is None else 0
                    # (Where the picture id counts it, the jump is the loss told.)
                    self._lost(lost, "start" if lost else None, ts=ts)
                    continue
                self.after_gap = False
                self.frame_ts = ts
            self.frame.append((arrival, data))
            if marker:
                self._emit(out, ts, self.frame)
                self.frame = []
                self.after_hole = False
        if final and self.frame:
            self._lost(1, "end", ts=self.frame_ts)
            self.frame = []
        return out

    def _skip_to(self, seq: int) -> None:
        """Give up the hole before ``seq``; the frame in hand, if any, with it."""
        self.at = self.pending[seq][0]  # the first packet after the hole
        if self.frame:  # a frame given up, part of it in hand
            self._lost(1, "hole", ts=self.frame_ts)
        elif self.codec == "h264":
            self._lost(0, "hole")  # a whole frame may have gone (no picture id)
        else:
            self.after_hole = True  # the next loss told is the hole's
        self.frame = []
        self.after_gap = True
        self.next = seq

    def _lost(
        self,
        frames: int,
        cause: str | None,
        *,
        ts: int | None = None,
        keyframe_next: bool = False,
    ) -> None:
        """``frames`` video frames went missing (a partial frame given up, a frame
        whose start was lost, a VP8 picture-id jump), for ``cause`` (``Loss``):
        none is written until the next keyframe (``broken``), unless the next
        packet begins one (``keyframe_next``: then nothing is waited for, and
        none asked for). ``ts``: the lost frame's timestamp, so that its later
        packets are not counted again (nor its ``cause``, None). Audio frames
        stand alone."""
        self.lost_frames += frames
        if cause is not None and not self.audio:
            if self.after_hole:
                cause, self.after_hole = f"hole, {cause}", False
            if len(self.losses) < MAX_LOSSES:
                self.losses.append(Loss(self.at, frames, cause))
            else:
                self.losses_full = True
        if ts is not None:
            self.skipped_ts = ts
        if not keyframe_next:
            self.broken = not self.audio

    def _depayload(self, payload: bytes) -> tuple[bool, bytes]:
        if self.codec == "vp8":
            vp8, data = VpxPayloadDescriptor.parse(payload)
            start = bool(vp8.partition_start) and vp8.partition_id == 0
            picture_id = vp8.picture_id
            if start and picture_id is not None:
                # Chrome numbers its frames (7 or 15 bits): a jump is a frame
                # lost whole, packets and all, which no hole in the sequence
                # numbers tells apart from padding.
                last = self.picture_id
                if last is not None and (skipped := pictures_skipped(last, picture_id)):
                    self._lost(skipped, "jump")
                self.picture_id = picture_id
            return start, data
        h264, data = H264PayloadDescriptor.parse(payload)
        return bool(h264.first_fragment), data

    def _emit(self, out: list[EncodedFrame], ts: int, parts: list[tuple[float, bytes]]) -> None:
        data = parts[0][1] if len(parts) == 1 else b"".join(p[1] for p in parts)
        keyframe = is_keyframe(self.codec, data)
        if self.broken and not self.audio:
            if not keyframe:
                self.lost_frames += 1
                if self.losses and not self.losses_full:
                    self.losses[-1].after += 1
                return
            self.broken = False
        # RTP timestamps wrap at 2**32; the muxer wants them growing.
        if self.ts_raw is None:
            self.ts_ext = 0
        else:
            self.ts_ext += ((ts - self.ts_raw + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        self.ts_raw = ts
        # A frame whose first packet was resent arrives after the frames behind
        # it; its place among the other track's frames must not move it ahead
        # of them (a VP8 frame decoded out of order breaks the frames up to the
        # next keyframe), so a track's arrivals never go back.
        self.last_arrival = max(self.last_arrival, parts[0][0])
        out.append(
            EncodedFrame(
                data=data,
                timestamp=self.ts_ext,
                codec=self.codec,
                kind=self.kind,
                clock_rate=self.clock_rate,
                keyframe=keyframe,
                arrival=self.last_arrival,
            )
        )
