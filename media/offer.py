"""Is this SDP an offer the recorder can take? Checked before a peer connection exists.

aiortc's SDP parser trusts its input (``assert``, bare ``int()``), and
``setRemoteDescription`` raises ``ValueError`` for an offer without ICE
credentials or RTCP multiplexing. A browser's offer always passes; a hostile or
broken one must be refused as bad input, not reach the recorder and fail there
(a traceback, a "recording failed" shown to everyone). The checks mirror what
aiortc 1.16 itself refuses (``RTCPeerConnection.__validate_description``).
"""

from __future__ import annotations

from aiortc import sdp as aiortc_sdp

_RECORDABLE = frozenset({"video/vp8", "video/h264"})


def offer_problem(text: str, *, recordable: bool = True) -> str | None:
    """What keeps ``text`` from being a recordable SDP offer (None: nothing).

    Args:
        text: the SDP, as a browser sent it.
        recordable: whether its video must be VP8 or H.264 (an offer to the
            recorder); False for a browser's answer to the relay's offer.

    Returns:
        A short phrase for the error message (``"sdp " + phrase``), or None.
    """
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception:  # any parser failure (assert, int(), regex) means "not SDP"
        return "is not a valid SDP description"
    media = description.media
    if not media:
        return "needs at least one media section (m=audio or m=video)"
    if not any(section.kind in ("audio", "video") for section in media):
        return "needs an audio or video section"
    for section in media:
        ice, dtls = section.ice, section.dtls
        if ice is None or not ice.usernameFragment or not ice.password:
            return "needs ICE credentials (a=ice-ufrag, a=ice-pwd)"
        if dtls is None or not dtls.fingerprints:
            return "needs a DTLS fingerprint (a=fingerprint)"
        if section.kind in ("audio", "video") and not section.rtcp_mux:
            return "needs RTCP multiplexing (a=rtcp-mux)"
        # The recorder stores video as it comes (no transcoding): VP8 or H.264 only.
        if (
            recordable
            and section.kind == "video"
            and not any(codec.mimeType.lower() in _RECORDABLE for codec in section.rtp.codecs)
        ):
            return "must offer VP8 or H.264 video"
    return None
