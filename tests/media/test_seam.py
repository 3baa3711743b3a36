"""The private parts of aiortc and aioice that the recorder relies on.

If one of these fails after an upgrade, read media/seam.py before changing the
pin in pyproject.toml: the recorder takes encoded frames out of aiortc through
exactly these names.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import aioice.ice
import aiortc
import aiortc.rtcrtpreceiver as rtcrtpreceiver
import aiortc.rtcrtpsender as rtcrtpsender
import av
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import HeaderExtensionsMap

from media import rtp, seam, speedups
from media.bitstream import h264_size, picture_size, vp8_size
from media.lean import NACK_HISTORY, Lean
from media.opushead import opus_head, opus_template
from media.seam import KeptPacket
from media.ulpfec import FecTypes


def test_aiortc_is_a_tested_version() -> None:
    assert aiortc.__version__.startswith(seam.TESTED_AIORTC)


def test_the_receiver_still_looks_up_its_decoder_by_module_global() -> None:
    seam.check()  # raises SeamBroken with a precise message otherwise
    assert "get_decoder" in rtcrtpreceiver.decoder_worker.__code__.co_names
    assert "_send_rtcp_pli" in dir(rtcrtpreceiver.RTCRtpReceiver)
    assert "getSynchronizationSources" in dir(rtcrtpreceiver.RTCRtpReceiver)


def test_the_sender_still_keeps_what_the_packet_forwarder_takes_over() -> None:
    from media import forward

    forward.check()  # raises SeamBroken naming the part otherwise
    assert "_run_rtp" in rtcrtpsender.RTCRtpSender.send.__code__.co_names


def test_installing_the_passthrough_replaces_the_decoder_lookup() -> None:
    seam.install_passthrough()
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    decoder = rtcrtpreceiver.get_decoder(codec)
    assert isinstance(decoder, seam.PassthroughDecoder)

    class Jitter:
        data = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00"
        timestamp = 3000

    [frame] = decoder.decode(Jitter())
    assert (frame.codec, frame.kind, frame.timestamp, frame.clock_rate) == (
        "vp8",
        "video",
        3000,
        90000,
    )
    assert frame.keyframe and frame.data == Jitter.data


def test_host_addresses_can_be_restricted() -> None:
    original = aioice.ice.get_host_addresses
    try:
        seam.restrict_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    finally:
        aioice.ice.get_host_addresses = original


def encoded_keyframe(codec: str, width: int, height: int) -> bytes:
    """A real keyframe from FFmpeg's encoder (test side only; Annex-B for H.264)."""
    ctx = av.CodecContext.create({"vp8": "libvpx", "h264": "libx264"}[codec], "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    frame = av.VideoFrame(width=width, height=height, format="yuv420p")
    frame.pts = 0
    packets = [*ctx.encode(frame), *ctx.encode(None)]
    return bytes(packets[0])


@pytest.mark.parametrize("codec", ["vp8", "h264"])
@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1280, 720)])
def test_picture_size_is_read_from_a_real_keyframe(codec: str, size: tuple[int, int]) -> None:
    data = encoded_keyframe(codec, *size)
    assert seam.is_keyframe(codec, data)
    assert picture_size(codec, data) == size


def test_size_readers_refuse_what_is_not_a_keyframe() -> None:
    assert vp8_size(b"\x01\x00\x00") is None
    assert h264_size(b"\x00\x00\x01\x41\x9a") is None
    assert not seam.is_keyframe("h264", b"\x00\x00\x01\x41\x9a")


def test_the_opus_template_carries_an_opushead_and_no_open_codec() -> None:
    stream = opus_template()
    assert stream.codec_context.extradata == opus_head(1)
    assert stream.codec_context.is_open is False


def test_audio_is_handed_on_as_it_arrives_not_held_behind_a_lost_packet() -> None:
    from aiortc.jitterbuffer import JitterBuffer
    from aiortc.rtp import RtpPacket

    def packet(seq: int) -> RtpPacket:
        p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        p._data = bytes([seq])  # type: ignore[attr-defined] - as aiortc's depayload sets it
        return p

    arrivals = [1, 2, 4, 5, 6]  # 3 is lost (audio is not retransmitted)
    ours = seam.ArrivalOrderAudio()
    out = [ours.add(packet(seq))[1] for seq in arrivals]
    assert [f.data[0] for f in out if f is not None] == arrivals
    # aiortc's own audio buffer holds what follows a lost packet back (what made
    # relayed audio 22.5 % concealed at 5 % loss): nothing after 2 comes out.
    theirs = JitterBuffer(capacity=16, prefetch=4)
    held = [theirs.add(packet(seq))[1] for seq in arrivals]
    assert all(f is None or f.data[0] <= 2 for f in held)
    # A late (reordered) or repeated packet is not handed on out of order.
    assert ours.add(packet(3)) == (False, None)
    assert ours.add(packet(6)) == (False, None)
    assert ours.add(packet(7))[1] is not None


