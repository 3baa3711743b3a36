"""The recorder's edits of its answer (media/answer.py): Opus's in-band FEC, RED and ULPFEC.

That Chromium then sends FEC across a lossy uplink, and what it saves a viewer,
is measured by ``tests/bench/township.py --detail`` (the viewer's audio
``fecPacketsReceived``) and checked by its smoke test.
"""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, sdp

from media import answer

from .test_twcc import CHROME_OFFER


async def aiortcs_answer(offer: str) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_the_answer_asks_the_browser_for_opus_in_band_fec() -> None:
    plain = await aiortcs_answer(CHROME_OFFER)
    # aiortc's own answer says nothing of FEC: Chromium's encoder leaves it off.
    assert "useinbandfec" not in plain and "a=rtpmap:111 opus/48000/2" in plain
    sent = answer.edited(plain, CHROME_OFFER, transport_cc=True, start_bitrate=800_000)
    audio, video = sent.split("\r\nm=")[1:]
    lines = audio.split("\r\n")
    assert lines[lines.index("a=rtpmap:111 opus/48000/2") + 1] == "a=fmtp:111 useinbandfec=1"
    assert "useinbandfec" not in video
    assert "a=fmtp:96 x-google-start-bitrate=800" in video.split("\r\n")  # the other edits stay
    # aiortc reads the edited answer (as the browser's remote description is read).
    other = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await other.setRemoteDescription(RTCSessionDescription(sdp=sent, type="offer"))
    finally:
        await other.close()


def test_an_opus_fmtp_line_is_added_to_and_an_explicit_choice_is_kept() -> None:
    def sdp(*audio: str) -> str:
        return "\r\n".join(["v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", *audio, ""])

    with_params = sdp("a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10")
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in answer.with_opus_fec(with_params)
    refused = sdp("a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=0")
    assert answer.with_opus_fec(refused) == refused
    already = sdp("a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1")
    assert answer.with_opus_fec(already) == already
    no_opus = sdp("a=rtpmap:0 PCMU/8000")
    assert answer.with_opus_fec(no_opus) == no_opus


def with_red(offer: str) -> str:
    """``offer`` offering RED, its RTX and ULPFEC for video, as Chromium's offers do."""
    lines = offer.split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    lines[at] += " 118 119 120"
    rtx = next(i for i, line in enumerate(lines) if line == "a=fmtp:97 apt=96")
    red = [
        "a=rtpmap:118 red/90000",
        "a=rtpmap:119 rtx/90000",
        "a=fmtp:119 apt=118",
        "a=rtpmap:120 ulpfec/90000",
    ]
    return "\r\n".join(lines[: rtx + 1] + red + lines[rtx + 1 :])


async def test_the_answer_accepts_red_and_ulpfec_for_video_when_offered() -> None:
    offer = with_red(CHROME_OFFER)
    fec = answer.fec_types(offer)
    assert fec is not None and (fec.red, fec.red_rtx, fec.ulpfec) == (118, 119, 120)
    plain = await aiortcs_answer(offer)
    # aiortc knows neither: its answer leaves them out, and Chromium sends plain VP8.
    assert "red/90000" not in plain and "ulpfec" not in plain
    sent = answer.edited(plain, offer, transport_cc=True, start_bitrate=800_000, fec=fec)
    audio, video = sent.split("\r\nm=")[1:]
    lines = video.split("\r\n")
    assert lines[0].endswith(" UDP/TLS/RTP/SAVPF 96 97 118 119 120")
    for line in ("a=rtpmap:118 red/90000", "a=fmtp:119 apt=118", "a=rtpmap:120 ulpfec/90000"):
        assert line in lines
    assert "red" not in audio
    # An SDP parser (aiortc's) reads the types and RED's RTX.
    parsed = sdp.SessionDescription.parse(sent).media[1]
    codecs = {c.payloadType: c for c in parsed.rtp.codecs}
    assert codecs[118].mimeType == "video/red" and codecs[120].mimeType == "video/ulpfec"
    assert codecs[119].mimeType == "video/rtx" and codecs[119].parameters == {"apt": 118}
    # Edited once: a second pass changes nothing.
    assert answer.with_red_ulpfec(sent, fec) == sent


def test_no_red_without_both_red_and_ulpfec_offered_or_a_video_codec_accepted() -> None:
    assert answer.fec_types(CHROME_OFFER) is None
    only_red = with_red(CHROME_OFFER).replace("a=rtpmap:120 ulpfec/90000\r\n", "")
    assert answer.fec_types(only_red) is None
    fec = answer.fec_types(with_red(CHROME_OFFER))
    assert fec is not None
    rejected = "\r\n".join(["v=0", "m=video 0 UDP/TLS/RTP/SAVPF 0", ""])
    assert answer.with_red_ulpfec(rejected, fec) == rejected
    assert answer.with_red_ulpfec("v=0\r\n", fec) == "v=0\r\n"
