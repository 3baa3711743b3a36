"""A long recorded call in a short time: pre-encoded VP8 + Opus, faster than real time.

For the 60-minute case of ``replay.py``: one recording leg (one
RTCPeerConnection) replays the packets of ``--input`` (looped, with a keyframe
every two seconds) with RTP timestamps of a real-time call, but sent ``--speed``
times faster, until ``--media-seconds`` of media are sent. The recorder keeps
the RTP timing, so the file holds a call of that length. Nothing is encoded.

Protocol on stdin/stdout, one JSON object per line (as ``tests/media/sender.py``):
  -> {"offer": sdp}          <- {"answer": sdp}
  -> {"connected": true}
  -> {"done": true}          (all of it sent)
  the process stays until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rec_sender import AUDIO_TICKS, VIDEO_TICKS, load

# Loopback only (aioice skips 127.0.0.1 by itself).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []

CONNECT_TIMEOUT = 30.0


class Fast(MediaStreamTrack):
    """Pre-encoded packets, looped, with the timestamps of a real-time call, sent
    ``speed`` times faster; after ``count`` packets the track is silent and
    ``finished`` is set. (``_rec_sender.py`` sends its packets itself now, with
    no aiortc track to share.)"""

    def __init__(
        self, kind: str, packets: list[bytes], ticks: int, clock: int, speed: float, count: int
    ) -> None:
        super().__init__()
        self.kind = kind
        self.packets = packets
        self.ticks = ticks
        self.period = ticks / clock / speed
        self.time_base = Fraction(1, clock)
        self.count = count
        self.sent = 0
        self.started: float | None = None
        self.finished = asyncio.Event()

    async def recv(self) -> av.Packet:
        if self.sent >= self.count:
            self.finished.set()
            await asyncio.Event().wait()  # nothing more: the leg stays open, silent
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
    parser.add_argument("--media-seconds", type=float, default=3600.0)
    parser.add_argument("--speed", type=float, default=30.0)
    args = parser.parse_args()
    video_packets, audio_packets = load(args.input)
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = Fast(
        "video", video_packets, VIDEO_TICKS, 90000, args.speed, round(args.media_seconds * 30)
    )
    audio = Fast(
        "audio", audio_packets, AUDIO_TICKS, 48000, args.speed, round(args.media_seconds * 50)
    )
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    pc.addTransceiver(video, direction="sendonly").setCodecPreferences(vp8)
    pc.addTransceiver(audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        print(json.dumps({"offer": pc.localDescription.sdp}), flush=True)
        answer = json.loads(await stdin.readline())["answer"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(CONNECT_TIMEOUT):
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise RuntimeError(f"sender peer {pc.connectionState}")
                await asyncio.sleep(0.05)
        print(json.dumps({"connected": True}), flush=True)
        # Paced, sending takes media_seconds / speed; twice that and a minute
        # more is a sender that stalled (it fails rather than hang the bench).
        async with asyncio.timeout(2 * args.media_seconds / args.speed + 60):
            await asyncio.gather(video.finished.wait(), audio.finished.wait())
        print(json.dumps({"done": True}), flush=True)
        await stdin.read()  # until the parent closes it
    finally:
        await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
