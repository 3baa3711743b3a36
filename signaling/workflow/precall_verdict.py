"""The verdict of a pre-call check, from what the page measured.

The page measures (camera, microphone, speaker, one network probe per path);
this module alone decides what that means, so that both languages, the
consultation page and the records say the same. A verdict is the worst of its
reasons: ``good`` with none, ``limited`` (the call can take place with a named
limitation, e.g. low-bandwidth mode), ``unusable`` (something must be fixed
first). Each reason is a code with the figures it names; the pages word it
(``precall.reason.<code>`` in both catalogs).

Thresholds. In the relayed plane (the default: the server relays the calls it
records, so a page sends its video once) a township line of 1 Mbit/s, where
the check measures 0.86-1.06 Mbit/s, carries 640×480 at 24 frames/s in
800-809 kbit/s, and one at 15 % loss (below) in 350-370 kbit/s: "good"
(``RELAY_GOOD_UPLINK_KBPS``) starts at 0.7 Mbit/s. In the mesh a page sends a
live copy and its recording leg (``recording_max_bitrate`` 0.5 Mbit/s) and
wants about 1.2 Mbit/s. Below 0.3 Mbit/s only voice and a still picture are
left: the low-bandwidth mode, which sends Opus voice and one still a second of
10-60 kbit/s (``web/static/js/uplink-policy.js``), so the call is usable with
that limit down to ``MIN_VOICE_UPLINK_KBPS``; under it not even that fits
(the call page keeps stills under 60 kbit/s, its ``HOPELESS_KBPS``). Loss
above 3 % shows in video.
``MAX_LOSS_PERCENT`` is drawn between what the check reads on the benchmark's
links and what calls there do (``tests/bench/township.py --precall``,
1 Mbit/s, 300 ms): at 15 % loss the check reads 12.8-14.4 % and a 20 s call
keeps 640 px at 24 frames/s with 10-12 % of its audio concealed in gaps of
21-22 ms on average; at 20 % it reads 14.1-18.0 % and the call falls to
480 px, 15-17 frames/s, 7-12 freezes, 13-14 % concealed. A round trip above
400 ms makes people talk over each other, above 1000 ms conversation fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from records.vocab import PrecallVerdict

RELAY_GOOD_UPLINK_KBPS = 700.0
MESH_GOOD_UPLINK_KBPS = 1200.0
MIN_UPLINK_KBPS = 300.0
MIN_VOICE_UPLINK_KBPS = 100.0
LIMITED_LOSS_PERCENT = 3.0
MAX_LOSS_PERCENT = 15.0
LIMITED_RTT_MS = 400.0
MAX_RTT_MS = 1000.0
MIN_WIDTH = 640
MIN_FRAME_RATE = 15.0
SILENT_LEVEL = 0.01

# Paths a page can check: straight to this server over UDP, and through TURN.
PATHS = ("direct", "turn_udp", "turn_tcp", "turn_tls")


@dataclass(frozen=True, kw_only=True)
class Device:
    """A camera or microphone as the page found it.

    ``status``: ``ok``, ``denied`` (the user or the browser refused access),
    ``missing`` (no such device), ``busy`` (another program holds it), ``failed``.
    """

    status: str
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    level: float | None = None


@dataclass(frozen=True, kw_only=True)
class PathResult:
    """One network probe: ``status`` ``ok``, ``failed`` or ``not_configured``."""

    name: str
    status: str
    uplink_kbps: float | None = None
    loss_percent: float | None = None
    rtt_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class Report:
    """Everything the page measured; ``speaker`` is ``heard``, ``not_heard`` or ``skipped``."""

    camera: Device
    microphone: Device
    speaker: str
    paths: tuple[PathResult, ...]
    relay_only: bool = False
    # Whether a page sends its video once in a call of two: the server relays
    # the calls it records (or records none). Else a mesh copy and a recording leg.
    sends_once: bool = True


@dataclass(frozen=True)
class Reason:
    """Why a check is not ``good``: a code, its weight, and the figures it names."""

    code: str
    verdict: PrecallVerdict
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The stored and sent form."""
        return {"code": self.code, "verdict": self.verdict.value, **self.figures}


def _devices(report: Report) -> list[Reason]:
    out: list[Reason] = []
    cam, mic = report.camera, report.microphone
    if cam.status != "ok":
        out.append(Reason("camera_unavailable", PrecallVerdict.LIMITED, {"status": cam.status}))
    elif (cam.width or 0) < MIN_WIDTH or (cam.frame_rate or 0) < MIN_FRAME_RATE:
        figures = {"width": cam.width, "height": cam.height, "frame_rate": cam.frame_rate}
        out.append(Reason("camera_poor", PrecallVerdict.LIMITED, figures))
    if mic.status != "ok":
        out.append(
            Reason("microphone_unavailable", PrecallVerdict.UNUSABLE, {"status": mic.status})
        )
    elif (mic.level or 0) < SILENT_LEVEL:
        out.append(Reason("microphone_silent", PrecallVerdict.LIMITED))
    if report.speaker == "not_heard":
        out.append(Reason("speaker_not_heard", PrecallVerdict.UNUSABLE))
    elif report.speaker == "skipped":
        out.append(Reason("speaker_unchecked", PrecallVerdict.LIMITED))
    return out


