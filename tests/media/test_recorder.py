"""The recorder against real aiortc peers (in another process) sending VP8/H.264 + Opus.

The files are reopened and decoded with PyAV, as a reviewer's player would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
import uvloop

from media import leg as leg_module
from media.leg import LegResult, RecordingKey
from media.packets import PacketWriter
from media.recorder import Recorder

from ..senderproc import from_host, start_sender

SENDER = Path(__file__).with_name("sender.py")


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    rec = Recorder(tmp_path / "recordings", host_addresses=["127.0.0.1"], keyframe_interval=2.0)
    yield rec
    await rec.close()


async def send(
    recorder: Recorder,
    key: RecordingKey,
    *args: str,
    ended_by_recorder: bool = False,
    drain: bool = True,
    mid_frame: bool = False,
    settle: bool = False,
) -> tuple[dict[str, Any], LegResult | None]:
    """Run the sender process through one recording leg; return what it sent.

    With ``ended_by_recorder`` the recorder ends the leg, as a call's end does
    (the sender sends nothing new and answers NACKs until the recorder has
    closed the leg), and the leg's result comes back too; otherwise the sender
    closes its connection itself and the caller stops the leg. ``drain`` is
    passed to ``Recorder.stop``, and ``settle``. With ``mid_frame`` (the sender's
    ``--end-mid-frame``) the rest of the frame the sender held back goes out
    once the recorder has begun to end the leg.
    """
    extra = ("--ended-by-recorder",) if ended_by_recorder else ()
    proc = await start_sender(from_host(recorder, key), SENDER, *args, *extra)
    assert proc.stdin and proc.stdout
    result = None
    try:
        async with asyncio.timeout(60):
            if ended_by_recorder:
                assert json.loads(await proc.stdout.readline()) == {"ending": True}
                # The leg still runs: on asyncio's loop the recorder reads its
                # sockets itself; uvloop's (a media worker's) reads them for it.
                uvloop_reads = isinstance(asyncio.get_running_loop(), uvloop.Loop)
                assert (recorder.reading.poller is None) == uvloop_reads
                if mid_frame:
                    # The end's first step reads what has arrived and cuts
                    # there; the held packets go once it has.
                    tap, cut = recorder.legs[key].tap, asyncio.Event()
                    assert tap is not None
                    read_now = tap.read_now

                    def read_and_cut() -> None:
                        read_now()
                        cut.set()

                    tap.read_now = read_and_cut  # type: ignore[method-assign]
                    stopping = asyncio.ensure_future(recorder.stop(key, drain=drain))
                    await cut.wait()
                    proc.stdin.write(b"release\n")
                    await proc.stdin.drain()
                    result = await stopping
                else:
                    result = await recorder.stop(key, drain=drain, settle=settle)
                proc.stdin.write(b"close\n")
                await proc.stdin.drain()
            sent: dict[str, Any] = json.loads(await proc.stdout.readline())["sent"]
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return sent, result


def probe(path: Path) -> dict[str, Any]:
    """Decode the whole file with PyAV (test side) and describe it."""
    out: dict[str, Any] = {}
    with av.open(str(path)) as container:
        out["duration"] = (container.duration or 0) / 1e6
        out["video_codec"] = container.streams.video[0].codec_context.name
        video_frames = [f for f in container.decode(video=0)]
        out["video_frames"] = len(video_frames)
        out["first_keyframe"] = video_frames[0].key_frame if video_frames else None
        out["video_end"] = float(video_frames[-1].time) if video_frames else 0.0
    with av.open(str(path)) as container:
        audio = list(container.decode(audio=0))
        out["audio_frames"] = len(audio)
        out["audio_end"] = float(audio[-1].time + audio[-1].samples / audio[-1].sample_rate)
    return out


def every_frame(
    result: LegResult | None, sent: dict[str, Any], count: str = "video"
) -> dict[str, Any]:
    """The leg's file, decoded: it holds every video frame the sender counted
    (``sent[count]``). Returns what ``probe`` says of it."""
    assert result is not None and result.file is not None, result
    info = probe(result.file.path)
    assert info["video_frames"] == sent[count], (info, sent)
    return info


@pytest.mark.both_loops
@pytest.mark.slow
@pytest.mark.parametrize("codec, suffix", [("vp8", ".webm"), ("h264", ".mp4")])
async def test_recording_is_complete_and_in_sync(
    recorder: Recorder, no_codecs: list[str], codec: str, suffix: str
) -> None:
    key = RecordingKey("c" * 32, "p" * 32)
    sent, _ = await send(recorder, key, "--codec", codec, "--seconds", "4")
    result = await recorder.stop(key)
    assert result is not None and result.file is not None, result
    path = result.file.path
    assert path.suffix == suffix and path.exists()
    assert not list(path.parent.glob("*.partial"))
    info = probe(path)
    assert info["video_codec"] == codec
    assert info["first_keyframe"] is True
    assert abs(info["video_frames"] - sent["video"]) <= 0.05 * sent["video"], (info, sent)
    assert abs(info["duration"] - sent["media_seconds"]) <= 0.2, (info, sent)
    assert abs(info["audio_end"] - info["video_end"]) <= 0.2, info
    assert result.file.sha256 and result.file.size == path.stat().st_size


@pytest.mark.slow
async def test_a_starved_sender_is_recorded_as_long_as_the_media_it_sent(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    # CI once failed a recording test whose 3.01 s leg (at nice 19, beside
    # browser calls) gave a 2.27 s file: the test held the file to the sender's
    # wall time, and a starved sender sends less media than that (aiortc
    # numbers frames by count and never catches up). The file holds what was
    # sent, no more and no less.
    key = RecordingKey("c" * 32, "s" * 32)
    sent, _ = await send(recorder, key, "--codec", "vp8", "--seconds", "3", "--starve")
    result = await recorder.stop(key)
    assert result is not None and result.file is not None, result
    assert sent["media_seconds"] < 0.6 * sent["seconds"], sent  # it was starved
    info = probe(result.file.path)
    assert abs(info["duration"] - sent["media_seconds"]) <= 0.2, (info, sent)
    assert abs(info["video_frames"] - sent["video"]) <= 0.05 * sent["video"] + 1, (info, sent)
    assert info["first_keyframe"] is True


@pytest.mark.both_loops
@pytest.mark.slow
async def test_lost_packets_come_back_through_nack(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    # Every 12th video packet is lost on its first send: each lost packet takes a
    # frame with it unless the recorder NACKs it and the sender resends it (RTX).
    key = RecordingKey("c" * 32, "n" * 32)
    sent, result = await send(
        recorder, key, "--codec", "vp8", "--seconds", "4", "--drop", "12", ended_by_recorder=True
    )
    assert sent["dropped"] >= 10, sent
    every_frame(result, sent)
    # The rest of aiortc's feedback still reaches the sender: receiver reports
    # about this stream (about one a second) and REMB bandwidth estimates.
    feedback = sent["feedback"]
    assert feedback["nack"] >= 1 and feedback["reports"] >= 2 and feedback["remb"] >= 1, sent


@pytest.mark.both_loops
@pytest.mark.slow
@pytest.mark.parametrize("drain", [True, False], ids=["call-ended", "replaced"])
async def test_the_last_frames_of_a_leg_wait_for_their_missing_packets(
    recorder: Recorder, no_codecs: list[str], drain: bool
) -> None:
    # The call ends just after a packet and its first resend were lost: the
    # page sends nothing new after the end, so no later packet makes the
    # recorder ask again. It used to close the connection at once, losing the
    # frame (and the one after it); now it asks again while the page holds
    # the connection open, and the file holds every frame that was sent.
    #
    # Unless the leg ends because the participant's page was replaced (a
    # reload): that page is gone and cannot resend, and the new page's leg is
    # answered only once this one has ended. It used to ask again for up to
    # 2 s; now it ends at once, without the frames that waited for the packet.
    key = RecordingKey("e" * 32, "f" * 32)
    sent, result = await send(
        recorder,
        key,
        "--codec",
        "vp8",
        "--seconds",
        "2",
        "--lose-last-twice",
        ended_by_recorder=True,
        drain=drain,
    )
    assert result is not None and result.file is not None, result
    assert sent["dropped"] == 2, sent
    info = probe(result.file.path)
    if drain:
        assert sent["feedback"]["nack"] >= 2, sent
        assert info["video_frames"] == sent["frames"], (info, sent)
    else:
        assert sent["feedback"]["nack"] == 1, sent  # the one before the end only
        assert info["video_frames"] < sent["frames"], (info, sent)


@pytest.mark.slow
async def test_a_leg_asks_for_no_keyframe_its_page_already_sent(
    tmp_path: Path, no_codecs: list[str]
) -> None:
    # A page's first frame is a keyframe. The recorder asked for another when
    # the first packet came and again a second later, while that keyframe was
    # still on its way to the writer (which waits for holes before it): three
    # keyframes in the first 1.6 s, each several frames' worth of bits on a
    # weak uplink.
    key = RecordingKey("k" * 32, "f" * 32)
    recorder = Recorder(tmp_path / "rec", host_addresses=["127.0.0.1"], keyframe_interval=60.0)
    try:
        sent, _ = await send(recorder, key, "--codec", "vp8", "--seconds", "1.8")
        result = await recorder.stop(key)
    finally:
        await recorder.close()
    assert result is not None and result.file is not None, result
    with av.open(str(result.file.path)) as container:
        keyframes = [p.is_keyframe for p in container.demux(video=0) if p.size]
    assert len(keyframes) >= 0.9 * sent["video"], (len(keyframes), sent)
    assert keyframes[0] and sum(keyframes) == 1, keyframes


@pytest.mark.both_loops
@pytest.mark.slow
@pytest.mark.parametrize("lose_end", [False, True], ids=["rest-arrives", "its-last-packet-lost"])
async def test_the_frame_being_sent_when_the_call_ends_is_kept_whole(
    recorder: Recorder, no_codecs: list[str], lose_end: bool
) -> None:
    # The end reaches the recorder between two packets of a frame (a page sends
    # a frame's packets over a few milliseconds): the rest of that frame was
    # sent before the end and is the call's. The recorder used to drop every
    # packet after its cut, and with them the frame; in the township benchmark
    # that was the last frame of one call in two.
    #
    # If the frame's last packet is lost, no later packet reveals it (nothing
    # new is sent after the end): the recorder asks for the next few sequence
    # numbers. The sender answers from its history, also with packets of the
    # frames after it, which it had produced but never sent; those are not the
    # call's, and the file must not hold them.
    key = RecordingKey("e" * 32, "m" * 32)
    sent, result = await send(
        recorder,
        key,
        *("--codec", "vp8", "--seconds", "1.5", "--size", "320x240", "--noise"),
        "--end-mid-frame",
        *(("--lose-frame-end",) if lose_end else ()),
        ended_by_recorder=True,
        mid_frame=True,
    )
    assert sent["held"] >= 1, sent  # the frame was split by the end
    assert result is not None and result.file is not None, result
    info = probe(result.file.path)
    assert info["video_frames"] == sent["frames"], (info, sent)


@pytest.mark.slow
async def test_a_call_another_page_ended_keeps_what_this_page_sent_until_it_heard(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    # The specialist ends the call: the clinic's page hears of it from the
    # server a one-way trip later and goes on sending until then, the frames
    # its browser held at the end among them. The end came from another page
    # (``settle``): the recorder waits for this page's video to stop before it
    # cuts, and the file holds every frame sent, those 0.3 s too. Cut at once,
    # as before, the recorder closed the leg and the sender's media stopped at
    # 1.5 s (the township benchmark's 10 % link had no frame to spare: README,
    # the end).
    key = RecordingKey("f" * 32, "g" * 32)
    sent, result = await send(
        recorder,
        key,
        *("--codec", "vp8", "--seconds", "1.5", "--hears-end-after", "0.3"),
        ended_by_recorder=True,
        settle=True,
    )
    assert sent["media_seconds"] >= 1.7, sent  # it went on sending past the end
    every_frame(result, sent)


@pytest.mark.both_loops
@pytest.mark.slow
@pytest.mark.parametrize(
    ("codec", "handshake"),
    [("vp8", ()), ("h264", ()), ("vp8", ("--lose-dtls-last",))],
    ids=["vp8", "h264", "vp8-last-handshake-flight-lost"],
)
async def test_a_leg_whose_first_packets_are_lost_keeps_its_first_frames(
    recorder: Recorder, no_codecs: list[str], codec: str, handshake: tuple[str, ...]
) -> None:
    # The first packets of the leg (the start of its first keyframe) are lost.
    # Nothing before the first packet that arrives had been asked for again, so
    # no frame could be written until a keyframe asked for a second later came
    # (a township run at 10 % loss lost 4.8 % of a recording at one end). The
    # recorder now asks for the packets before a first packet that does not
    # begin a keyframe, and the file holds every frame that was sent.
    #
    # With the page's last DTLS flight lost as well: the page, the DTLS
    # server, is done once the recorder's Finished came and sends at once; the
    # recorder was done only once that flight came again, after OpenSSL's 1 s
    # timer, and until then nothing could be decrypted or asked for: the first
    # NACK came 1.01 s late (when a page may no longer have the packets), and
    # a relayed viewer waited that second. The keys are known once the
    # recorder has sent its Finished (media/early.py): it asks at once.
    #
    # The resends come a round trip late (0.3 s), and the keyframe they
    # complete is the page's first: no other is asked for until the periodic
    # one (``keyframe_interval``, 2 s here). One asked for at the start came
    # 0.35 s after the first, and a browser's keyframe flush dropped what the
    # first still had queued (the township bench: the file began 8 frames
    # late, in 2 calls of 20 at 10 % loss).
    key = RecordingKey("c" * 32, "s" * 32)
    sent, result = await send(
        recorder,
        key,
        *("--codec", codec, "--seconds", "3", "--lose-first", "2", "--nack-late", "0.3"),
        *handshake,
        ended_by_recorder=True,
    )
    assert sent["dropped"] == 2 and sent["feedback"]["nack"] >= 1, sent
    assert sent.get("first_pli_after", 3.0) >= 1.5, sent
    assert sent["dtls_dropped"] == len(handshake), sent
    assert sent["first_nack_after"] < 0.5, sent
    assert every_frame(result, sent)["first_keyframe"] is True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("queue", "due"),
    [("", (1.0, 2.9)), ("1,3.5,80", (3.9, 4.9)), ("1.5,6,80", (4.5, 5.8))],
    ids=["no-queue", "queue-empties", "queue-stays"],
)
async def test_the_seek_keyframe_waits_for_the_pages_send_queue_to_empty(
    tmp_path: Path,
    no_codecs: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    queue: str,
    due: tuple[float, float],
) -> None:
    # A keyframe makes a browser's pacer drop the video packets it holds
    # queued: the keyframe the recorder asks for every ``keyframe_interval``
    # (seekable files) cost 1 to 4 frames of township calls at 10 % loss and
    # 300 ms. The pacer's queue shows in the packets (send time against
    # capture time): the interval's keyframe is asked for once it is short,
    # or after INTERVAL_PATIENCE (3 s here) if it stays long. The sender's
    # queue grows to 80 ms in half a second from the first second, and
    # empties in as long from 3.5 s; or it grows from 1.5 s and stays (a
    # queue that stays the same for ``sendqueue.FLOOR_SECONDS`` looks like
    # none). The interval is 2 s.
    monkeypatch.setattr(leg_module, "INTERVAL_PATIENCE", 3.0)
    caplog.set_level(logging.INFO, logger="media.leg")
    key = RecordingKey("q" * 32, "i" * 32)
    recorder = Recorder(tmp_path / "rec", host_addresses=["127.0.0.1"], keyframe_interval=2.0)
    try:
        sent, _ = await send(
            recorder,
            key,
            *("--codec", "vp8", "--seconds", "6"),
            *(("--queue", queue) if queue else ()),
        )
        result = await recorder.stop(key)
    finally:
        await recorder.close()
    first = sent["pli_after"][0]
    assert due[0] <= first < due[1], sent["pli_after"]
    asked = [r.getMessage() for r in caplog.records if "keyframe asked for" in r.getMessage()]
    queued = [float(m) for m in re.findall(r"the interval \(send queue (\d+) ms", asked[0])]
    assert len(queued) == 1, asked  # the sender's packets carry their send time
    if queue == "1.5,6,80":
        assert queued[0] > leg_module.INTERVAL_QUEUE_MS, asked
    else:
        assert queued[0] <= leg_module.INTERVAL_QUEUE_MS, asked
    every_frame(result, sent)


async def test_a_legs_first_keyframe_is_written_as_it_comes(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    # The page begins with a keyframe. The file waited 2 s for packets sent
    # before its first (there were none); the leg took the writer's wait for a
    # lost keyframe and asked for another, 2 s into every leg that the writer
    # thread was slow to reach (a busy CI machine). That keyframe made the
    # browser's pacer drop the frames it held: 5 frames of the township smoke
    # test's 6 s call (2026-12-04). The writer now has the keyframe as soon as
    # it is whole.
    key = RecordingKey("c" * 32, "w" * 32)
    sending = asyncio.ensure_future(
        send(recorder, key, "--codec", "vp8", "--seconds", "3", ended_by_recorder=True)
    )
    waited = None
    try:
        async with asyncio.timeout(30):
            while waited is None and not sending.done():
                leg = recorder.legs.get(key)
                writer = leg.writer if leg is not None else None
                if leg and leg.last_video and writer and not writer.needs_keyframe:
                    waited = time.monotonic() - leg.keyframe_at
                # A flag the writer thread sets: there is nothing to await.
                await asyncio.sleep(0.01)
            sent, result = await sending
    finally:
        sending.cancel()
    assert waited is not None and waited < 1.0, waited  # 2.0-2.1 s before
    assert every_frame(result, sent)["first_keyframe"] is True


async def test_a_pause_in_the_video_with_nothing_lost_asks_for_no_keyframe(
    tmp_path: Path, no_codecs: list[str]
) -> None:
    # A page whose video pauses (a camera that stalls; the weak-link stills,
    # one frame a second) loses nothing: the frame after the pause refers to
    # the one before it, which the file holds. The writer took any gap over
    # 0.5 s for lost frames and asked for a keyframe after it (every 2 s in
    # the stills), and each keyframe can make a browser's pacer drop what it
    # holds. Lost frames are the assembler's to tell (a hole, a picture id's
    # jump), and it does.
    recorder = Recorder(
        tmp_path / "recordings", host_addresses=["127.0.0.1"], keyframe_interval=30.0
    )
    try:
        key = RecordingKey("c" * 32, "p" * 32)
        sent, result = await send(
            recorder,
            key,
            *("--codec", "vp8", "--seconds", "4", "--pause", "1,2"),
            ended_by_recorder=True,
        )
    finally:
        await recorder.close()
    assert sent["feedback"]["pli"] == 0, sent
    info = every_frame(result, sent)
    assert info["first_keyframe"] is True and info["video_end"] > 3.5, info


async def test_a_lost_retransmission_is_asked_for_again(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    # One packet is lost, and so is its first resend; nothing else goes missing.
    # aiortc asks again only when something new goes missing, so the frame (and
    # the frames after it, up to the next keyframe) were lost; the recorder now
    # asks again after about a round trip.
    key = RecordingKey("c" * 32, "t" * 32)
    sent, _ = await send(recorder, key, "--codec", "vp8", "--seconds", "4", "--lose-twice", "40")
    assert sent["dropped"] == 2, sent
    assert sent["feedback"]["nack"] >= 2, sent
    every_frame(await recorder.stop(key), sent)


async def test_a_packet_is_asked_for_as_long_as_its_frame_waits_not_128_packets(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    # One packet is lost with its first four resends, on a long round trip
    # (each resend comes 0.3 s after its NACK) while the sender keeps sending
    # about two hundred packets a second. aiortc's NACK generator forgets a
    # missing number once 128 newer ones have come, so the recorder stopped
    # asking (in township calls 1.0-1.9 s after the loss) and the frame, with
    # every frame up to the keyframe asked for 2 s later, was lost: 58 frames
    # in one 20 s township call at 10 % loss and 300 ms
    # (tests/bench/township.py, 1 call in 5). It is now
    # asked for until the packet log gives it up (2 s), as the comment on
    # NACK_GIVE_UP_MS always said. The sender keeps 2,048 packets for resends,
    # as a browser does (libwebrtc: at least a second's, and 600); aiortc's own
    # 128 would have forgotten the packet too.
    key = RecordingKey("c" * 32, "s" * 32)
    sent, result = await send(
        recorder,
        key,
        *("--codec", "h264", "--size", "640x480", "--noise", "--seconds", "6"),
        *("--lose-twice", "800", "--resends-lost", "4", "--nack-late", "0.3"),
        *("--bitrate", "2000000", "--history", "2048"),
        ended_by_recorder=True,
    )
    assert sent["dropped"] == 5, sent  # the packet and four resends
    # The case: the resend that came went out after more than 128 newer packets.
    assert sent["resent_after_drops"] >= 1, sent
    assert sent["packets_before_resend"] > 128, sent
    every_frame(result, sent)


async def test_a_leg_that_fails_to_start_leaves_no_file_behind(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The answer fails after the leg's packet log was opened (here: the tap
    # cannot attach). The empty log stayed on disk, and the next start
    # "recovered" it as a part of the recording.
    from datetime import UTC, datetime

    from aiortc import RTCConfiguration, RTCPeerConnection

    from media import tap

    def cannot_attach(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("aiortc's internals moved")

    monkeypatch.setattr(tap.RtpTap, "attach", cannot_attach)
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        offerer.addTransceiver("video", direction="sendonly")
        offerer.addTransceiver("audio", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        key = RecordingKey("c" * 32, "x" * 32)
        with pytest.raises(RuntimeError):
            await recorder.start(key, offerer.localDescription.sdp, now=datetime.now(UTC))
    finally:
        await offerer.close()
    assert key not in recorder.legs
    # Whatever the writer thread was handed is done once a later writer closes.
    barrier = PacketWriter(
        tmp_path / "barrier.partial",
        video_codec="vp8",
        audio=False,
        t0=0.0,
        thread=recorder.writer_thread,
    )
    await asyncio.to_thread(barrier.close)
    assert [p for p in recorder.directory.rglob("*") if p.is_file()] == []
    assert recorder.recover() == []


@pytest.mark.parametrize("video_fec", [True, False])
async def test_the_answer_accepts_red_and_ulpfec_unless_turned_off(
    tmp_path: Path, video_fec: bool
) -> None:
    # Chromium offers RED and ULPFEC; the recorder's answer takes them (its tap
    # rebuilds lost packets from them) unless the hospital turned it off
    # (``video_fec = false``), and then the browser sends plain video.
    from datetime import UTC, datetime

    from .test_answer import with_red
    from .test_twcc import CHROME_OFFER

    recorder = Recorder(tmp_path / "recordings", host_addresses=["127.0.0.1"], video_fec=video_fec)
    key = RecordingKey("c" * 32, "f" * 32)
    try:
        answer = await recorder.start(key, with_red(CHROME_OFFER), now=datetime.now(UTC))
        video = answer.split("\r\nm=video")[1]
        assert ("a=rtpmap:118 red/90000" in video) is video_fec
        assert ("a=rtpmap:120 ulpfec/90000" in video) is video_fec
        assert "a=rtpmap:96 VP8/90000" in video
        await recorder.stop(key)
    finally:
        await recorder.close()
