"""The packet log and frame assembly of the lean recording path (media/packets.py).

Packets are made as aiortc's VP8 sender makes them (its payloader), then lost,
reordered, resent and torn; the files are reopened and decoded with PyAV.
"""

from __future__ import annotations

import fractions
import random
import time
from pathlib import Path

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder

from media import packets
from media.assembler import MAX_LOSSES, FrameAssembler, describe
from media.packets import PacketWriter
from media.seam import EncodedFrame, KeptPacket

FRAMES = 90  # 3 s at 30 fps, a keyframe every 30


@pytest.fixture(scope="module")
def vp8_frames() -> list[bytes]:
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.gop_size = 30
    ctx.options = {"deadline": "realtime", "cpu-used": "8"}
    rng = random.Random(1)  # noqa: S311 - test pictures
    out: list[bytes] = []
    for i in range(FRAMES):
        frame = av.VideoFrame(width=320, height=240, format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes(rng.getrandbits(8) for _ in range(64)) * (plane.buffer_size // 64))
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    out += [bytes(p) for p in ctx.encode(None)]
    return out


def packetize(frames: list[bytes], t0: float, seq0: int = 65530) -> list[KeptPacket]:
    """VP8 frames as aiortc sends them (several packets each, marker on the last),
    with Opus-sized audio packets in between; sequence numbers and timestamps wrap."""
    out: list[KeptPacket] = []
    seq, aseq = seq0, 0
    for i, frame in enumerate(frames):
        at = t0 + i / 30
        payloads = Vp8Encoder._packetize(frame + bytes(2000), i)  # >= 2 packets each
        ts = (2**32 - 6000 + i * 3000) % 2**32
        for k, payload in enumerate(payloads):
            out.append((at, False, k == len(payloads) - 1, seq % 65536, ts, payload))
            seq += 1
        if i % 3 == 0:
            for _ in range(2):
                out.append((at, True, False, aseq, aseq * 960, b"\xfc\xff\xfe"))
                aseq += 1
    return out


def test_frames_come_back_whole_in_order_across_wraps(vp8_frames: list[bytes]) -> None:
    kept = packetize(vp8_frames, 100.0)
    video = [p for p in kept if not p[1]]
    # Reorder neighbours, resend a few (duplicates), keep every packet.
    rng = random.Random(7)  # noqa: S311 - test reordering
    shuffled = video[:]
    for i in range(0, len(shuffled) - 1, 5):
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    shuffled += rng.sample(video, 10)
    assembler = FrameAssembler("vp8", "video")
    frames = []
    for arrival, _, marker, seq, ts, payload in shuffled:
        assembler.add(arrival, marker, seq, ts, payload)
        frames += assembler.drain()
    frames += assembler.drain(final=True)
    assert [f.data for f in frames] == [f + bytes(2000) for f in vp8_frames]
    assert [f.timestamp for f in frames] == [3000 * i for i in range(len(vp8_frames))]
    assert frames[0].keyframe and assembler.lost_frames == 0


def test_a_leg_that_begins_with_its_keyframe_is_written_at_once(vp8_frames: list[bytes]) -> None:
    # A page begins with a keyframe. When its first packet is the first to
    # arrive, the numbers before it are not waited for: each frame comes out
    # as its last packet arrives. They were (REORDER_SECONDS), so every leg's
    # first frames reached the writer 2 s late; the leg took that for a lost
    # keyframe and asked for another, and on a busy CI machine that keyframe
    # made the browser's pacer drop the 5 frames it held (the township smoke
    # test's 6 s call held 98.1 % of what the page sent, 2026-12-04).
    video = [p for p in packetize(vp8_frames, 100.0) if not p[1]]
    assembler = FrameAssembler("vp8", "video")
    frames, ended = [], 0
    for arrival, _, marker, seq, ts, payload in video:
        assembler.add(arrival, marker, seq, ts, payload)
        frames += assembler.drain()
        ended += marker
        assert len(frames) == ended  # nothing waits
    assert frames[0].keyframe and assembler.lost_frames == 0

    # The keyframe's first packet lost and resent a second later: the first
    # to arrive is its second, and the numbers before it are waited for.
    resent: KeptPacket = (video[0][0] + 1.0, *video[0][1:])
    assembler = FrameAssembler("vp8", "video")
    frames = []
    for arrival, _, marker, seq, ts, payload in sorted([*video[1:], resent], key=lambda p: p[0]):
        assembler.add(arrival, marker, seq, ts, payload)
        frames += assembler.drain()
    frames += assembler.drain(final=True)
    assert [f.timestamp // 3000 for f in frames] == list(range(len(vp8_frames)))
    assert frames[0].keyframe and assembler.lost_frames == 0


@pytest.mark.parametrize("lost_frame", [10, 30])  # a delta frame; a keyframe
def test_a_frame_never_completed_stops_the_video_until_the_next_keyframe(
    vp8_frames: list[bytes], lost_frame: int
) -> None:
    # The frames after a lost one may reference it: written, they decode to
    # garbage, and after a lost keyframe FFmpeg refuses every one of them (a
    # township call's recording held such frames). They are left out up to
    # the next keyframe (every 30 frames here), which the writer asks for.
    video = [p for p in packetize(vp8_frames, 100.0) if not p[1]]
    ts = (video[0][4] + lost_frame * 3000) % 2**32
    lost = [i for i, p in enumerate(video) if p[4] == ts]
    assembler = FrameAssembler("vp8", "video")
    frames = []
    for i, (arrival, _, marker, seq, ts_, payload) in enumerate(video):
        if i != lost[len(lost) // 2]:  # a packet in the middle, never resent
            assembler.add(arrival, marker, seq, ts_, payload)
            frames += assembler.drain()
    frames += assembler.drain(final=True)
    next_key = (lost_frame // 30 + 1) * 30
    kept = [f.timestamp // 3000 for f in frames]
    assert kept == [n for n in range(len(vp8_frames)) if not lost_frame <= n < next_key]
    assert assembler.lost_frames == next_key - lost_frame and not assembler.broken
    # The leg's log says why, when, and what it cost: the frame given up when
    # the hole had waited its time, the frames after it up to the keyframe.
    after_hole = video[lost[len(lost) // 2] + 1][0]
    (loss,) = assembler.losses
    assert (loss.at, loss.frames, loss.cause) == (after_hole, 1, "hole")
    assert loss.after == next_key - lost_frame - 1
    assert describe(assembler.losses, 100.0) == (
        f"1 at {after_hole - 100:.2f} s (hole), then {loss.after} up to a keyframe"
    )
    assert not assembler.losses_full
    decoder = av.CodecContext.create("vp8", "r")
    for frame in frames:
        decoder.decode(av.Packet(frame.data))  # raises InvalidDataError on a refused frame


def test_a_frame_whose_rest_the_sender_dropped_is_not_written(vp8_frames: list[bytes]) -> None:
    # libwebrtc's pacer drops a stream's queued packets when a keyframe comes,
    # before they are numbered: frame 29's first packet went, its others never
    # did, and frame 30 (a keyframe) follows with the next number. Written,
    # frame 29 decoded to an earlier frame's picture (4-party township calls).
    video = [p for p in packetize(vp8_frames, 100.0) if not p[1]]
    ts = (video[0][4] + 29 * 3000) % 2**32
    cut = [i for i, p in enumerate(video) if p[4] == ts][1:]
    sent = [p for i, p in enumerate(video) if i not in cut]
    # Frame 0 comes 2.5 s before the others: the few numbers the assembler waits
    # for before the first packet are given up with frame 1, and from then on
    # each frame comes out as its last packet arrives, as in a call.
    sent = [
        (p[0] + (2.5 if p[4] != video[0][4] else 0), p[1], p[2], (video[0][3] + k) % 65536, *p[4:])
        for k, p in enumerate(sent)
    ]
    assembler = FrameAssembler("vp8", "video")
    frames = []
    broken = False
    for arrival, _, marker, seq, ts_, payload in sent:
        assembler.add(arrival, marker, seq, ts_, payload)
        frames += assembler.drain()
        broken |= assembler.broken
        if ts_ == (ts + 3000) % 2**32 and marker:
            assert frames[-1].keyframe  # frame 30, out as soon as it came whole
    frames += assembler.drain(final=True)
    assert [f.timestamp // 3000 for f in frames] == [n for n in range(len(vp8_frames)) if n != 29]
    assert assembler.lost_frames == 1 and frames[29].keyframe
    assert [(loss.frames, loss.cause, loss.after) for loss in assembler.losses] == [
        (1, "unfinished", 0)
    ]
    # The keyframe that follows is in hand: none is asked for (the writer asks
    # while ``broken``). Asking made the browser flush the next frame in turn.
    assert not broken


def test_fec_packets_places_in_the_sequence_hold_nothing_up(vp8_frames: list[bytes]) -> None:
    # With ULPFEC (media/ulpfec.py) a FEC packet after each frame takes a
    # sequence number of the stream; the tap keeps its place as an empty
    # payload. Without it each would be a hole the file waits 2 s for.
    video = [p for p in packetize(vp8_frames, 100.0) if not p[1]]
    with_fec: list[KeptPacket] = []
    seq = video[0][3]
    for arrival, audio, marker, _, ts, payload in video:
        with_fec.append((arrival, audio, marker, seq, ts, payload))
        seq = (seq + 1) % 65536
        if marker:
            with_fec.append((arrival, audio, False, seq, ts, b""))
            seq = (seq + 1) % 65536

    def written(packets: list[KeptPacket]) -> list[int]:
        assembler = FrameAssembler("vp8", "video")
        out = []
        for arrival, _, marker, number, ts, payload in packets:
            assembler.add(arrival, marker, number, ts, payload)
            out += [f.timestamp // 3000 for f in assembler.drain()]  # nothing final
        assert assembler.lost_frames == 0
        return out

    assert written(with_fec) == list(range(len(vp8_frames)))
    # Had the FEC packets not been kept, the file would still be waiting for
    # them (each hole waits for 2 s of newer arrivals; these are 3 s).
    assert len(written([p for p in with_fec if p[5]])) < len(vp8_frames) // 2


def test_a_frame_whose_first_packet_never_came_is_told_once(vp8_frames: list[bytes]) -> None:
    # Frame 12's first packet is never resent: the hole is given up, the rest
    # of the frame is left out, and the loss is told once, by the picture id's
    # jump at frame 13, as the hole's.
    video = [p for p in packetize(vp8_frames, 100.0) if not p[1]]
    ts = (video[0][4] + 12 * 3000) % 2**32
    first = next(i for i, p in enumerate(video) if p[4] == ts)
    assembler = FrameAssembler("vp8", "video")
    frames = []
    for i, (arrival, _, marker, seq, ts_, payload) in enumerate(video):
        if i != first:
            assembler.add(arrival, marker, seq, ts_, payload)
            frames += assembler.drain()
    frames += assembler.drain(final=True)
    assert [f.timestamp // 3000 for f in frames] == [n for n in range(90) if not 12 <= n < 30]
    assert [(loss.frames, loss.cause, loss.after) for loss in assembler.losses] == [
        (1, "hole, jump", 17)
    ]


def assemble_without(
    vp8_frames: list[bytes], lost: set[int]
) -> tuple[FrameAssembler, list[EncodedFrame]]:
    """The video with every packet of the frames numbered in ``lost`` gone, and
    numbered again as a sender that never sent them would have: no hole in the
    sequence numbers, only VP8's picture id tells."""
    video = [p for p in packetize(vp8_frames, 100.0) if not p[1]]
    lost_ts = {(video[0][4] + n * 3000) % 2**32 for n in lost}
    assembler = FrameAssembler("vp8", "video")
    frames = []
    shift = 0
    for arrival, _, marker, seq, ts, payload in video:
        if ts in lost_ts:
            shift += 1
            continue
        assembler.add(arrival, marker, (seq - shift) % 65536, ts, payload)
        frames += assembler.drain()
    frames += assembler.drain(final=True)
    return assembler, frames


def test_a_frame_lost_whole_is_told_by_the_picture_id(vp8_frames: list[bytes]) -> None:
    # Every packet of frame 40 is lost: no hole in the sequence numbers tells
    # it from padding the sender skipped, but VP8's picture id jumps.
    assembler, frames = assemble_without(vp8_frames, {40})
    kept = [f.timestamp // 3000 for f in frames]
    assert kept == [n for n in range(len(vp8_frames)) if not 40 <= n < 60]
    assert assembler.lost_frames == 20
    assert [(loss.frames, loss.cause, loss.after) for loss in assembler.losses] == [(1, "jump", 19)]


@pytest.mark.parametrize("losses", [MAX_LOSSES, MAX_LOSSES + 1])
def test_the_log_says_and_more_only_when_losses_came_past_those_kept(
    vp8_frames: list[bytes], losses: int
) -> None:
    # Every other frame from frame 1 (the keyframes, 30 and 60, come).
    assembler, _ = assemble_without(vp8_frames, {1 + 2 * k for k in range(losses)})
    assert len(assembler.losses) == MAX_LOSSES
    assert all(loss.cause == "jump" for loss in assembler.losses)
    assert assembler.losses_full == (losses > MAX_LOSSES)
    said = describe(assembler.losses, 100.0, more=assembler.losses_full)
    assert said.count(" (jump)") == MAX_LOSSES
    assert said.endswith("; and more") == (losses > MAX_LOSSES)


def decode(path: Path) -> tuple[int, int, float]:
    with av.open(str(path)) as container:
        duration = (container.duration or 0) / 1e6
        video = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        audio = sum(1 for _ in container.decode(audio=0))
    return video, audio, duration


def test_the_writer_makes_the_final_file_as_it_goes(
    tmp_path: Path, vp8_frames: list[bytes]
) -> None:
    partial = tmp_path / "p-part1.webm.partial"
    t0 = time.monotonic()
    writer = PacketWriter(partial, video_codec="vp8", audio=True, t0=t0)
    for n, packet in enumerate(packetize(vp8_frames, t0 + 0.5)):
        writer.keep(packet)
        if n % 20 == 0:
            writer.flush()
    stats = writer.close()
    assert packets.is_packet_log(partial) and packets.muxing_name(partial).exists()
    finished = packets.finish(stats)
    assert finished.path == tmp_path / "p-part1.webm" and not partial.exists()
    assert not packets.muxing_name(partial).exists()
    assert abs(stats.first_media_offset - 0.5) < 0.01  # type: ignore[operator]
    video, audio, duration = decode(finished.path)
    assert video == len(vp8_frames) == finished.video_packets
    assert audio == finished.audio_packets > 0
    assert abs(duration - len(vp8_frames) / 30) < 0.2


def test_a_torn_packet_log_is_made_into_a_playable_file(
    tmp_path: Path, vp8_frames: list[bytes]
) -> None:
    # What a kill -9 leaves: the log cut in the middle of a record, a half
    # made container beside it, the start note.
    partial = tmp_path / "p-part1.webm.partial"
    t0 = time.monotonic()
    writer = PacketWriter(partial, video_codec="vp8", audio=True, t0=t0)
    for packet in packetize(vp8_frames, t0 + 0.25):
        writer.keep(packet)
    writer.close()
    data = partial.read_bytes()
    partial.write_bytes(data[: len(data) * 2 // 3 + 7])
    packets.muxing_name(partial).write_bytes(b"half a container")
    finished = packets.convert(partial)
    video, audio, _ = decode(finished.path)
    assert 0.5 * len(vp8_frames) < video < len(vp8_frames)
    assert audio > 0 and not partial.exists() and not packets.muxing_name(partial).exists()


def test_a_frame_completed_late_by_a_retransmission_keeps_its_place(
    tmp_path: Path, vp8_frames: list[bytes]
) -> None:
    # What a 150 ms round trip with loss does (the township 5 %-loss profile):
    # the first packet of frame 10 is lost and resent after a NACK, so it
    # arrives after frames 11-14 have. Frame 10 must still be written before
    # them: a VP8 frame decoded out of order breaks every frame up to the next
    # keyframe (FFmpeg's decoder refuses them; libvpx draws garbage).
    partial = tmp_path / "p-part1.webm.partial"
    t0 = time.monotonic()
    kept = packetize(vp8_frames, t0 + 0.5)
    frame_10 = (kept[0][4] + 10 * 3000) % 2**32
    first = next(i for i, p in enumerate(kept) if not p[1] and p[4] == frame_10)
    resent = (kept[first][0] + 0.15, *kept[first][1:])
    late = next(i for i, p in enumerate(kept) if p[0] >= resent[0])
    kept = kept[:first] + kept[first + 1 : late] + [resent] + kept[late:]
    writer = PacketWriter(partial, video_codec="vp8", audio=True, t0=t0)
    for n, packet in enumerate(kept):
        writer.keep(packet)
        if n % 20 == 0:
            writer.flush()
    finished = packets.finish(writer.close())
    written, refused = [], 0
    with av.open(str(finished.path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                written.append(bytes(packet))
                try:
                    stream.codec_context.decode(packet)
                except av.error.InvalidDataError:
                    refused += 1
    assert written == [f + bytes(2000) for f in vp8_frames]
    assert refused == 0