def best_path(report: Report) -> PathResult | None:
    """The working path with the most uplink among those the call may use."""
    usable = [
        p
        for p in report.paths
        if p.status == "ok" and not (report.relay_only and p.name == "direct")
    ]
    return max(usable, key=lambda p: p.uplink_kbps or 0.0, default=None)


def _half_up(value: float, places: int = 0, *, per: float = 1.0) -> float:
    """``value / per`` to ``places`` decimals, halves rounded up as the pages
    round the figures beside a reason. ``round`` rounds halves to even and
    made 304.5 ms 304; and 150 kbit/s 0.1 Mbit/s, 0.15 being 0.1499… as a
    float (``per`` divides after scaling: 150 × 10 / 1000 is 1.5 exactly)."""
    scale = 10.0**places
    return math.floor(value * scale / per + 0.5) / scale


def _network(report: Report) -> list[Reason]:
    out: list[Reason] = []
    by_name = {p.name: p for p in report.paths}
    best = best_path(report)
    if best is None:
        return [Reason("network_unreachable", PrecallVerdict.UNUSABLE)]
    good = RELAY_GOOD_UPLINK_KBPS if report.sends_once else MESH_GOOD_UPLINK_KBPS
    # A figure the probe could not measure (a loss needs two of the server's
    # receiver reports, which a lossy link can drop) is said to be unknown,
    # not judged as nothing: 0 % loss would read as a good line.
    if best.uplink_kbps is None:
        out.append(Reason("uplink_unmeasured", PrecallVerdict.LIMITED))
    elif best.uplink_kbps < MIN_VOICE_UPLINK_KBPS:
        mbit = _half_up(best.uplink_kbps, 2, per=1000)
        out.append(Reason("uplink_unusable", PrecallVerdict.UNUSABLE, {"mbit": mbit}))
    elif best.uplink_kbps < MIN_UPLINK_KBPS:
        # The low-bandwidth mode carries the consultation: limited, not unusable.
        mbit = _half_up(best.uplink_kbps, 1, per=1000)
        out.append(Reason("uplink_too_low", PrecallVerdict.LIMITED, {"mbit": mbit}))
    elif best.uplink_kbps < good:
        mbit = _half_up(best.uplink_kbps, 1, per=1000)
        out.append(Reason("uplink_low", PrecallVerdict.LIMITED, {"mbit": mbit}))
    if best.loss_percent is None:
        out.append(Reason("loss_unmeasured", PrecallVerdict.LIMITED))
    elif (loss := round(best.loss_percent, 1)) > MAX_LOSS_PERCENT:
        out.append(Reason("loss_too_high", PrecallVerdict.UNUSABLE, {"percent": loss}))
    elif loss > LIMITED_LOSS_PERCENT:
        out.append(Reason("loss_high", PrecallVerdict.LIMITED, {"percent": loss}))
    if best.rtt_ms is None:
        out.append(Reason("rtt_unmeasured", PrecallVerdict.LIMITED))
    elif (rtt := int(_half_up(best.rtt_ms))) > MAX_RTT_MS:
        out.append(Reason("rtt_too_high", PrecallVerdict.UNUSABLE, {"ms": rtt}))
    elif rtt > LIMITED_RTT_MS:
        out.append(Reason("rtt_high", PrecallVerdict.LIMITED, {"ms": rtt}))
    udp_ok = any(by_name.get(n, _MISSING).status == "ok" for n in ("direct", "turn_udp"))
    if not udp_ok:
        out.append(Reason("udp_blocked", PrecallVerdict.LIMITED))
    for name in ("turn_udp", "turn_tcp", "turn_tls"):
        if by_name.get(name, _MISSING).status == "failed":
            out.append(Reason("turn_failed", PrecallVerdict.LIMITED, {"path": name}))
    return out


_MISSING = PathResult(name="", status="not_configured")
_ORDER = (PrecallVerdict.GOOD, PrecallVerdict.LIMITED, PrecallVerdict.UNUSABLE)


def judge(report: Report) -> tuple[PrecallVerdict, list[Reason]]:
    """The verdict and every reason for it (worst first)."""
    reasons = _devices(report) + _network(report)
    reasons.sort(key=lambda r: -_ORDER.index(r.verdict))
    verdict = reasons[0].verdict if reasons else PrecallVerdict.GOOD
    return verdict, reasons
