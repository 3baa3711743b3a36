"""Transport-wide congestion-control feedback (media/twcc.py).

The packets are read back with a parser written from the draft
(draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1), as
Chromium's sender reads them: which numbers arrived and when, to the 250 µs.
That Chromium understands them is checked in a real browser
(tests/e2e/test_uplink_feedback_browser.py).
"""

from __future__ import annotations

import itertools
import random
import struct
import threading
import time
import types
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media import twcc
from media.twcc import TransportFeedback

SENDER, MEDIA = 0x11111111, 0x22222222


def parse(packet: bytes) -> tuple[int, dict[int, int | None]]:
    """(feedback count, {16-bit sequence number: arrival in µs or None if lost})."""
    first, pt, length = struct.unpack_from("!BBH", packet)
    assert first >> 6 == 2 and first & 0x1F == 15 and pt == 205
    assert len(packet) == 4 * (length + 1)
    end = len(packet) - (packet[-1] if first & 0x20 else 0)
    sender, media, base, count, ref_and_count = struct.unpack_from("!IIHHI", packet, 4)
    assert sender == SENDER and media == MEDIA
    reference = ref_and_count >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    pos, symbols = 20, list[int]()
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", packet, pos)
        pos += 2
        if not chunk & 0x8000:  # run length
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # 14 one-bit symbols
            symbols += [(chunk >> (13 - k)) & 1 for k in range(14)]
        else:  # 7 two-bit symbols
            symbols += [(chunk >> (12 - 2 * k)) & 3 for k in range(7)]
    symbols = symbols[:count]
    at = reference * 64_000
    out: dict[int, int | None] = {}
    for i, symbol in enumerate(symbols):
        seq = (base + i) & 0xFFFF
        if symbol == 0:
            out[seq] = None
            continue
        if symbol == 1:
            delta = packet[pos]
            pos += 1
        else:
            assert symbol == 2
            (delta,) = struct.unpack_from("!h", packet, pos)
            pos += 2
        at += delta * 250
        out[seq] = at
    assert pos == end, "bytes left after the receive deltas"
    return ref_and_count & 0xFF, out


def test_arrivals_and_losses_come_back_as_sent_across_a_wrap() -> None:
    feedback = TransportFeedback(5)
    rng = random.Random(3)  # noqa: S311 - test arrivals
    sent: dict[int, int | None] = {}
    at = 10_000_000_000
    reports: list[bytes] = []
    for n in range(3000):
        seq = (65000 + n) & 0xFFFF
        at += rng.choice([0, 100, 1_000, 5_000, 20_000, 70_000])  # bursts and pauses
        if rng.random() < 0.07:
            sent[seq] = None
        else:
            feedback.add(seq, MEDIA, at)
            sent[seq] = at
        if n % 97 == 0:
            reports += feedback.build(SENDER)
    reports += feedback.build(SENDER)
    seen: dict[int, int | None] = {}
    counts = []
    for packet in reports:
        count, arrivals = parse(packet)
        counts.append(count)
        assert not set(arrivals) & set(seen), "a number reported twice"
        seen.update(arrivals)
    assert counts == [n & 0xFF for n in range(len(counts))]
    assert set(seen) <= set(sent)
    for seq, arrival in seen.items():
        if sent[seq] is None:
            assert arrival is None, seq
        else:
            assert arrival is not None and abs(arrival - sent[seq]) <= 125, seq  # type: ignore[operator]
    received = {s for s, a in sent.items() if a is not None}
    assert received <= set(seen), "a packet that arrived was never reported"
    assert feedback.lost == sum(1 for a in seen.values() if a is None)


def test_a_late_packet_after_its_report_and_a_long_pause_are_handled() -> None:
    feedback = TransportFeedback(5)
    feedback.add(10, MEDIA, 1_000_000)
    feedback.add(12, MEDIA, 1_001_000)
    (first,) = feedback.build(SENDER)
    assert parse(first)[1] == {10: 1_000_000, 11: None, 12: 1_001_000}
    feedback.add(11, MEDIA, 1_002_000)  # too late: already reported lost
    assert feedback.build(SENDER) == []
    # Twenty seconds of nothing do not fit a receive delta: a new reference.
    feedback.add(13, MEDIA, 21_001_000)
    feedback.add(14, MEDIA, 21_001_100)
    (second,) = feedback.build(SENDER)
    assert parse(second)[1] == {13: 21_001_000, 14: 21_001_000}  # 100 µs rounds down


