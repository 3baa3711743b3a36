"""A stand-in for a browser's recording leg, run as its own process.

It sends synthetic video (VP8 or H.264, numbered frames) and Opus audio to the
recorder through a real aiortc peer connection on loopback, so that the test
process, which hosts the recorder, can assert it never encodes or decodes.

Protocol on stdin/stdout, one JSON object per line:
  -> {"offer": sdp}          <- {"answer": sdp}
  -> {"connected": true}     (media flows; sends for --seconds)
  -> {"progress": s}         (with --progress: seconds of media sent, each second)
  -> {"sent": {"video": n, "audio": n, "seconds": s, "media_seconds": s, "dropped": n,
               "resent_after_drops": n, "packets_before_resend": n, ...}}
     (seconds: wall time since the first frame; media_seconds: the length of
     the media sent, by its own timestamps; shorter when the machine starved
     the sender; the resends with --lose-twice: ``lose_one``)

With ``--drop N`` every Nth video RTP packet is not sent the first time (a lossy
uplink): only the recorder's NACK brings it back (as RTX).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import aioice.ice
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_PTIME
from av import VideoFrame

# --queue: how much the lag of a frame's sending behind its capture grows or
# shrinks from one frame to the next (s).
QUEUE_STEP = 0.005

# Loopback only (aioice skips 127.0.0.1 by itself).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


class Counting(VideoStreamTrack):
    """Numbered grey frames (or noise) at 30 fps; counts what it produced."""

    def __init__(
        self, width: int, height: int, pause: tuple[float, float] | None, noise: bool = False
    ) -> None:
        super().__init__()
        self.width, self.height, self.pause, self.noise = width, height, pause, noise
        self.sent = 0
        self.started: float | None = None
        # Where the last frame sent ends on the track's own clock (seconds): the
        # media's length, which a starved sender makes shorter than the wall time
        # (aiortc numbers frames by count, and a late encoder falls behind).
        self.end = 0.0
        self.starve = False  # --starve
        # --queue: (start, end, seconds) each frame between start and end waits
        # before it goes, as a browser's pacer holds packets queued.
        self.queue: tuple[float, float, float] | None = None
        self.lag = 0.0
        # The camera stops (``halt``): once aiortc's send loop asks for the next
        # frame (every frame before it is out) ``idle`` is set, and none comes.
        self.halted = False
        self.idle = asyncio.Event()

    async def recv(self) -> VideoFrame:
        if self.halted:
            self.idle.set()
            await asyncio.Future()  # until the connection closes
        pts, time_base = await self.next_timestamp()
        if self.started is None:
            self.started = time.monotonic()
        if self.pause and self.pause[0] <= time.monotonic() - self.started < self.pause[1]:
            # A muted camera: no frames for a while (the browser stops sending).
            await asyncio.sleep(self.pause[1] - (time.monotonic() - self.started))
            # The clock went on: the next frame is stamped a pause later, as a
            # browser stamps its capture time (aiortc would stamp the frames
            # due meanwhile and send them in a burst).
            ptime = int(VIDEO_PTIME * VIDEO_CLOCK_RATE)
            self._timestamp = int((time.time() - self._start) * VIDEO_CLOCK_RATE) - ptime
            pts, time_base = await self.next_timestamp()
        if self.queue:
            # Sent later than captured, by up to the queue's length: the frames
            # are stamped that much earlier (the send time, abs-send-time, runs
            # ahead of the RTP timestamp), the lag growing and shrinking by
            # QUEUE_STEP a frame, so that the timestamps still go forward.
            start, end, most = self.queue
            building = start <= time.monotonic() - self.started < end
            lag = self.lag + QUEUE_STEP if building else self.lag - QUEUE_STEP
            self.lag = min(max(lag, 0.0), most)
            pts -= round(self.lag / time_base)
        frame = VideoFrame(width=self.width, height=self.height, format="yuv420p")
        for plane in frame.planes:
            if self.noise:
                plane.update(os.urandom(plane.buffer_size))
            else:
                plane.update(bytes([(self.sent * 7) % 256]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        self.end = float((pts + VIDEO_PTIME * VIDEO_CLOCK_RATE) * time_base)
        if self.starve:
            time.sleep(2 * VIDEO_PTIME)  # noqa: ASYNC251 - the loop held, as by a starved CPU
        return frame


class CountingAudio(AudioStreamTrack):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.end = 0.0  # as Counting.end
        self.starve = False

    async def recv(self):  # type: ignore[no-untyped-def]
        frame = await super().recv()
        self.sent += 1
        self.end = (frame.pts + frame.samples) / frame.sample_rate
        if self.starve:
            time.sleep(2 * frame.samples / frame.sample_rate)  # noqa: ASYNC251 - as Counting
        return frame


def lose_first_sends(sender: RTCRtpSender, every: int, dropped: list[int]) -> None:
    """Drop every ``every``-th video RTP packet the first time it is sent."""
    transport = sender.transport
    send = transport._send_rtp
    seen: set[int] = set()
    count = [0]

    async def lossy(data: bytes) -> None:
        if 127 < data[0] < 192 and not 191 < data[1] < 224:  # RTP, not RTCP
            ssrc = int.from_bytes(data[8:12], "big")
            seq = int.from_bytes(data[2:4], "big")
            if ssrc == sender._ssrc and seq not in seen:
                seen.add(seq)
                count[0] += 1
                if count[0] % every == 0:
                    dropped[0] += 1
                    return
        await send(data)

    transport._send_rtp = lossy


def lose_start(sender: RTCRtpSender, first: int, dropped: list[int]) -> None:
    """Drop the first ``first`` video RTP packets (the start of the first
    keyframe) the first time each is sent; resends (RTX) go through."""
    transport = sender.transport
    send = transport._send_rtp
    lost: set[int] = set()

    async def lossy(data: bytes) -> None:
        if 127 < data[0] < 192 and not 191 < data[1] < 224:  # RTP, not RTCP
            ssrc = int.from_bytes(data[8:12], "big")
            seq = int.from_bytes(data[2:4], "big")
            if ssrc == sender._ssrc and len(lost) < first and seq not in lost:
                lost.add(seq)
                dropped[0] += 1
                return
        await send(data)

    transport._send_rtp = lossy


def _holds_change_cipher_spec(data: bytes) -> bool:
    """Whether a DTLS datagram holds a ChangeCipherSpec record (a last flight)."""
    at = 0
    while 19 < data[0] < 64 and at + 13 <= len(data):
        if data[at] == 20:
            return True
        at += 13 + int.from_bytes(data[at + 11 : at + 13], "big")
    return False


def lose_dtls_last(sender: RTCRtpSender) -> list[int]:
    """Drop this side's last DTLS flight once (the datagram with its ChangeCipherSpec).

    This side is the DTLS server: done once the recorder's Finished came, it
    sends media at once; the recorder, the client, is done only when this
    flight comes, which its retransmission timer asks for a second later.
    Returns a counter of the datagrams dropped.
    """
    ice = sender.transport.transport
    send = ice._send
    dropped = [0]

    async def lossy(data: bytes) -> None:
        if not dropped[0] and _holds_change_cipher_spec(data):
            dropped[0] += 1
            return
        await send(data)

    ice._send = lossy  # type: ignore[method-assign]
    return dropped


def lose_one(sender: RTCRtpSender, nth: int, resends: int, dropped: list[int]) -> None:
    """Drop the ``nth`` video RTP packet on its first send and on its first
    ``resends`` resends (RTX); nothing else is lost, so nothing new goes missing
    after it. ``dropped[0]`` counts the sends dropped; ``dropped[1]`` the
    resends that went out after them (the ones that got through), and
    ``dropped[2]`` how many video packets had been sent after the lost one
    when the first of those went out."""
    from aiortc.rtp import RtpPacket

    transport = sender.transport
    send = transport._send_rtp
    count = [0]
    target: list[int] = []
    newest = [0]

    async def lossy(data: bytes) -> None:
        if 127 < data[0] < 192 and not 191 < data[1] < 224:  # RTP, not RTCP
            ssrc = int.from_bytes(data[8:12], "big")
            seq = int.from_bytes(data[2:4], "big")
            if ssrc == sender._ssrc:
                newest[0] = seq
                if not target:
                    count[0] += 1
                    if count[0] == nth:
                        target.append(seq)
                        dropped[0] += 1
                        return
            elif ssrc == sender._rtx_ssrc and target:
                original = int.from_bytes(RtpPacket.parse(data).payload[:2], "big")
                if original == target[0]:
                    if dropped[0] <= resends:
                        dropped[0] += 1
                        return
                    if not dropped[1]:
                        dropped[2] = (newest[0] - target[0]) & 0xFFFF
                    dropped[1] += 1
        await send(data)

    transport._send_rtp = lossy


class LoseLast:
    """At the end of the call: the last packet of the next video frame is dropped
    on its first send and on its first resend, the frame after it goes out (it
    reveals the hole), and then nothing new is sent: only retransmissions, as a
    page does once its call ended. Counts the frames sent (distinct timestamps)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.timestamps: set[int] = set()
        self.armed = False
        self.target: int | None = None
        self.target_ts: int | None = None
        self.dropped = 0
        self.revealed = asyncio.Event()  # a frame after the lost packet's went out whole
        self.resend_lost = asyncio.Event()  # the first resend was dropped too
        transport = sender.transport
        send = transport._send_rtp

        async def lossy(data: bytes) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224:  # RTP, not RTCP
                ssrc = int.from_bytes(data[8:12], "big")
                seq = int.from_bytes(data[2:4], "big")
                ts = int.from_bytes(data[4:8], "big")
                if ssrc == sender._ssrc:
                    if self.revealed.is_set():
                        # Nothing new after the frame that revealed the hole: a
                        # later packet would make the recorder ask again (after
                        # a round trip and a half), and how late the camera
                        # halts depends on how loaded the machine is.
                        return
                    self.timestamps.add(ts)
                    if self.armed and self.target is None and data[1] & 0x80:
                        # The last packet of a frame: nothing of its own frame
                        # reveals the hole, only the next frame does.
                        self.target, self.target_ts = seq, ts
                        self.dropped += 1
                        return
                    if self.target_ts is not None and ts != self.target_ts and data[1] & 0x80:
                        self.revealed.set()
                elif ssrc == sender._rtx_ssrc and self.target is not None and self.dropped == 1:
                    if int.from_bytes(_rtp_payload(data)[:2], "big") == self.target:
                        self.dropped += 1
                        self.resend_lost.set()
                        return
            await send(data)

        transport._send_rtp = lossy


