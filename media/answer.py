"""The recorder's edits of its own answer SDP (aiortc's, as ``createAnswer`` made it).

aiortc offers no knobs for what these ask the browser, so the recorder edits
the text of its answer before it goes out: transport-wide feedback instead of
REMB (``twcc.with_transport_cc``: it stays beside the feedback it turns on,
whose extension id it shares), a start bitrate (``with_start_bitrate``) and
Opus's in-band FEC (``with_opus_fec``). ``edited`` applies them in the
recorder's order.
"""

from __future__ import annotations

from media import twcc


def edited(
    answer_sdp: str, offer_sdp: str, *, transport_cc: bool, start_bitrate: int | None
) -> str:
    """The answer the recorder sends: with transport-wide feedback if ``transport_cc``
    (the leg sends it), starting the browser's video at ``start_bitrate``, and
    asking for Opus's in-band FEC."""
    if transport_cc:
        answer_sdp = twcc.with_transport_cc(answer_sdp, offer_sdp)
    return with_opus_fec(with_start_bitrate(answer_sdp, start_bitrate))


def with_start_bitrate(sdp: str, bits_per_second: int | None) -> str:
    """``sdp`` (the recorder's answer) asking the browser to start at ``bits_per_second``.

    Chromium takes ``x-google-start-bitrate`` (kbit/s) from the video codec's
    ``a=fmtp`` line of the remote description as the first estimate of its
    congestion controller. Without it the estimate starts at 300 kbit/s and,
    with aiortc's REMB as the only feedback, climbs about 25 kbit/s a second:
    the first seconds of every recording (and, relayed, of the live call) are
    sent starved.
    """
    if not bits_per_second:
        return sdp
    kbps = max(1, bits_per_second // 1000)
    return _with_fmtp(sdp, "video", ("vp8", "h264"), f"x-google-start-bitrate={kbps}")


def with_opus_fec(sdp: str) -> str:
    """``sdp`` (the recorder's answer) asking the browser for Opus's in-band FEC.

    ``useinbandfec=1`` on the receiver's Opus ``a=fmtp`` line tells the sender
    that the receiver can use in-band forward error correction; Chromium's Opus
    encoder turns it on only then (and only while it sees loss), each packet
    then carrying a coarser copy of the one before. aiortc's answer has no
    ``a=fmtp`` for Opus, so the clinic's voice crossed a lossy uplink without
    it: every packet lost upstream (the recorder cannot ask for audio again)
    was a gap each viewer of a relayed call concealed. With it, a viewer's
    decoder rebuilds a single lost packet from the next one.
    """
    return _with_fmtp(sdp, "audio", ("opus",), "useinbandfec=1")


def _with_fmtp(sdp: str, kind: str, codecs: tuple[str, ...], parameter: str) -> str:
    """``sdp`` with ``parameter`` (``name=value``) for each of ``codecs`` in the
    ``kind`` sections: appended to the codec's ``a=fmtp`` line, or on a line of
    its own after its ``a=rtpmap`` if it has none. A line that names the
    parameter already (with any value) is left as it is."""
    name = parameter.partition("=")[0]
    lines = sdp.split("\r\n")
    types: set[str] = set()
    in_kind = False
    for line in lines:
        if line.startswith("m="):
            in_kind = line.startswith(f"m={kind}")
        elif in_kind and line.startswith("a=rtpmap:"):
            pt, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            if encoding.split("/")[0].lower() in codecs:
                types.add(pt)
    if not types:
        return sdp
    out: list[str] = []
    have_fmtp: set[str] = set()
    for line in lines:
        if line.startswith("a=fmtp:"):
            pt, _, params = line[len("a=fmtp:") :].partition(" ")
            if pt in types:
                have_fmtp.add(pt)
                names = {p.partition("=")[0].strip().lower() for p in params.split(";")}
                if name not in names:
                    line = (
                        f"a=fmtp:{pt} {params};{parameter}"
                        if params
                        else f"a=fmtp:{pt} {parameter}"
                    )
        out.append(line)
    result: list[str] = []
    for line in out:
        result.append(line)
        if line.startswith("a=rtpmap:"):
            pt = line[len("a=rtpmap:") :].partition(" ")[0]
            if pt in types and pt not in have_fmtp:
                result.append(f"a=fmtp:{pt} {parameter}")
    return "\r\n".join(result)