def test_a_hole_longer_than_a_packet_is_skipped_and_feedback_goes_on() -> None:
    # Seconds with nothing from the browser (a stalled uplink: 150 packets a
    # second of audio and video) leave more numbers missing than one feedback
    # packet holds. The builder once went round for ever on such a hole, a media
    # worker at full CPU: it is run in a thread here so that a regression fails.
    feedback = TransportFeedback(5)
    feedback.add(10, MEDIA, 1_000_000)
    (first,) = feedback.build(SENDER)
    assert parse(first)[1] == {10: 1_000_000}
    feedback.add(10 + 1 + twcc.MAX_STATUSES + 50, MEDIA, 4_000_000)
    feedback.add(10 + 2 + twcc.MAX_STATUSES + 50, MEDIA, 4_000_500)
    built: list[list[bytes]] = []
    thread = threading.Thread(target=lambda: built.append(feedback.build(SENDER)), daemon=True)
    thread.start()
    thread.join(10)
    assert built, "build() did not return"
    (second,) = built[0]
    after = 10 + 1 + twcc.MAX_STATUSES + 50
    assert parse(second)[1] == {after: 4_000_000, after + 1: 4_000_500}
    assert feedback.lost == after - 11
    assert feedback.build(SENDER) == []


def test_a_long_run_of_packets_is_split_over_packets_of_bounded_size() -> None:
    feedback = TransportFeedback(5)
    for n in range(1000):
        feedback.add(n, MEDIA, 5_000_000 + n * 300)
    reports = feedback.build(SENDER)
    assert len(reports) == 3 and all(len(p) <= 1200 for p in reports)
    merged: dict[int, int | None] = {}
    for packet in reports:
        merged.update(parse(packet)[1])
    assert sorted(merged) == list(range(1000)) and None not in merged.values()


def test_the_sequence_number_is_read_from_one_and_two_byte_extensions() -> None:
    one = bytes([0x10, 0xAA, 0x51, 0x12, 0x34, 0x00])  # id 1 (1 byte), id 5 (2 bytes)
    assert twcc.extension_value((0xBEDE, one), 5) == 0x1234
    assert twcc.extension_value((0xBEDE, one), 3) is None
    two = bytes([1, 1, 0xAA, 5, 2, 0x12, 0x35])
    assert twcc.extension_value((0x1000, two), 5) == 0x1235
    assert twcc.extension_value(None, 5) is None


# What Chromium offers for a camera and a microphone (trimmed to the lines
# that matter: bundle, the extension in both sections, per-codec feedback).
CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendonly",
        "a=msid:- a1",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1001 cname:x",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        "a=mid:1",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendonly",
        "a=msid:- v1",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc-group:FID 2001 2002",
        "a=ssrc:2001 cname:x",
        "a=ssrc:2002 cname:x",
        "",
    ]
)


async def test_aiortcs_answer_asks_for_transport_wide_feedback_instead_of_remb() -> None:
    assert twcc.transport_cc_id(CHROME_OFFER) == 3
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=CHROME_OFFER, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
    finally:
        await pc.close()
    assert "goog-remb" in answer and twcc.URI not in answer  # aiortc's own
    munged = twcc.with_transport_cc(answer, CHROME_OFFER)
    sections = munged.split("\r\nm=")[1:]
    assert len(sections) == 2
    for section in sections:
        assert f"a=extmap:3 {twcc.URI}" in section.split("\r\n")
        assert "goog-remb" not in section
    assert "a=rtcp-fb:111 transport-cc" in sections[0].split("\r\n")
    assert "a=rtcp-fb:96 transport-cc" in sections[1].split("\r\n")
    assert "a=rtcp-fb:97 transport-cc" not in munged  # not offered for RTX
    # aiortc itself reads the munged answer (as a remote description would be).
    other = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await other.setRemoteDescription(RTCSessionDescription(sdp=munged, type="offer"))
    finally:
        await other.close()
    # An offer without the extension (an older browser) leaves the answer alone.
    assert twcc.with_transport_cc(answer, answer) == answer


