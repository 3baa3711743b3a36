"""Sender side of the recording benchmark: replays pre-encoded VP8 + Opus, never encodes.

One process sends ``--streams`` recording legs (one RTCPeerConnection each) over
loopback, all replaying the same packets from ``--input`` (a WebM written by
``recording.py``), looped, paced in real time (30 fps video, 20 ms Opus). The tracks
yield ``av.Packet``s, which aiortc's RTCRtpSender packetizes without an encoder
(``RTCRtpSender._next_encoded_frame``: anything that is not a ``Frame`` goes to
``encoder.pack``). Keyframe requests (PLI) are therefore not honoured: the input
has a keyframe every two seconds and begins with one.

Protocol on stdin/stdout, one JSON object per line:
  -> {"offers": [sdp, ...]}         <- {"answers": [sdp, ...]}
  -> {"connected": true}            (media flows until told to stop)
  <- {"stop": true}                 (or stdin closed, or --max-seconds)
  -> {"sent": [{"video": n, "audio": n, "seconds": s}, ...]}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from fractions import Fraction

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

# Loopback only (aioice skips 127.0.0.1 by itself).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []

VIDEO_TICKS = 3000  # 90 kHz clock, 30 fps
AUDIO_TICKS = 960  # 48 kHz clock, 20 ms
CONNECT_TIMEOUT = 30.0


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


class Replay(MediaStreamTrack):
    """Yields pre-encoded packets, looped, at their real-time pace."""

    def __init__(self, kind: str, packets: list[bytes], ticks: int, clock: int) -> None:
        super().__init__()
        self.kind = kind
        self.packets = packets
        self.ticks = ticks
        self.period = ticks / clock
        self.time_base = Fraction(1, clock)
        self.sent = 0
        self.started: float | None = None

    async def recv(self) -> av.Packet:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = self.started + self.sent * self.period
        if due > now:
            await asyncio.sleep(due - now)
        packet = av.Packet(self.packets[self.sent % len(self.packets)])
        packet.pts = self.sent * self.ticks
        packet.time_base = self.time_base
        self.sent += 1
        return packet


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--address", default="127.0.0.1", help="the one address to gather on")
    args = parser.parse_args()
    address = args.address
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address] if use_ipv4 else []
    video_packets, audio_packets = load(args.input)
    loop = asyncio.get_running_loop()

    pcs: list[RTCPeerConnection] = []
    tracks: list[tuple[Replay, Replay]] = []
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    for _ in range(args.streams):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = Replay("video", video_packets, VIDEO_TICKS, 90000)
        audio = Replay("audio", audio_packets, AUDIO_TICKS, 48000)
        transceiver = pc.addTransceiver(video, direction="sendonly")
        transceiver.setCodecPreferences(vp8)
        pc.addTransceiver(audio, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)
        tracks.append((video, audio))

    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        print(json.dumps({"offers": [pc.localDescription.sdp for pc in pcs]}), flush=True)
        line = await stdin.readline()
        answers = json.loads(line)["answers"]
        for pc, answer in zip(pcs, answers, strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

        async def connected(pc: RTCPeerConnection) -> None:
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise RuntimeError(f"sender peer {pc.connectionState}")
                await asyncio.sleep(0.05)

        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.gather(*(connected(pc) for pc in pcs))
        print(json.dumps({"connected": True}), flush=True)

        # Until told to stop (or the parent went away, or the safety bound).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin.readline(), timeout=args.max_seconds)
        now = time.monotonic()
        sent = [
            {
                "video": video.sent,
                "audio": audio.sent,
                "seconds": now - video.started if video.started else 0.0,
            }
            for video, audio in tracks
        ]
    finally:
        for pc in pcs:
            await pc.close()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
