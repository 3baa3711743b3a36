"""The relay's video, forwarded packet by packet as it arrives (a selective forwarder).

The relay first sent each viewer whole frames, taken out of aiortc's jitter
buffer on the recorder's side. A frame came out only when it was complete and
in order, so every packet lost on the clinic's uplink held the viewer's picture
for a round trip (NACK, retransmission), and the frames behind it then arrived
in a burst: 1-4 freezes in 12-15 s at 1 Mbit/s, 5 % loss, 150 ms, against 0-1
browser to browser (#12). An SFU forwards each packet as it arrives instead:
the viewer's own jitter buffer waits for what is missing, as it would browser
to browser, and the retransmission the recorder asks for is forwarded when it
comes.

Each viewer's video sender keeps aiortc's negotiation, RTCP (sender reports,
NACK answered from its send history, RTX) and the keyframe requests the relay
forwards to the source; only its send loop (``_run_rtp``, which packetizes
frames) is replaced by ``PacketForwarder.run``. A packet keeps its payload and
marker; its sequence number and timestamp are shifted by a constant for this
viewer, so a hole upstream stays a hole the viewer can see (and NACK), and a
late retransmission fills it. A viewer starts on the first packet of a
keyframe; when that packet was lost upstream and its retransmission comes after
the rest of the keyframe, the rest (kept while the viewer waited) follows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiortc.rtcrtpsender as rtcrtpsender
from aiortc import RTCRtpSender
from aiortc import clock as aiortc_clock
from aiortc.rtp import RtpPacket

from media.errors import SeamBroken
from media.hold import WithPlayoutDelay
from media.rtp import starts_keyframe

log = logging.getLogger(__name__)

# Packets a viewer's send queue holds (about 2 s of 1.5 Mbit/s video) before it
# starts again on the next keyframe: a stalled connection, not a slow link.
QUEUE_PACKETS = 400
# Packets a waiting viewer keeps from those it skipped (about 1 s of 1.5 Mbit/s
# video): when the first packet of a keyframe was lost upstream and comes again
# after the rest of it, the viewer starts on it and is sent the rest from here.
BACKLOG_PACKETS = 160
_SENDER = "_RTCRtpSender__"
_SENDER_PARTS = (
    "rtp_started",
    "rtp_exited",
    "rtp_history",
    "rtp_header_extensions_map",
    "mid",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
)


def check() -> None:
    """Raise ``SeamBroken`` unless aiortc's sender still looks as this module expects."""
    names = RTCRtpSender._run_rtp.__code__.co_names + RTCRtpSender.send.__code__.co_names
    for part in _SENDER_PARTS:
        if _SENDER + part not in names:
            raise SeamBroken(f"RTCRtpSender no longer keeps __{part} where the forwarder expects")
    if "_run_rtp" not in RTCRtpSender.send.__code__.co_names:
        raise SeamBroken("RTCRtpSender.send no longer starts _run_rtp")
    if not isinstance(getattr(rtcrtpsender, "RTP_HISTORY_SIZE", None), int):
        raise SeamBroken("aiortc.rtcrtpsender.RTP_HISTORY_SIZE is gone")
    if "_RTCRtpSender__rtp_history" not in RTCRtpSender._retransmit.__code__.co_names:
        raise SeamBroken("RTCRtpSender._retransmit no longer reads __rtp_history")