async def test_one_timer_sends_every_legs_feedback_until_each_connection_ends() -> None:
    # Every tapped leg of a recorder is sent its feedback by one timer, every
    # INTERVAL; a leg whose connection ended stops, the others go on, and the
    # timer goes with the last one.
    import asyncio

    from media import tap
    from media.reading import Reading

    sends: dict[str, int] = {"short": 0, "long": 0}
    reading = Reading()

    def leg(name: str, connection_lasts: int) -> tap.RtpTap:
        one = tap.RtpTap(reading)
        one.feedback = TransportFeedback(3)
        one.leans = {name: None}  # type: ignore[dict-item]

        async def send_now() -> bool:
            sends[name] += 1
            return sends[name] < connection_lasts  # False: the connection has ended

        one._send_feedback_now = send_now  # type: ignore[method-assign]
        return one

    loop = asyncio.get_running_loop()
    short, long = leg("short", 3), leg("long", 6)
    started = loop.time()
    async with asyncio.timeout(10):
        ending_short = asyncio.ensure_future(short.send_feedback())
        ending_long = asyncio.ensure_future(long.send_feedback())
        await ending_short
        assert len(reading.feedback) == 1  # the long one
        clock = reading.clock
        await ending_long
    assert sends == {"short": 3, "long": 6}
    assert loop.time() - started >= 6 * twcc.INTERVAL * 0.9  # one send per interval
    assert clock is not None
    async with asyncio.timeout(5):
        await clock  # its next tick finds no leg: it ends
    assert reading.clock is None and not reading.feedback


async def test_a_leg_whose_feedback_fails_does_not_stop_the_others() -> None:
    # The timer is shared: a send that raised (an SRTP or TURN error) ended the
    # timer itself, and every other leg's browser got no feedback from then on.
    import asyncio

    from media import tap
    from media.reading import Reading

    reading = Reading()
    sends = {"broken": 0, "fine": 0}

    def leg(name: str, send_now: Any) -> tap.RtpTap:
        one = tap.RtpTap(reading)
        one.feedback = TransportFeedback(3)
        one.leans = {name: None}  # type: ignore[dict-item]
        one._send_feedback_now = send_now  # type: ignore[method-assign]
        return one

    async def broken() -> bool:
        sends["broken"] += 1
        raise RuntimeError("srtp_protect failed")

    async def fine() -> bool:
        sends["fine"] += 1
        return sends["fine"] < 5

    async with asyncio.timeout(10):
        ending_broken = asyncio.ensure_future(leg("broken", broken).send_feedback())
        ending_fine = asyncio.ensure_future(leg("fine", fine).send_feedback())
        await ending_broken  # its feedback ends, without an error to its leg
        await ending_fine
    assert sends == {"broken": 1, "fine": 5}