@contextlib.asynccontextmanager
async def lean_on(
    offer: str,
    keep: Callable[[KeptPacket], None] = lambda packet: None,
    fec: FecTypes | None = None,
) -> AsyncIterator[tuple[Lean, Any]]:
    """The recorder's receive path of one video stream (``Lean``) on aiortc's
    receiver as ``offer`` sets it up, with the codecs of the answer (what
    aiortc's ``receive`` sets once connected). Packets are made by the test (no
    network): yields the lean and the video transceiver. The NACKs it would
    send are closed unsent."""
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    nacks: list[Any] = []
    try:
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        video = next(t for t in pc.getTransceivers() if t.kind == "video")
        lean = Lean(
            video.receiver,
            "video",
            keep,
            lambda: False,
            video.receiver.transport._rtp_header_extensions_map,
            fec,
        )
        lean._spawn = nacks.append  # type: ignore[method-assign]
        for codec in video._codecs:
            lean.codecs[codec.payloadType] = codec
        yield lean, video
    finally:
        for coroutine in nacks:
            coroutine.close()
        await pc.close()


def video_extensions() -> HeaderExtensionsMap:
    """aiortc's header-extension map as its video sections negotiate it (mid, abs-send-time)."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                ),
            ]
        )
    )
    return extensions


def test_the_tap_reads_rtp_headers_as_aiortc_does() -> None:
    # The tap's header reader stands in for aiortc's RtpPacket.parse: same
    # fields, padding stripped, abs-send-time found among other extensions.
    from aiortc.rtp import RtpPacket

    extensions = video_extensions()
    packet = RtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=2**32 - 1)
    packet.ssrc = 1234
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    packet.payload = b"\x90\x80\x01payload"
    packet.padding_size = 4
    data = packet.serialize(extensions)
    theirs = RtpPacket.parse(data, extensions)
    ours = rtp.Rtp(data)
    for name in ("marker", "payload_type", "sequence_number", "timestamp", "ssrc", "payload"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.padding_size == theirs.padding_size == 4

    class Receiver:
        _enabled = True

    lean = Lean.__new__(Lean)
    lean.extensions = extensions
    assert lean._abs_send_time(ours) == theirs.extensions.abs_send_time == 0x123456
    with pytest.raises(ValueError):
        rtp.Rtp(b"\x80\x60\x00")


def test_the_rtp_reader_finds_the_payload_after_csrcs_extension_and_padding() -> None:
    # Packets ULPFEC rebuilds are read with it too: their headers are made of
    # XORed bytes, and one that does not fit is dropped.
    fixed = bytes(10)  # sequence number, timestamp, SSRC

    def payload(b0: int, body: bytes) -> bytes:
        return rtp.Rtp(bytes([b0, 96]) + fixed + body).payload

    csrc, extension = struct.pack("!I", 7), struct.pack("!HH", 0xBEDE, 1) + b"\x10\x01\x00\x00"
    assert payload(0x91, csrc + extension + b"data") == b"data"
    assert payload(0xB0, struct.pack("!HH", 0xBEDE, 0) + b"data" + b"\x00\x02") == b"data"
    for b0, body in (
        (0x90, b"\xbe\xde\x00\x09"),  # an extension longer than the packet
        (0xA0, b"data\x09"),  # padding longer than the packet
        (0xA0, b"data\x00"),  # padding of none
        (0x8F, b"data"),  # more CSRCs than the packet holds
    ):
        with pytest.raises(ValueError):
            payload(b0, body)


def test_the_tap_clock_is_aiortcs() -> None:
    assert abs(seam.current_ms() - aiortc.clock.current_ms()) <= 5


def test_the_faster_remb_estimator_gives_aiortcs_estimates() -> None:
    # The same packets (bursts of a frame, jitter, reordering, a stall, a time
    # step back, congestion: arrivals falling behind, abs-send-time wrapping after
    # 64 s) into aiortc's estimator and into one
    # sped up by the seam: every result and every rate is the same.
    import random

    from aiortc.rate import RemoteBitrateEstimator

    stock, fast = RemoteBitrateEstimator(), RemoteBitrateEstimator()
    speedups.speed_up_estimator(fast)
    rng = random.Random(3)  # noqa: S311 - test timings
    now, sent, results = 1_000_000, 0.0, 0
    for frame in range(3000):
        sent += 1 / 30
        if frame == 1000:
            now += 3000  # a stall
        if frame == 1500:
            now -= 3  # the wall clock stepped back
        lag = 0 if frame < 2000 else (frame - 2000) // 10  # a queue building up
        for k in range(rng.randint(1, 6)):
            abs_send_time = int((sent + k * 0.0004) * 262144) & 0xFFFFFF
            if rng.random() < 0.03:  # reordered: sent before the frames already seen
                abs_send_time = int((sent - rng.choice([0.01, 0.05, 0.2])) * 262144) & 0xFFFFFF
            now += rng.randint(0, 3)
            arrival = now + lag
            args = {"arrival_time_ms": arrival, "abs_send_time": abs_send_time, "ssrc": 1}
            size = rng.randint(200, 1200)
            expected = stock.add(payload_size=size, **args)
            assert fast.add(payload_size=size, **args) == expected, frame
            assert fast.incoming_bitrate.rate(arrival) == stock.incoming_bitrate.rate(arrival)
            results += expected is not None
        now += 33
    assert results > 50


class _Numbered:
    """An RTP packet as aiortc's NACK generator reads it: a sequence number."""

    def __init__(self, seq: int) -> None:
        self.sequence_number = seq