class PacketForwarder:
    """One viewer's video: the source's packets, sent on as they arrive."""

    def __init__(
        self, sender: RTCRtpSender, codec: str, hold: Callable[[], int] | None = None
    ) -> None:
        """Take over ``sender``'s send loop (before ``setRemoteDescription``).

        ``hold`` says how long the viewer should hold the picture (ms), sent
        in each packet when the viewer's answer took the playout-delay
        extension (``delay_id``, set before the answer is applied; ``media/hold.py``).
        """
        check()
        self.sender = sender
        self.mime = f"video/{codec}"
        self.hold = hold
        self.delay_id: int | None = None
        self.delay: WithPlayoutDelay | None = None
        self.queue: asyncio.Queue[tuple[bool, int, int, bytes] | None] = asyncio.Queue(
            QUEUE_PACKETS
        )
        self.waiting = True  # for the first packet of a keyframe
        self.started_at = float("-inf")  # when it last started on one (``time.monotonic()``)
        # What arrived while waiting, by the source's number (unwrapped).
        self.backlog: dict[int, tuple[bool, int, bytes]] = {}
        self.high: int | None = None  # the source's newest number, unwrapped
        self.first = 0  # the source's number (unwrapped) this viewer started on
        self.seq_shift = random.getrandbits(15)
        self.ts_shift = random.getrandbits(32)
        self.forwarded = 0
        self.skipped = 0
        setattr(sender, "_run_rtp", self.run)  # noqa: B010 - this instance's loop

    def offer(self, marker: bool, seq: int, ts: int, payload: bytes) -> bool:
        """Queue one packet of the source; False when this viewer waits for a keyframe."""
        if self.high is None:
            ext = seq
        else:
            ext = self.high + ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
        if self.high is None or ext > self.high:
            self.high = ext
        if self.waiting:
            if not starts_keyframe(self.mime, payload):
                self.skipped += 1
                if len(self.backlog) >= BACKLOG_PACKETS:
                    del self.backlog[next(iter(self.backlog))]  # the longest kept
                self.backlog[ext] = (marker, ts, payload)
                return False
            self.waiting = False
            self.first = ext
            self.started_at = time.monotonic()
            # The keyframe's first packet came late (a retransmission): the
            # rest of it, and what followed, arrived before it and were kept.
            later = sorted((n, p) for n, p in self.backlog.items() if n > ext)
            self.backlog.clear()
            if not self._put(ext, marker, ts, payload):
                return False
            return all(self._put(n, m, t, data) for n, (m, t, data) in later)
        if ext < self.first:
            return True  # a retransmission from before this viewer started
        return self._put(ext, marker, ts, payload)

    def since_start(self) -> float:
        """Seconds since this viewer started on a keyframe (inf while it waits for one)."""
        return float("inf") if self.waiting else time.monotonic() - self.started_at

    def _put(self, ext: int, marker: bool, ts: int, payload: bytes) -> bool:
        try:
            self.queue.put_nowait(
                (marker, (ext - self.first + self.seq_shift) & 0xFFFF, ts, payload)
            )
        except asyncio.QueueFull:
            # The connection does not take packets (not a slow link: sending
            # does not wait for the network): start again on a keyframe.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.waiting = True
            self.skipped += 1
            return False
        self.forwarded += 1
        return True

    def stop(self) -> None:
        """End the send loop."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def run(self, codec: Any) -> None:
        """aiortc's ``_run_rtp``, for packets that are already packetized."""
        sender: Any = self.sender
        parts = sender.__dict__
        parts[_SENDER + "rtp_started"].set()
        history = parts[_SENDER + "rtp_history"]
        extensions = parts[_SENDER + "rtp_header_extensions_map"]
        hold = self.hold
        delay = None
        if self.delay_id is not None and hold is not None:
            delay = self.delay = WithPlayoutDelay(extensions, self.delay_id)
            extensions = delay
        mid = parts[_SENDER + "mid"]
        payload_type = codec.payloadType
        history_size: int = getattr(rtcrtpsender, "RTP_HISTORY_SIZE")  # noqa: B009 - not exported
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                marker, seq, ts, payload = item
                packet = RtpPacket(
                    payload_type=payload_type,
                    sequence_number=seq,
                    timestamp=(ts + self.ts_shift) & 0xFFFFFFFF,
                )
                packet.ssrc = sender._ssrc
                packet.payload = payload
                packet.marker = int(marker)
                packet.extensions.abs_send_time = (aiortc_clock.current_ntp_time() >> 14) & 0xFFFFFF
                packet.extensions.mid = mid
                history[seq % history_size] = packet
                if delay is not None and hold is not None:
                    delay.hold(hold())
                await sender.transport._send_rtp(packet.serialize(extensions))
                ahead = (packet.timestamp - parts[_SENDER + "rtp_timestamp"]) & 0xFFFFFFFF
                if not parts[_SENDER + "packet_count"] or 0 < ahead < 0x80000000:
                    # The sender reports map wall-clock time to this stream's
                    # clock (the viewer syncs audio and video by them): a late
                    # retransmission of an older frame must not move it back.
                    parts[_SENDER + "ntp_timestamp"] = aiortc_clock.current_ntp_time()
                    parts[_SENDER + "rtp_timestamp"] = packet.timestamp
                parts[_SENDER + "octet_count"] += len(payload)
                parts[_SENDER + "packet_count"] += 1
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception:  # as aiortc: stop() waits for rtp_exited
            log.exception("relay forwarder stopped")
        finally:
            parts[_SENDER + "rtp_exited"].set()