def test_packets_held_until_the_handshake_ends_keep_the_time_they_came() -> None:
    # The far side may finish DTLS first and send media while this side's
    # handshake waits for a lost flight (up to OpenSSL's 1 s timer). The tap
    # holds that media until the keys are known; its transport feedback must
    # say when each packet came, not when it was taken: otherwise the
    # browser's estimator reads a second of video as one burst.
    #
    # aiortc's DTLS transport, ICE connection and router are stood in for
    # (their handshake cannot be made to end late on demand); the SRTP, the
    # packets and the feedback are the real ones.
    import pylibsrtp

    from media import tap
    from media.reading import Reading

    key = bytes(range(30))
    policy = pylibsrtp.Policy(key=key, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.ssrc_type = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    outbound = pylibsrtp.Session(policy)
    policy = pylibsrtp.Policy(key=key, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.ssrc_type = pylibsrtp.Policy.SSRC_ANY_INBOUND
    inbound = pylibsrtp.Session(policy)

    def packet(n: int) -> bytes:
        # VP8 payload type 96, with the transport-wide number n (extension id 3).
        header = struct.pack("!BBHII", 0x90, 96, 1000 + n, 3000 * n, MEDIA)
        extension = struct.pack("!HHBHB", 0xBEDE, 1, (3 << 4) | 1, n, 0)
        return outbound.protect(header + extension + b"\x10\x00\x00\x9d\x01\x2a" + bytes(40))

    handled: list[int] = []
    arrivals_seen: list[float | None] = []

    class Lean:
        def handle(self, packet: Any, plain: bytes, arrival_ms: int, arrival: Any) -> None:
            handled.append(packet.sequence_number)
            arrivals_seen.append(arrival)

    class Connection:
        def data_received(self, data: bytes, component: int) -> None:
            raise AssertionError("RTP went aiortc's way")

    class Router:
        def route_rtp(self, packet: Any) -> str:
            return "receiver" if packet.ssrc == MEDIA and packet.payload_type == 96 else ""

    class Dtls:
        _rx_srtp: Any = None
        _rtp_router = Router()

        class transport:  # aiortc's attribute
            _connection = Connection()

    class PeerConnection:  # no transceivers: no keys before the handshake's end here
        def getTransceivers(self) -> list[Any]:
            return []

    reading = Reading()
    one = tap.RtpTap(reading)
    one.feedback = feedback = TransportFeedback(3)
    one.leans = {"receiver": Lean()}  # type: ignore[dict-item]
    dtls = Dtls()
    one._divert(dtls, PeerConnection())  # type: ignore[arg-type]
    deliver = dtls.transport._connection.data_received

    # Five packets 100 ms apart (the kernel's receive times, wall clock, with
    # the poller's offset to the monotonic clock) while the handshake is not
    # done, then the keys, then one more.
    reading.offset_us = time.time_ns() // 1000 - time.monotonic_ns() // 1000
    came = time.time_ns() // 1000 - 1_000_000
    for n in range(5):
        deliver(packet(n), 1, came + 100_000 * n)
    assert handled == [] and feedback.arrivals == {}
    dtls._rx_srtp = inbound
    deliver(packet(5), 1, came + 500_000)

    assert handled == [1000 + n for n in range(6)]
    # The rest of the leg (the packet log's wait for a hole, the NACKs) takes
    # the held packets as arriving now, as before: counted from when they came,
    # a hole among them would be given up before its retransmission could come.
    assert arrivals_seen[:5] == [None] * 5
    assert arrivals_seen[5] == (came + 500_000 - reading.offset_us) / 1e6
    arrivals = [feedback.arrivals[n] for n in range(6)]
    steps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert steps == [100_000] * 5, arrivals
    assert arrivals[0] == came - reading.offset_us  # the monotonic clock the feedback keeps

    # Through TURN no receive time comes with a packet (and the poller may not
    # have run yet): a held one is stamped when it came, not when it is taken.
    reading.offset_us = 0
    dtls._rx_srtp = None
    before = time.monotonic_ns() // 1000
    deliver(packet(6), 1)
    after = time.monotonic_ns() // 1000
    dtls._rx_srtp = inbound
    time.sleep(0.1)  # the handshake ends a while later (time passing, not a condition)
    deliver(packet(7), 1)
    assert before <= feedback.arrivals[6] <= after + 1_000
    assert feedback.arrivals[7] - feedback.arrivals[6] >= 90_000


def test_the_clocks_offset_is_read_from_the_tightest_bracket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel's receive times are wall clock; the feedback keeps the
    # monotonic one. A thread switch between reading the two clocks put a held
    # packet's time 1.5 ms off in a CI run. The wall clock is read between two
    # monotonic reads, and a bracket a switch widened is not the one kept.
    from media import reading

    offset_ns = 1_700_000_000_000_000_000  # wall - monotonic, as the clocks have it
    reads = iter(
        [
            (0, offset_ns + 4_900_000, 5_000_000),  # switched out 5 ms before the wall read
            (10_000_000, offset_ns + 10_000_500, 10_001_000),  # 1 µs wide
            (20_000_000, offset_ns + 20_000_000, 20_000_000),  # not read: close enough before
        ]
    )
    pending: list[int] = []

    def monotonic_ns() -> int:
        if not pending:
            before, wall, after = next(reads)
            pending[:] = [wall, after]
            return before
        return pending.pop()

    def time_ns() -> int:
        return pending.pop(0)

    clocks = types.SimpleNamespace(monotonic_ns=monotonic_ns, time_ns=time_ns)
    monkeypatch.setattr(reading, "time", clocks)
    assert reading.clock_offset_us() == offset_ns // 1000
    assert next(reads)[0] == 20_000_000  # the third try was not needed
