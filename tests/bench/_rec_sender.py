"""Sender side of the recording benchmark: replays pre-encoded VP8 + Opus, never encodes.

One process sends ``--streams`` recording legs (one RTCPeerConnection each) over
loopback, all replaying the same packets from ``--input`` (a WebM written by
``recording.py``), looped, paced in real time (30 fps video, 20 ms Opus).

aiortc makes the connections (ICE, DTLS, SRTP keys, the SDP a browser would
send), but does not send the media: its sender path costs tens of microseconds of
Python per packet (a coroutine chain per packet, an ``RtpPacket`` object, header
extensions serialized one by one): 1.2-1.9 % of a core per stream, 7-11 % of a
2-core machine for 12 streams, as much as the recorder it fed, on the cores its
workers were meant to scale onto. Here the VP8 frames are packetized once
(aiortc's own VP8 packetizer), and a single timer for every stream of the
process (a 5 ms tick, as Chromium's pacer) builds each packet's header with one
``struct`` call, encrypts it with the connection's own SRTP session and writes
it straight to the ICE pair's socket: what goes on the wire is what aiortc's sender would send
(same SSRC, payload types, sequence numbers, marker bits, VP8 descriptors with a
picture id per frame, abs-send-time and mid header extensions). Like Chromium,
each connection offers transport-wide congestion control (the
``transport-wide-cc`` header extension and ``transport-cc`` feedback on every
codec) and numbers every packet it sends, audio, video and retransmissions, in
one sequence per connection: the recorder then runs the feedback path real legs
take (``media/twcc.py``: an arrival noted per packet, a feedback packet every
100 ms, no REMB estimator). The feedback packets that arrive are counted
(``feedback`` in the result). ``--no-twcc`` offers only REMB, as before (the
recorder then runs aiortc's REMB estimator). The streams'
frames are spread evenly over a frame period, as independent browsers' would be.
The receiver's NACKs are answered (RTX, as aiortc does) from the last packets
sent (``REC_BENCH_DROP_EVERY=50`` in the environment leaves out every 50th video
packet, to see them answered: every file still holds every frame, and ``sent``
says how many were sent again). Keyframe requests (PLI) are not honoured: the
input has a keyframe every two seconds and begins with one.

Protocol on stdin/stdout, one JSON object per line:
  -> {"offers": [sdp, ...]}         <- {"answers": [sdp, ...]}
  -> {"connected": true}            (media flows until told to stop)
  <- {"stop": true}                 (or stdin closed, or --max-seconds)
  -> {"sent": [{"video": n, "audio": n, "seconds": s, "retransmitted": n,
                "twcc": bool, "feedback": n}, ...]}
     (twcc: the answer accepted transport-wide feedback; feedback: transport-wide
     feedback packets received from the recorder; reported: the packet statuses
     they carried, received or lost)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import secrets
import struct
import sys
import time
from typing import Any

import aioice.ice
import aiortc.codecs
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters
from aiortc.rtp import RtpPacket, wrap_rtx

# Loopback only (aioice skips 127.0.0.1 by itself).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []

VIDEO_TICKS = 3000  # 90 kHz clock, 30 fps
AUDIO_TICKS = 960  # 48 kHz clock, 20 ms
VIDEO_PERIOD = 1 / 30
AUDIO_PERIOD = 0.02
TICK = 0.005  # the senders' timer
CONNECT_TIMEOUT = 30.0
HISTORY = 512  # packets kept per stream for retransmission (aiortc keeps 128)
HEADER = struct.Struct("!BBHII")
# Leave out every n-th video packet (its retransmission is sent when NACKed).
DROP_EVERY = int(os.environ.get("REC_BENCH_DROP_EVERY", "0"))
NTP_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# The offer's id for it (aiortc's own extensions take 1-3; ids are shared by
# audio and video under BUNDLE, as in Chromium's offers).
TWCC_ID = 5
TWCC_FEEDBACK_FMT = 15  # RTPFB FMT of a transport-wide feedback packet


def offer_transport_cc() -> None:
    """Make this process's aiortc offer transport-wide CC, as Chromium's offers do.

    aiortc's offers carry its module-level lists of header extensions and codec
    feedback; this process only sends, so they are extended for it alone.
    """
    for kind in ("audio", "video"):
        aiortc.codecs.HEADER_EXTENSIONS[kind].append(
            RTCRtpHeaderExtensionParameters(id=TWCC_ID, uri=TWCC_URI)
        )
        for codec in aiortc.codecs.CODECS[kind]:
            if not codec.mimeType.endswith("/rtx"):
                codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


def answer_takes_transport_cc(answer: str) -> bool:
    """Whether the answer kept the extension (our id) and ``transport-cc`` feedback."""
    lines = answer.splitlines()
    return f"a=extmap:{TWCC_ID} {TWCC_URI}" in lines and any(
        line.startswith("a=rtcp-fb:") and line.endswith(" transport-cc") for line in lines
    )


class Connection:
    """What the two tracks of one connection share: the transport-wide numbering."""

    def __init__(self, pc: RTCPeerConnection, twcc: bool) -> None:
        self.twcc = twcc
        self.wide_seq = secrets.randbits(16)
        self.feedback = 0  # transport-wide feedback packets received
        self.reported = 0  # packet statuses they carried
        if twcc:
            dtls = pc.getTransceivers()[0].sender.transport
            handle = dtls._handle_rtcp_data

            async def handle_rtcp_data(data: bytes) -> None:
                # Counted before aiortc parses it: aiortc's RTPFB parser takes
                # every FCI for a NACK list and drops a padded one as invalid
                # (a sender that does not use the feedback does not mind).
                self.count_feedback(data)
                await handle(data)

            setattr(dtls, "_handle_rtcp_data", handle_rtcp_data)  # noqa: B010 - this instance

    def count_feedback(self, data: bytes) -> None:
        """Count the transport-wide feedback packets in a compound RTCP packet."""
        pos = 0
        while pos + 4 <= len(data):
            first, packet_type, length = struct.unpack_from("!BBH", data, pos)
            if packet_type == 205 and first & 0x1F == TWCC_FEEDBACK_FMT and pos + 16 <= len(data):
                self.feedback += 1
                self.reported += struct.unpack_from("!H", data, pos + 14)[0]
            pos += 4 + 4 * length

    def next_wide(self) -> int:
        seq = self.wide_seq
        self.wide_seq = (seq + 1) & 0xFFFF
        return seq


def load(path: str) -> tuple[list[bytes], list[bytes]]:
    """The video and audio packets of the pre-encoded input, in decoding order."""
    video: list[bytes] = []
    audio: list[bytes] = []
    with av.open(path) as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            (video if packet.stream.type == "video" else audio).append(bytes(packet))
    if not video or video[0][0] & 1:
        raise SystemExit("input must start with a VP8 keyframe")
    return video, audio


class Silent(MediaStreamTrack):
    """A track aiortc's sender waits on forever: the media is sent by ``Stream``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Future()  # never resolves; cancelled when the sender stops