class EndMidFrame:
    """At the end of the call: the first packet of the next video frame of more
    than one packet goes out, the rest of that frame is held back, and nothing
    new is sent; ``release`` sends what was held (the recorder's end came in
    the middle of the frame). Counts the frames sent (distinct timestamps)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.timestamps: set[int] = set()
        self.armed = False
        self.frame_ts: int | None = None
        self.held: list[bytes] = []
        self.holding = asyncio.Event()  # the frame's first packet went, one more is held
        transport = sender.transport
        self.send = transport._send_rtp

        async def split(data: bytes) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224:  # RTP, not RTCP
                ssrc = int.from_bytes(data[8:12], "big")
                ts = int.from_bytes(data[4:8], "big")
                if ssrc == sender._ssrc:
                    if self.frame_ts is not None:
                        if ts == self.frame_ts:
                            self.held.append(data)
                            self.holding.set()
                        return  # a later frame: never sent (the camera stops)
                    if self.armed and not data[1] & 0x80:
                        self.frame_ts = ts  # a frame's first packet, not its last
                    self.timestamps.add(ts)
            await self.send(data)

        transport._send_rtp = split

    async def release(self, lose_last: bool) -> None:
        # lose_last: the frame's last packet is lost on its first send (only a
        # NACK, answered from aiortc's send history over RTX, brings it).
        for data in self.held[:-1] if lose_last else self.held:
            await self.send(data)


def _rtp_payload(data: bytes) -> bytes:
    from aiortc.rtp import RtpPacket

    return RtpPacket.parse(data).payload


def count_feedback(
    sender: RTCRtpSender, keyframe_late: float = 0.0, nack_late: float = 0.0
) -> dict[str, Any]:
    """Count the RTCP feedback the recorder sends about the video: receiver
    reports that cover it, REMB estimates, NACKs, keyframe requests (PLI); and
    note when the first NACK and the first PLI came (``first_nack_at``,
    ``first_pli_at``: ``time.monotonic()``), and each PLI (``pli_at``).

    ``keyframe_late``: a PLI is acted on that many seconds after it came, as
    the keyframe it brings comes late over a slow uplink (its bits queue
    behind the frames before it). ``nack_late``: the same for a NACK, as the
    resend comes a round trip late over a long one.
    """
    from aiortc.rtp import RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket

    counts: dict[str, Any] = {"reports": 0, "remb": 0, "nack": 0, "pli": 0}
    plis: list[float] = counts.setdefault("pli_at", [])  # when each came (``time.monotonic()``)
    handle = sender._handle_rtcp_packet
    later: set[asyncio.Task[None]] = set()

    async def late(packet: object, delay: float) -> None:
        await asyncio.sleep(delay)  # the simulated uplink's delay itself
        await handle(packet)  # type: ignore[arg-type]

    def later_on(packet: object, delay: float) -> None:
        task = asyncio.ensure_future(late(packet, delay))
        later.add(task)
        task.add_done_callback(later.discard)

    async def counting(packet: object) -> None:
        if isinstance(packet, RtcpRrPacket):
            counts["reports"] += any(r.ssrc == sender._ssrc for r in packet.reports)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == 15:
            counts["remb"] += 1
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:
            counts["nack"] += 1
            counts.setdefault("first_nack_at", time.monotonic())
            if nack_late:
                later_on(packet, nack_late)
                return
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == 1:
            counts["pli"] += 1
            counts.setdefault("first_pli_at", time.monotonic())
            plis.append(time.monotonic())
            if keyframe_late:
                later_on(packet, keyframe_late)
                return
        await handle(packet)  # type: ignore[arg-type]

    sender._handle_rtcp_packet = counting  # type: ignore[method-assign]
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--pause", default="", help="start,end seconds without video")
    parser.add_argument("--progress", action="store_true", help="print seconds sent, each second")
    parser.add_argument("--drop", type=int, default=0, help="drop every Nth video packet once")
    parser.add_argument(
        "--lose-twice", type=int, default=0, help="drop the Nth video packet and its first resend"
    )
    parser.add_argument(
        "--resends-lost",
        type=int,
        default=1,
        help="with --lose-twice: how many of the packet's resends are dropped too",
    )
    parser.add_argument(
        "--bitrate",
        type=int,
        default=0,
        help="encode at this bitrate (bit/s) whatever the recorder's estimate says",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="packets kept for resends (aiortc keeps 128; libwebrtc at least a second's and 600)",
    )
    parser.add_argument(
        "--lose-first", type=int, default=0, help="drop the first N video packets once each"
    )
    parser.add_argument(
        "--lose-last-twice",
        action="store_true",
        help="at the end, drop a packet and its first resend, then send nothing new "
        "and keep the connection until a line on stdin",
    )
    parser.add_argument(
        "--end-mid-frame",
        action="store_true",
        help="at the end, send the first packet of a frame, hold the rest until a line on "
        "stdin, send nothing new, and keep the connection until a second line",
    )
    parser.add_argument(
        "--lose-frame-end",
        action="store_true",
        help="with --end-mid-frame: the held frame's last packet is lost on its first send",
    )
    parser.add_argument("--noise", action="store_true", help="frames of noise (several packets)")
    parser.add_argument(
        "--queue",
        default="",
        help="start,end,ms: from start to end seconds each video frame is sent ms after its "
        "capture (a browser's pacer holding packets queued)",
    )
    parser.add_argument(
        "--nack-late",
        type=float,
        default=0.0,
        help="seconds from a NACK to the resend it brings (a long round trip)",
    )
    parser.add_argument(
        "--lose-dtls-last",
        action="store_true",
        help="drop this side's last DTLS handshake flight once (it is the DTLS server)",
    )
    parser.add_argument(
        "--keyframe-late",
        type=float,
        default=0.0,
        help="seconds from a keyframe request (PLI) to the keyframe it brings",
    )
    parser.add_argument(
        "--starve",
        action="store_true",
        help="a machine that starves this process: making each frame (video and "
        "audio) holds the loop for twice the frame's duration, so the media sent "
        "falls behind the wall time and never catches up",
    )
    parser.add_argument(
        "--ended-by-recorder",
        action="store_true",
        help="at the end, send nothing new and keep the connection until a line on "
        "stdin (as a page does once its call ended: the recorder closes it)",
    )
    parser.add_argument(
        "--hears-end-after",
        type=float,
        default=0.0,
        help='with --ended-by-recorder: say "ending" while still sending, and stop '
        "this many seconds later (a page whose call another page ended: it hears of "
        "the end a one-way trip after the recorder)",
    )
    args = parser.parse_args()
    if args.history:
        import aiortc.rtcrtpsender

        # Read at every send and resend (the history is keyed modulo it).
        aiortc.rtcrtpsender.RTP_HISTORY_SIZE = args.history  # type: ignore[attr-defined]
    if args.bitrate:
        from aiortc.codecs import h264, vpx

        for codec in (h264, vpx):  # the encoders clamp every target to these
            codec.DEFAULT_BITRATE = codec.MIN_BITRATE = codec.MAX_BITRATE = args.bitrate  # type: ignore[attr-defined]
    width, height = (int(x) for x in args.size.split("x"))
    pause = tuple(float(x) for x in args.pause.split(",")) if args.pause else None

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = Counting(width, height, pause, args.noise)  # type: ignore[arg-type]
    audio = CountingAudio()
    video.starve = audio.starve = args.starve
    if args.queue:
        start, end, ms = (float(x) for x in args.queue.split(","))
        video.queue = (start, end, ms / 1000)
    vt = pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(audio, direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    want = "video/" + ("VP8" if args.codec == "vp8" else "H264")
    vt.setCodecPreferences([c for c in caps if c.mimeType in (want, "video/rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    # Sends dropped; with --lose-twice also the resends that got through and
    # the packets sent before the first of them (``lose_one``).
    dropped = [0, 0, 0]
    if args.drop:
        lose_first_sends(vt.sender, args.drop, dropped)
    elif args.lose_twice:
        lose_one(vt.sender, args.lose_twice, args.resends_lost, dropped)
    elif args.lose_first:
        lose_start(vt.sender, args.lose_first, dropped)
    last = LoseLast(vt.sender) if args.lose_last_twice else None
    mid = EndMidFrame(vt.sender) if args.end_mid_frame else None
    feedback = count_feedback(vt.sender, args.keyframe_late, args.nack_late)
    dtls_dropped = lose_dtls_last(vt.sender) if args.lose_dtls_last else [0]
    print(json.dumps({"offer": pc.localDescription.sdp}), flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    await pc.setRemoteDescription(RTCSessionDescription(json.loads(line)["answer"], "answer"))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    await asyncio.wait_for(connected.wait(), 10)
    print(json.dumps({"connected": True}), flush=True)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < args.seconds:
        await asyncio.sleep(min(1.0, args.seconds - elapsed))
        if args.progress:
            print(json.dumps({"progress": time.monotonic() - (video.started or start)}), flush=True)
    if last is not None:
        last.armed = True
        await asyncio.wait_for(last.revealed.wait(), 10)
        await asyncio.wait_for(last.resend_lost.wait(), 10)
    if mid is not None:
        mid.armed = True
        await asyncio.wait_for(mid.holding.wait(), 10)
    if args.hears_end_after:
        print(json.dumps({"ending": True}), flush=True)
        await asyncio.sleep(args.hears_end_after)  # a one-way trip and more
    if last is not None or mid is not None or args.ended_by_recorder:
        video.halted = True
        if pc.connectionState == "connected":  # (the recorder may have closed it)
            await asyncio.wait_for(video.idle.wait(), 10)
        for sender in pc.getSenders():
            if sender is not vt.sender:
                sender.replaceTrack(None)
        # The recorder ends the leg now; this side still answers its NACKs.
        if not args.hears_end_after:
            print(json.dumps({"ending": True}), flush=True)
        if mid is not None:
            await loop.run_in_executor(None, sys.stdin.readline)
            await mid.release(args.lose_frame_end)
        await loop.run_in_executor(None, sys.stdin.readline)
    seconds = time.monotonic() - (video.started or start)
    sent = {
        "video": video.sent,
        "audio": audio.sent,
        "seconds": seconds,
        "media_seconds": max(video.end, audio.end),
        "dropped": dropped[0],
        "resent_after_drops": dropped[1],
        "packets_before_resend": dropped[2],
        "feedback": feedback,
        "dtls_dropped": dtls_dropped[0],
    }
    plis = feedback.pop("pli_at")
    if video.started is not None:
        # From the first video frame taken to each PLI that came.
        sent["pli_after"] = [at - video.started for at in plis]
    for what in ("nack", "pli"):
        first = feedback.pop(f"first_{what}_at", None)
        if first is not None and video.started is not None:
            # From the first video frame taken to the first NACK (PLI) that came.
            sent[f"first_{what}_after"] = first - video.started
    if last is not None:
        sent["frames"] = len(last.timestamps)  # long after the last one went out
        sent["dropped"] = last.dropped
    if mid is not None:
        sent["frames"] = len(mid.timestamps)
        sent["held"] = len(mid.held)
    await pc.close()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
