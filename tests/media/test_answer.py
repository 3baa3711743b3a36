"""The recorder's edits of its answer (media/answer.py): Opus's in-band FEC.

That Chromium then sends FEC across a lossy uplink, and what it saves a viewer,
is measured by ``tests/bench/township.py --detail`` (the viewer's audio
``fecPacketsReceived``) and checked by its smoke test.
"""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

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
