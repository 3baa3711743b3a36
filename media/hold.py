"""How long a relay's viewers hold the picture: the source's repair time, told in every packet.

Through the relay a viewer's connection runs to the server, a few milliseconds
away, while a packet lost on the source's uplink comes back only after that
uplink's round trip (the recorder's NACK, the browser's retransmission): 300 ms
and more on a township link. Chromium sizes its jitter buffer by the round trip
it measures itself, so each such repair froze the picture; the page's own
remedy (``web/static/js/playout.js``) learns only from the freezes, one 100 ms
step each (3.1 freezes in a 15 s call at 10 % loss and 300 ms, against 0.6
browser to browser).

The recorder knows the repair time: it asks for every lost packet and sees
when the retransmission comes (``Lean.hold_ms``). The forwarder writes it into
each packet it sends a viewer as the minimum of the playout-delay header
extension (``http://www.webrtc.org/experiments/rtp-hdrext/playout-delay``,
which Chromium offers and honours: the frame is shown no sooner than that after
it could be), so the viewer waits for a repair from the first one, and goes
back to its own low delay once the source's link has needed none for a while.
Chromium takes the larger of this and the page's ``jitterBufferTarget``.

aiortc knows neither side of the extension: its offer gets the ``a=extmap``
line here, its header-extension map is wrapped for the forwarder's packets, and
the viewer's answer says whether the browser took it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

# The relay's viewers hold the picture for the time nine retransmissions in ten
# take to come (of the last HOLD_SAMPLES), plus a margin, in steps, while the
# last HOLD_REPAIRS came within HOLD_QUIET_MS (``lean.Lean.hold_ms``).
HOLD_SAMPLES = 64
HOLD_MARGIN_MS = 50
HOLD_STEP_MS = 50
HOLD_REPAIRS = 3
HOLD_QUIET_MS = 20_000

URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
# The id offered: BUNDLE shares ids across the sections, and aiortc's own are 1
# (mid), 2 (audio level) and 3 (abs-send-time).
OFFER_ID = 5
# The maximum sent beside the minimum: Chromium's own default (10 s), so the
# extension changes nothing but the minimum.
MAX_MS = 10_000
# The extension counts in 10 ms and has 12 bits for each bound.
_UNIT_MS = 10
# The minimum sent once a hold is over. Not 0: Chromium takes a minimum of 0
# with a maximum above it as a low-latency stream (its compositor's delay
# changes), which a relay that never held is not either.
RELEASED_MS = _UNIT_MS
_LIMIT = 0xFFF


def with_playout_delay(sdp: str) -> str:
    """The relay's offer with the playout-delay extension in its video section.

    The line goes before the section's first attribute: SDP puts ``c=`` and
    ``b=`` between ``m=`` and the attributes, in that order (RFC 8866 5).
    """
    out: list[str] = []
    pending = False  # in the video section, the extension not yet written
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            pending = line.startswith("m=video")
        elif pending and line.startswith("a="):
            out.append(f"a=extmap:{OFFER_ID} {URI}")
            pending = False
        out.append(line)
    return "\r\n".join(out)


_SECTION = re.compile(r"^m=(\w+)", re.MULTILINE)
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", re.MULTILINE)


def accepted_id(answer_sdp: str) -> int | None:
    """The playout-delay id in the video section of a viewer's answer (None: not taken)."""
    starts = [(m.start(), m.group(1)) for m in _SECTION.finditer(answer_sdp)]
    for index, (start, kind) in enumerate(starts):
        if kind != "video":
            continue
        end = starts[index + 1][0] if index + 1 < len(starts) else len(answer_sdp)
        for match in _EXTMAP.finditer(answer_sdp, start, end):
            ext_id = int(match.group(1))
            if match.group(2) == URI and 0 < ext_id < 15:
                return ext_id
    return None


def element(ext_id: int, min_ms: int, max_ms: int = MAX_MS) -> bytes:
    """The extension as one one-byte-header element (RFC 8285): id, then min and max in 10 ms."""
    low = min(max(min_ms, 0) // _UNIT_MS, _LIMIT)
    high = min(max(max_ms // _UNIT_MS, low), _LIMIT)
    return bytes(((ext_id << 4) | 2, low >> 4, ((low & 0xF) << 4) | (high >> 8), high & 0xFF))


class WithPlayoutDelay:
    """aiortc's header-extension map for one sender, with the playout delay added.

    ``RtpPacket.serialize`` calls ``set``; ``min_ms`` is what the next packets
    carry (None: no extension, as long as no hold was asked for).
    """

    def __init__(self, base: Any, ext_id: int) -> None:
        self.base = base
        self.ext_id = ext_id
        self.min_ms: int | None = None
        self.most_ms = 0  # the longest hold sent
        self._element = b""

    def hold(self, min_ms: int) -> None:
        """Set the minimum the next packets carry (0: none; after a hold, ``RELEASED_MS``)."""
        if min_ms <= 0:
            if self.min_ms is None:
                return
            min_ms = RELEASED_MS
        if min_ms != self.min_ms:
            self.min_ms = min_ms
            self.most_ms = max(self.most_ms, min_ms)
            self._element = element(self.ext_id, min_ms)

    def set(self, values: Any) -> tuple[int, bytes]:
        profile, value = self.base.set(values)
        if not self._element or profile not in (0, 0xBEDE):
            return profile, value  # nothing to add, or aiortc chose the two-byte form
        # Padding between elements is allowed (RFC 8285 4.2): appended as is.
        value += self._element
        return 0xBEDE, value + b"\x00" * (-len(value) % 4)


def within(took: list[int], tenths: int) -> int:
    """The least of sorted ``took`` that ``tenths`` in ten of them are at most."""
    return took[(tenths * len(took) + 9) // 10 - 1]


def hold_for(repair_ms: Iterable[int]) -> int:
    """The hold for these repair times (ms): nine in ten of them, and the
    margin, rounded up to a step."""
    p90 = within(sorted(repair_ms), 9)
    return math.ceil((p90 + HOLD_MARGIN_MS) / HOLD_STEP_MS) * HOLD_STEP_MS