class Track:
    """One RTP stream (the video or the audio of a leg), sent by hand."""

    def __init__(
        self, transceiver: Any, frames: list[list[bytes]], ticks: int, connection: Connection
    ) -> None:
        sender: RTCRtpSender = transceiver.sender
        self.connection = connection
        dtls = sender.transport
        self.sender = sender
        self.frames = frames
        self.ticks = ticks
        self.srtp = dtls._tx_srtp
        pair = dtls.transport._connection._nominated[1]
        self.socket_send = pair.protocol.transport.sendto
        self.addr = pair.remote_addr
        self.ssrc = sender._ssrc
        self.rtx_ssrc = sender._rtx_ssrc
        self.rtx_type: int | None = sender.__dict__["_RTCRtpSender__rtx_payload_type"]
        self.rtx_seq = secrets.randbits(16)
        self.extensions = sender.__dict__["_RTCRtpSender__rtp_header_extensions_map"]
        ids = self.extensions.__dict__["_HeaderExtensionsMap__ids"]
        self.payload_type: int = transceiver._codecs[0].payloadType  # the negotiated codec
        mid = (sender.__dict__["_RTCRtpSender__mid"] or "").encode()
        # One-byte header extensions (RFC 8285): abs-send-time first (its 3 bytes
        # change per frame), then the transport-wide sequence number (per
        # packet), then mid, padded to a whole number of words.
        self.abs_id = ids.abs_send_time
        self.wide_id = TWCC_ID if connection.twcc else 0
        if self.wide_id and ids.transport_sequence_number != TWCC_ID:
            raise RuntimeError("transport-wide-cc was not negotiated")
        tail = bytes([(ids.mid << 4) | (len(mid) - 1)]) + mid if ids.mid and mid else b""
        size = (4 if self.abs_id else 0) + (3 if self.wide_id else 0) + len(tail)
        words = (size + 3) // 4
        self.ext_tail = tail + b"\x00" * (4 * words - size)
        self.ext_head = struct.pack("!HH", 0xBEDE, words) + (
            bytes([(self.abs_id << 4) | 2]) if self.abs_id else b""
        )
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.sent = 0  # frames
        self.retransmitted = 0  # packets asked for again (NACK) and sent again
        self.history: list[bytes | None] = [None] * HISTORY
        self.picture_id = secrets.randbits(15)
        self.video = ticks == VIDEO_TICKS
        setattr(sender, "_retransmit", self.retransmit)  # noqa: B010 - this instance

    def send_frame(self, abs_send_time: bytes) -> None:
        """Packetize-free send of the next frame: header, encrypt, write."""
        payloads = self.frames[self.sent % len(self.frames)]
        last = len(payloads) - 1
        pack, protect, send, addr = HEADER.pack, self.srtp.protect, self.socket_send, self.addr
        head = self.ext_head + (abs_send_time if self.abs_id else b"")
        tail, pt, ts, ssrc, seq = self.ext_tail, self.payload_type, self.ts, self.ssrc, self.seq
        history = self.history
        connection = self.connection
        wide = bytes([(self.wide_id << 4) | 1]) if self.wide_id else b""
        picture = struct.pack("!H", 0x8000 | self.picture_id) if self.video else b""
        for i, payload in enumerate(payloads):
            if self.video:
                # aiortc's VP8 descriptor: X|S byte, I byte, then M + 15-bit picture id.
                payload = payload[:2] + picture + payload[4:]
            if wide:
                number = connection.next_wide().to_bytes(2, "big")
                plain = b"".join(
                    (
                        pack(0x90, pt | (0x80 if i == last else 0), seq, ts, ssrc),
                        head,
                        wide,
                        number,
                        tail,
                        payload,
                    )
                )
            else:
                plain = b"".join(
                    (
                        pack(0x90, pt | (0x80 if i == last else 0), seq, ts, ssrc),
                        head,
                        tail,
                        payload,
                    )
                )
            history[seq % HISTORY] = plain
            protected = protect(plain)
            if not (DROP_EVERY and self.video and seq % DROP_EVERY == 0):
                send(protected, addr)
            seq = (seq + 1) & 0xFFFF
        self.seq = seq
        self.ts = (ts + self.ticks) & 0xFFFFFFFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.sent += 1

    async def retransmit(self, sequence_number: int) -> None:
        """A NACKed packet again, as RTX when negotiated (aiortc's ``_retransmit``)."""
        plain = self.history[sequence_number % HISTORY]
        if plain is None:
            return
        packet = RtpPacket.parse(plain, self.extensions)
        if packet.sequence_number != sequence_number:
            return
        if self.rtx_type is not None and self.rtx_ssrc:
            packet = wrap_rtx(
                packet, payload_type=self.rtx_type, sequence_number=self.rtx_seq, ssrc=self.rtx_ssrc
            )
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        if self.wide_id:  # a retransmission is numbered too (Chromium's pacer numbers all)
            packet.extensions.transport_sequence_number = self.connection.next_wide()
        self.socket_send(self.srtp.protect(packet.serialize(self.extensions)), self.addr)
        self.retransmitted += 1