@pytest.mark.parametrize("history", [128, NACK_HISTORY])
def test_the_faster_nack_generator_keeps_aiortcs_missing_set(
    monkeypatch: pytest.MonkeyPatch, history: int
) -> None:
    # The same sequence numbers (in order, lost, reordered, retransmitted late,
    # wrapping at 65536, a jump, duplicates) into aiortc's generator and into
    # one sped up by the seam: after every packet, the same answer and the same
    # missing set (what the NACKs carry), with aiortc's own history (128) and
    # with the tap's, given to aiortc's too.
    import random

    from aiortc.rtcrtpreceiver import NackGenerator

    monkeypatch.setattr(rtcrtpreceiver, "RTP_HISTORY_SIZE", history)
    stock, fast = NackGenerator(), NackGenerator()
    speedups.speed_up_nack(fast, history)
    rng = random.Random(5)  # noqa: S311 - test sequences
    seq, lost_ever, late = 65000, 0, []
    for step in range(20000):
        if step == 8000:
            seq = (seq + 3000) & 0xFFFF  # a jump (a sender restarting its numbering)
        if step % 997 == 0:
            burst = rng.randint(20, 90)  # a burst of loss: dozens missing at once
            lost_ever += burst
            seq = (seq + burst) & 0xFFFF
        elif rng.random() < 0.05:
            late.append(seq)  # lost for now; may come back (a retransmission)
            lost_ever += 1
            seq = (seq + 1) & 0xFFFF
        arrivals = [seq]
        if late and rng.random() < 0.3:
            arrivals.append(late.pop(rng.randrange(len(late))))
        if rng.random() < 0.01:
            arrivals.append(seq)  # a duplicate
        for number in arrivals:
            assert fast.add(_Numbered(number)) == stock.add(_Numbered(number)), step  # type: ignore[arg-type]
            assert fast.missing == stock.missing, step
        seq = (seq + 1) & 0xFFFF
    assert lost_ever > 1000


