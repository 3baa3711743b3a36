"""How long a leg's video packets waited in the browser's pacer, told from the packets.

Every video packet a browser sends carries the time it left the pacer
(abs-send-time, 24 bits of 2^-18 s) and its frame's capture time (the RTP
timestamp, 90 kHz). Their difference is the frame's encoding time plus the
packet's wait in the pacer's queue; over a few seconds its least is the
encoding time alone, so the excess over that least is the queue. A keyframe
asked for while the queue holds packets makes libwebrtc's pacer drop them
(``leg.KEYFRAME_MIN_GAP``): the recorder asks for the keyframes it can time
(the seek interval's) when the queue has been short for a while.

Both clocks are the sender's, so no clock offset enters; the send time wraps
every 64 s and the RTP timestamp every 13 h, and both are unwrapped here.
"""

from __future__ import annotations

from collections import deque

# The least difference is taken over this much of the sender's time (s): long
# enough to hold a moment with an empty queue, short enough that the two
# clocks' drift does not count.
FLOOR_SECONDS = 4.0
# The queue is judged on the packets that arrived in this last stretch (s).
RECENT_SECONDS = 0.3

_ABS_WRAP = 1 << 24
_ABS_UNIT = 1 / (1 << 18)  # seconds per abs-send-time step
_TS_WRAP = 1 << 32


class SendQueue:
    """The pacer's queue of one video stream, from its first sends (not resends:
    their send time includes the NACK's round trip)."""

    def __init__(self, clock_rate: int = 90000) -> None:
        self.clock_rate = clock_rate
        self._ssrc: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._abs_last: int | None = None
        self._abs_base = 0
        self._ts_last: int | None = None
        self._ts_base = 0
        self._ts_first = 0
        # (send time, difference) with rising differences: the sliding least.
        self._floor: deque[tuple[float, float]] = deque()
        # (arrival, excess in ms) of the packets of the last RECENT_SECONDS.
        self._recent: deque[tuple[float, float]] = deque()

    def add(self, ssrc: int, abs_send_time: int, timestamp: int, arrival: float) -> None:
        """A first send's SSRC, abs-send-time, RTP timestamp, and when it came
        (``time.monotonic()``). Another SSRC (the page's stream restarted)
        begins anew: its timestamps have another origin."""
        if ssrc != self._ssrc:
            self._ssrc = ssrc
            self._reset()
        if self._abs_last is not None and abs_send_time < self._abs_last - _ABS_WRAP // 2:
            self._abs_base += _ABS_WRAP
        elif self._abs_last is not None and abs_send_time > self._abs_last + _ABS_WRAP // 2:
            return  # from before a wrap, reordered: not worth unwrapping backwards
        self._abs_last = abs_send_time
        if self._ts_last is None:
            self._ts_first = timestamp
        elif timestamp < self._ts_last - _TS_WRAP // 2:
            self._ts_base += _TS_WRAP
        elif timestamp > self._ts_last + _TS_WRAP // 2:
            return
        self._ts_last = timestamp
        sent = (self._abs_base + abs_send_time) * _ABS_UNIT
        captured = (self._ts_base + timestamp - self._ts_first) / self.clock_rate
        difference = sent - captured
        floor = self._floor
        while floor and floor[-1][1] >= difference:
            floor.pop()
        floor.append((sent, difference))
        while floor[0][0] < sent - FLOOR_SECONDS:
            floor.popleft()
        recent = self._recent
        recent.append((arrival, 1000 * (difference - floor[0][1])))
        while recent[0][0] < arrival - RECENT_SECONDS:
            recent.popleft()

    def queued_ms(self, now: float) -> float | None:
        """The longest wait of the packets that came in the last ``RECENT_SECONDS``
        before ``now`` (ms; None: none came, nothing is known)."""
        recent = self._recent
        while recent and recent[0][0] < now - RECENT_SECONDS:
            recent.popleft()
        if not recent:
            return None
        return max(excess for _, excess in recent)
