"""The browser's pacer queue told from the packets' send and capture times."""

from __future__ import annotations

import pytest

from media.sendqueue import RECENT_SECONDS, SendQueue


def packet(queue: SendQueue, sent: float, captured: float, ts0: int = 0, ssrc: int = 1) -> None:
    """A packet sent at ``sent`` s of a frame captured at ``captured`` s, arriving
    50 ms after it was sent (the arrival clock is the receiver's own)."""
    abs_send_time = round(sent * (1 << 18)) & 0xFFFFFF
    timestamp = (ts0 + round(captured * 90000)) & 0xFFFFFFFF
    queue.add(ssrc, abs_send_time, timestamp, 1000.0 + sent + 0.05)


def frames(queue: SendQueue, start: float, end: float, late: float, **kw: int) -> float:
    """Frames at 24 fps from ``start`` to ``end`` s, each sent ``late`` s after
    capture plus 5 ms of encoding, in 3 packets 1 ms apart; returns the last arrival."""
    t = start
    while t < end:
        for n in range(3):
            packet(queue, t + 0.005 + late + n * 0.001, t, **kw)
        t += 1 / 24
    return 1000.0 + t + 0.05


def test_packets_sent_as_soon_as_encoded_show_no_queue() -> None:
    queue = SendQueue()
    now = frames(queue, 0.0, 2.0, 0.0)
    queued = queue.queued_ms(now)
    assert queued is not None and queued <= 2.5  # the frame's own packets, 1 ms apart


def test_a_queue_shows_while_it_lasts_and_not_after() -> None:
    queue = SendQueue()
    frames(queue, 0.0, 2.0, 0.0)
    now = frames(queue, 2.0, 2.5, 0.08)  # the pacer holds 80 ms
    assert queue.queued_ms(now) == pytest.approx(82, abs=1)
    now = frames(queue, 2.5, 2.5 + RECENT_SECONDS + 0.15, 0.0)  # the last queued arrive
    queued = queue.queued_ms(now)
    assert queued is not None and queued <= 2.5


def test_nothing_is_known_when_no_packet_came_lately() -> None:
    queue = SendQueue()
    assert queue.queued_ms(1000.0) is None
    now = frames(queue, 0.0, 1.0, 0.0)
    assert queue.queued_ms(now + RECENT_SECONDS + 0.01) is None


@pytest.mark.parametrize(
    ("start", "ts0"),
    [(64.0 - 1.0, 0), (10.0, (1 << 32) - 45_000)],
    ids=["send-time-wraps", "timestamp-wraps"],
)
def test_the_clocks_wrapping_is_no_queue(start: float, ts0: int) -> None:
    # abs-send-time wraps every 64 s, the RTP timestamp every 13 hours.
    queue = SendQueue()
    now = frames(queue, start, start + 2.0, 0.0, ts0=ts0)
    queued = queue.queued_ms(now)
    assert queued is not None and queued <= 2.5
    now = frames(queue, start + 2.0, start + 2.4, 0.05, ts0=ts0)
    assert queue.queued_ms(now) == pytest.approx(52, abs=1)


def test_a_new_stream_begins_anew() -> None:
    # The page's stream restarted (another SSRC): its timestamps have another
    # origin, far ahead of the old one's, and no queue.
    queue = SendQueue()
    frames(queue, 0.0, 2.0, 0.0)
    now = frames(queue, 2.0, 2.5, 0.0, ts0=(1 << 31) + 12345, ssrc=2)
    queued = queue.queued_ms(now)
    assert queued is not None and queued <= 2.5
    now = frames(queue, 2.5, 2.9, 0.04, ts0=(1 << 31) + 12345, ssrc=2)
    assert queue.queued_ms(now) == pytest.approx(42, abs=1)