def test_the_taps_bookkeeping_keeps_aiortcs_statistics_and_missing_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The tap writes out aiortc's StreamStatistics.add and NackGenerator.add
    # for the packet after the newest one: the same sequences (in order, lost,
    # reordered, late, duplicated, wrapping at 65536, a jump) into the tap's
    # bookkeeping and into aiortc's own give, after every packet, the same
    # receiver-report figures and the same missing set.
    import random
    import time

    from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics

    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # both read time.time()
    lean = Lean.__new__(Lean)
    lean.receiver = None
    lean.estimator = None
    lean.active_at, lean.active_ssrc = {}, {}
    lean.remote_streams = {}
    lean.codecs = {96: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)}
    lean.rtx_ssrc = {}
    lean.audio = False
    lean.nack = NackGenerator()
    speedups.speed_up_nack(lean.nack, 128)  # aiortc's own, as ``stock_nack`` has
    lean.nack_asked, lean.nack_at, lean.nack_rtt_ms = {}, 0, 150.0
    lean.repaired_at, lean.repair_ms = collections.deque(maxlen=3), collections.deque(maxlen=64)
    sent: list[object] = []
    lean._spawn = lambda coro: sent.append(coro)  # type: ignore[method-assign]

    class Receiver:
        def _send_rtcp_nack(self, ssrc: int, lost: list[int]) -> object:
            return ("nack", ssrc, lost)

    lean.receiver = Receiver()  # type: ignore[assignment]
    stock_stats, stock_nack = StreamStatistics(90000), NackGenerator()
    rng = random.Random(7)  # noqa: S311 - test sequences
    seq, ts, late = 65000, 2**32 - 9000, []

    def packet(number: int, timestamp: int) -> rtp.Rtp:
        header = bytes([0x80, 96]) + number.to_bytes(2, "big") + timestamp.to_bytes(4, "big")
        # A VP8 keyframe's first packet, so that the first one to arrive asks
        # for nothing before it (``Lean._ask_for_start``, a test of its own).
        return rtp.Rtp(header + (1234).to_bytes(4, "big") + b"\x10\x00payload")

    for step in range(6000):
        if step == 3000:
            seq = (seq + 3000) & 0xFFFF  # a jump
        if rng.random() < 0.04:
            late.append((seq, ts))  # lost for now; may come back
            seq = (seq + 1) & 0xFFFF
        arrivals = [(seq, ts)]
        if late and rng.random() < 0.3:
            arrivals.append(late.pop(rng.randrange(len(late))))
        if rng.random() < 0.01:
            arrivals.append((seq, ts))  # a duplicate
        for number, timestamp in arrivals:
            clock[0] += rng.choice([0.0, 0.0004, 0.003, 0.03])
            ours = packet(number, timestamp)
            lean._bookkeeping(ours, False, int(clock[0] * 1000))
            theirs = packet(number, timestamp)
            stock_stats.add(theirs)  # type: ignore[arg-type]
            stock_nack.add(theirs)  # type: ignore[arg-type]
            stats = lean.remote_streams[1234]
            for name in ("packets_received", "cycles", "max_seq", "base_seq", "_jitter_q4"):
                assert getattr(stats, name) == getattr(stock_stats, name), (step, name)
            assert stats._last_arrival == stock_stats._last_arrival, step
            assert stats._last_timestamp == stock_stats._last_timestamp, step
            assert lean.nack.missing == stock_nack.missing, step
            assert lean.nack.max_seq == stock_nack.max_seq, step
        seq = (seq + 1) & 0xFFFF
        if rng.random() < 0.3:
            ts = (ts + 3000) & 0xFFFFFFFF  # the next frame
    assert stock_stats.cycles == 1 << 16  # it wrapped
    assert sent  # NACKs were asked for


def test_the_tap_decrypts_as_pylibsrtp_does() -> None:
    import os

    import pylibsrtp

    key = os.urandom(30)
    inbound, outbound = pylibsrtp.Policy.SSRC_ANY_INBOUND, pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    sender = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=outbound))
    theirs = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=inbound))
    ours = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=inbound))
    unprotect = rtp.unprotector(ours)
    for seq in range(50):
        plain = bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + os.urandom(seq * 20)
        packet = sender.protect(plain)
        assert unprotect(packet) == theirs.unprotect(packet) == plain
    with pytest.raises(pylibsrtp.Error):
        unprotect(packet)  # a replay, refused as aiortc's session refuses it
    with pytest.raises(pylibsrtp.Error):
        unprotect(packet[:12] + bytes(len(packet) - 12))  # tampered
    with pytest.raises(ValueError):
        unprotect(bytes(1600))


async def test_tapped_sockets_are_read_together_with_the_kernels_arrival_times() -> None:
    # The tap reads its sockets itself, every few milliseconds (asyncio's
    # reader is paused): RTP goes to the tap with the time the kernel received
    # it, anything else (STUN, DTLS) to the protocol as before; closing the
    # transport stops the reading.
    import socket
    import time
    from types import SimpleNamespace

    from media.reading import Reading

    loop = asyncio.get_running_loop()
    rtp: list[tuple[bytes, int, int | None]] = []
    other: list[bytes] = []
    got_both, closed = asyncio.Event(), asyncio.Event()

    class Protocol(asyncio.DatagramProtocol):
        local_candidate = SimpleNamespace(component=1)
        transport: asyncio.DatagramTransport  # (aioice's protocol keeps it too)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: object) -> None:
            other.append(data)
            if rtp:
                got_both.set()

        def connection_lost(self, exc: Exception | None) -> None:
            closed.set()

    transport, protocol = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))

    def data_received(data: bytes, component: int, arrival_us: int | None = None) -> None:
        rtp.append((data, component, arrival_us))
        if other:
            got_both.set()

    reading = Reading()
    reading.take_over(protocol, data_received)
    assert not transport.is_reading()  # asyncio's reader is paused: the tap reads
    address = transport.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sent_us = time.time_ns() // 1000
        sender.sendto(b"\x80\x60rtp", address)
        sender.sendto(b"\x00\x01stun", address)
        async with asyncio.timeout(5):
            await got_both.wait()
    read_us = time.time_ns() // 1000
    [(data, component, arrival_us)] = rtp
    assert (data, component) == (b"\x80\x60rtp", 1)
    assert arrival_us is not None and sent_us - 1000 <= arrival_us <= read_us
    assert other == [b"\x00\x01stun"]
    assert reading.poller is not None
    transport.close()
    async with asyncio.timeout(5):
        await closed.wait()
    assert reading.poller is None  # its last socket went: the timer stopped


