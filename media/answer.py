"""The recorder's edits of its own answer SDP (aiortc's, as ``createAnswer`` made it).

aiortc offers no knobs for what these ask the browser, so the recorder edits
the text of its answer before it goes out: transport-wide feedback instead of
REMB (``twcc.with_transport_cc``: it stays beside the feedback it turns on,
whose extension id it shares), a start bitrate (``with_start_bitrate``),
Opus's in-band FEC (``with_opus_fec``) and RED with ULPFEC for video
(``with_red_ulpfec``). ``edited`` applies them in the recorder's order.
"""

from __future__ import annotations

from media import twcc
from media.ulpfec import FecTypes


def edited(
    answer_sdp: str,
    offer_sdp: str,
    *,
    transport_cc: bool,
    start_bitrate: int | None,
    fec: FecTypes | None = None,
) -> str:
    """The answer the recorder sends: with transport-wide feedback if ``transport_cc``
    (the leg sends it), starting the browser's video at ``start_bitrate``,
    asking for Opus's in-band FEC, and accepting RED and ULPFEC (``fec``, from
    ``fec_types`` of the offer) if the tap reads them."""
    if transport_cc:
        answer_sdp = twcc.with_transport_cc(answer_sdp, offer_sdp)
    answer_sdp = with_opus_fec(with_start_bitrate(answer_sdp, start_bitrate))
    return with_red_ulpfec(answer_sdp, fec) if fec is not None else answer_sdp


def fec_types(offer_sdp: str) -> FecTypes | None:
    """The payload types the offer gives RED, its RTX and ULPFEC for video
    (None: it offers not both of RED and ULPFEC)."""
    red = ulpfec = red_rtx = None
    apt: dict[str, str] = {}
    in_video = False
    for line in offer_sdp.splitlines():
        if line.startswith("m="):
            if in_video:
                break  # the first video section only: the leg has one
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            pt, _, encoding = line[len("a=rtpmap:") :].partition(" ")
            name = encoding.split("/")[0].lower()
            if name == "red" and red is None:
                red = pt
            elif name == "ulpfec" and ulpfec is None:
                ulpfec = pt
        elif in_video and line.startswith("a=fmtp:"):
            pt, _, params = line[len("a=fmtp:") :].partition(" ")
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key.lower() == "apt":
                    apt[pt] = value.strip()
    if red is None or ulpfec is None:
        return None
    red_rtx = next((pt for pt, target in apt.items() if target == red), None)
    try:
        return FecTypes(red=int(red), ulpfec=int(ulpfec), red_rtx=int(red_rtx) if red_rtx else None)
    except ValueError:
        return None


def with_red_ulpfec(sdp: str, fec: FecTypes) -> str:
    """``sdp`` (the recorder's answer) accepting RED, its RTX and ULPFEC for video.

    Browser to browser, Chromium wraps its video in RED and adds ULPFEC
    packets, from which a receiver rebuilds a lost packet at once; aiortc
    knows neither, so its answer left them out and every loss on the uplink
    waited for a NACK's round trip. The tap reads them (``media/ulpfec.py``).
    Added to the first video section, if it accepted a video codec.
    """
    lines = sdp.split("\r\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("m=video")), None)
    if start is None:
        return sdp
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    fields = lines[start].split(" ")
    if len(fields) < 4 or fields[1] == "0":
        return sdp  # rejected
    types = [
        str(fec.red),
        *([str(fec.red_rtx)] if fec.red_rtx is not None else []),
        str(fec.ulpfec),
    ]
    if any(t in fields[3:] for t in types):
        return sdp
    added = [f"a=rtpmap:{fec.red} red/90000"]
    if fec.red_rtx is not None:
        added += [f"a=rtpmap:{fec.red_rtx} rtx/90000", f"a=fmtp:{fec.red_rtx} apt={fec.red}"]
    added.append(f"a=rtpmap:{fec.ulpfec} ulpfec/90000")
    last = max(
        (
            i
            for i in range(start, end)
            if lines[i].startswith(("a=rtpmap:", "a=rtcp-fb:", "a=fmtp:"))
        ),
        default=end - 1,
    )
    lines[start] = " ".join(fields + types)
    return "\r\n".join(lines[: last + 1] + added + lines[last + 1 :])


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