def abs_send_time_now() -> bytes:
    """abs-send-time: NTP seconds in 6.18 fixed point, 24 bits."""
    return (int((time.time() + NTP_OFFSET) * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


async def pace(tracks: list[tuple[Track, Track]], stop: asyncio.Event) -> float:
    """Send every stream's frames on time until ``stop``; returns when sending began.

    One timer for all streams, ticking every ``TICK`` seconds (Chromium's pacer
    sends in 5 ms bursts too): each tick sends every frame that has come due.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    n = len(tracks)
    due: list[tuple[float, int, int]] = []
    for i in range(n):
        # Spread the streams over a frame period (independent browsers are not in step).
        due.append((start + VIDEO_PERIOD * i / n, 0, i))
        due.append((start + AUDIO_PERIOD * i / n, 1, i))
    heapq.heapify(due)
    periods = (VIDEO_PERIOD, AUDIO_PERIOD)
    began = time.monotonic()
    tick = start
    while not stop.is_set():
        tick += TICK
        delay = tick - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = loop.time()
        stamp = abs_send_time_now()
        while due[0][0] <= now:
            at, kind, i = due[0]
            tracks[i][kind].send_frame(stamp)
            heapq.heapreplace(due, (at + periods[kind], kind, i))
    return began


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--address", default="127.0.0.1", help="the one address to gather on")
    parser.add_argument(
        "--no-twcc",
        action="store_true",
        help="offer REMB only (no transport-wide CC): the recorder's REMB path",
    )
    args = parser.parse_args()
    if not args.no_twcc:
        offer_transport_cc()
    address = args.address
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address] if use_ipv4 else []
    video_packets, audio_packets = load(args.input)
    # Packetized once, with picture id 0 (each frame's own is written as it is sent).
    video_frames = [Vp8Encoder._packetize(packet, 0) for packet in video_packets]
    audio_frames = [[packet] for packet in audio_packets]
    loop = asyncio.get_running_loop()

    pcs: list[RTCPeerConnection] = []
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    for _ in range(args.streams):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver(Silent("video"), direction="sendonly")
        transceiver.setCodecPreferences(vp8)
        pc.addTransceiver(Silent("audio"), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)

    stdin = asyncio.StreamReader(limit=1 << 22)  # every answer in one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    tracks: list[tuple[Track, Track]] = []
    try:
        print(json.dumps({"offers": [pc.localDescription.sdp for pc in pcs]}), flush=True)
        line = await stdin.readline()
        answers = json.loads(line)["answers"]
        # A recorder that did not take it gets no numbers (and sends no feedback).
        twccs = [not args.no_twcc and answer_takes_transport_cc(answer) for answer in answers]
        for pc, answer in zip(pcs, answers, strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

        async def connected(pc: RTCPeerConnection) -> None:
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise RuntimeError(f"sender peer {pc.connectionState}")
                await asyncio.sleep(0.05)

        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.gather(*(connected(pc) for pc in pcs))
        for pc, twcc in zip(pcs, twccs, strict=True):
            connection = Connection(pc, twcc)  # after the answer: the bundled transport
            video, audio = pc.getTransceivers()
            tracks.append(
                (
                    Track(video, video_frames, VIDEO_TICKS, connection),
                    Track(audio, audio_frames, AUDIO_TICKS, connection),
                )
            )
        stop = asyncio.Event()
        pacing = asyncio.ensure_future(pace(tracks, stop))
        print(json.dumps({"connected": True}), flush=True)

        # Until told to stop (or the parent went away, or the safety bound).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin.readline(), timeout=args.max_seconds)
        stop.set()
        began = await pacing
        seconds = time.monotonic() - began
        sent = [
            {
                "video": v.sent,
                "audio": a.sent,
                "seconds": seconds,
                "retransmitted": v.retransmitted,
                "twcc": v.connection.twcc,
                "feedback": v.connection.feedback,
                "reported": v.connection.reported,
            }
            for v, a in tracks
        ]
    finally:
        for pc in pcs:
            await pc.close()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