def test_a_keyframes_first_packet_is_told_from_the_rest() -> None:
    # What the start of a leg is judged by (``Lean._ask_for_start``).
    vp8, h264 = "video/VP8", "video/H264"
    assert rtp.starts_keyframe(vp8, b"\x10\x00\x9d\x01\x2a")  # S=1, partition 0, key bit 0
    assert not rtp.starts_keyframe(vp8, b"\x10\x01")  # a delta frame
    assert not rtp.starts_keyframe(vp8, b"\x00\x00")  # the middle of a frame
    assert not rtp.starts_keyframe(vp8, b"\x90\x80")  # a descriptor cut short
    assert rtp.starts_keyframe(h264, b"\x18\x00\x04\x67\x42\x00\x1f")  # STAP-A, SPS first
    assert rtp.starts_keyframe(h264, b"\x7c\x85\x88")  # FU-A, first fragment of an IDR
    assert not rtp.starts_keyframe(h264, b"\x7c\x05\x88")  # FU-A, a later fragment
    assert not rtp.starts_keyframe(h264, b"\x41\x9a")  # a non-IDR slice
    assert not rtp.starts_keyframe(h264, b"")
    assert not rtp.starts_keyframe(vp8, b"\x11\x00\x9d")  # S=1 but partition 1
    assert not rtp.starts_keyframe(vp8, b"")


def test_the_vp8_picture_id_is_read_as_aiortc_reads_it() -> None:
    from aiortc.codecs.vpx import VpxPayloadDescriptor

    payloads = [
        b"\x90\x80\x85\x39\x00",  # X, S; I; a 15-bit id (0x0539)
        b"\x80\x80\x7f\x00",  # X; I; a 7-bit id
        b"\x90\xa0\x85\x39\x07\x00",  # X, S; I and K (tl0picidx after the id)
        b"\x90\x40\x07\x00",  # X, S; L only: no picture id
        b"\x10\x00\x9d",  # no extension
    ]
    for payload in payloads:
        descriptor, _ = VpxPayloadDescriptor.parse(payload)
        assert rtp.vp8_picture_id(payload) == descriptor.picture_id, payload
    assert rtp.vp8_picture_id(b"\x90\x80\x85") is None  # cut short
    # Frames lost whole between two picture ids, across each wrap.
    assert rtp.pictures_skipped(5, 6) == 0
    assert rtp.pictures_skipped(5, 8) == 2
    assert rtp.pictures_skipped(0x7FFF, 0) == 0
    assert rtp.pictures_skipped(0x7F, 0) == 0
    assert rtp.pictures_skipped(0x7FFE, 1) == 2


def test_the_faster_nack_truncation_forgets_a_number_given_up_elsewhere() -> None:
    # The tap gives up a number by discarding it from the missing set. The
    # faster truncation kept it as "the oldest missing", and half the sequence
    # space later (where 16-bit comparisons turn round) it skipped every pass:
    # a newer loss stayed asked for long after aiortc would have dropped it.
    from aiortc.rtcrtpreceiver import NackGenerator

    ours, stock = NackGenerator(), NackGenerator()
    speedups.speed_up_nack(ours, 128)  # aiortc's own history, as ``stock`` has

    def arrive(seq: int) -> None:
        seq &= 0xFFFF
        stock.add(_Numbered(seq))
        if ours.max_seq is not None and seq == (ours.max_seq + 1) & 0xFFFF:
            # The tap's path for the next packet (``Lean._bookkeeping``).
            ours.max_seq = seq
            if ours.missing:
                ours.truncate()
        else:
            ours.add(_Numbered(seq))

    arrive(98)
    arrive(100)  # 99 goes missing
    for nack in (ours, stock):
        nack.missing.discard(99)  # given up (``Lean._ask``)
    seq = 100
    for seq in range(101, 101 + 33_000):  # in order: nothing goes missing
        arrive(seq)
    arrive(seq + 2)  # a new loss
    for later in range(seq + 3, seq + 300):
        arrive(later)
    assert ours.missing == stock.missing == set()
