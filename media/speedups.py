"""aiortc's per-packet bookkeeping made cheaper, with the same results.

The REMB estimator and the NACK generator ran for every received video packet
and were the largest part of a recorded stream's CPU after SRTP (profiled: 27 %
and 18 % of the loop). These replace parts of the instances the tap feeds, on
the same objects and with the same statements; ``tests/media/test_seam.py``
compares both with aiortc's own after every packet.
"""

from __future__ import annotations

import collections
import gc
from collections.abc import Callable
from typing import Any

import aiortc
import aiortc.rate
import aiortc.rtp
import aiortc.utils
from aiortc.utils import uint16_add, uint16_gt

# Allocations of container objects between two young-generation collections
# of the cyclic garbage collector in a recording process (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def collect_less() -> None:
    """Run CPython's cyclic garbage collector less often in this process.

    A recording process allocates many objects the collector tracks as legs
    are set up (aiortc's peer connection, its transports and codecs) and, for
    every packet, a few short-lived ones (its header, the tuple kept for the
    writer, which lives until its batch is written 0.1 s later). With the
    default threshold (700 more tracked objects than were freed) the young
    generation was collected about once a second at 8 streams, the survivors
    went up, and soon after the legs' setup a collection of the whole heap
    (aiortc, PyAV, the app) followed: 91 ms of CPU for one, 9 % of a
    benchmark window's CPU at 8 streams (perf: ``gc_collect_main``,
    ``visit_decref``, ``visit_reachable``). At 50,000 the collector runs about
    seventy times less often; what it frees is only cyclic garbage (reference
    counting frees the rest at once), so memory grows by a few MB at most.
    """
    young, middle, old = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class _RateCounter:
    """aiortc's ``rate.RateCounter`` (bytes received in the last window, by the
    millisecond) with the same results, at a cost per packet rather than per
    elapsed millisecond: aiortc's steps its 1 ms buckets one by one, twice for
    every packet, which was a fifth of the REMB estimator's cost."""

    def __init__(self, window_size: int, scale: int) -> None:
        self._window = window_size
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        """Forget everything (as aiortc's ``reset``)."""
        self._entries: collections.deque[tuple[int, int]] = collections.deque()
        self._origin_ms: int | None = None
        self._count = 0
        self._value = 0

    def _erase_old(self, now_ms: int) -> None:
        assert self._origin_ms is not None  # noqa: S101 - set by the first add
        new_origin = now_ms - self._window + 1
        if self._origin_ms < new_origin:
            entries = self._entries
            while entries and entries[0][0] < new_origin:
                self._value -= entries.popleft()[1]
                self._count -= 1
            self._origin_ms = new_origin

    def add(self, value: int, now_ms: int) -> None:
        """Count ``value`` bytes received at ``now_ms``."""
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._entries.append((now_ms, value))
        self._count += 1
        self._value += value

    def rate(self, now_ms: int) -> int | None:
        """Bits per second over the window (None before two milliseconds of data)."""
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._value / active_window_size)
        return None


def speed_up_estimator(estimator: Any) -> None:
    """Make a fresh aiortc ``RemoteBitrateEstimator`` cheaper, with the same results.

    Its rate counter becomes ``_RateCounter``, and its overuse estimator's
    minimum over the last 60 frame periods is taken with ``min`` instead of a
    loop of 60 calls a frame. ``tests/media/test_seam.py`` feeds both versions
    the same packets and compares every estimate.
    """
    counter = estimator.incoming_bitrate
    estimator.incoming_bitrate = _RateCounter(counter._window_size, counter._scale)
    overuse = estimator.estimator
    history: list[float] = overuse.ts_delta_hist
    keep = aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH

    def update_min_frame_period(ts_delta: float) -> float:
        if len(history) >= keep:
            history.pop(0)
        least = min(history) if history else ts_delta
        history.append(ts_delta)
        return least if least < ts_delta else ts_delta

    overuse.update_min_frame_period = update_min_frame_period
    estimator.add = _fused_add(estimator)


def _fused_add(estimator: Any) -> Callable[[int, int, int, int], tuple[int, list[int]] | None]:
    """aiortc's ``RemoteBitrateEstimator.add`` with its inter-arrival grouping
    (``InterArrival.compute_deltas``) written out in line: the same statements
    in the same order on the same objects, a handful of calls fewer per packet."""
    rate = aiortc.rate
    counter = estimator.incoming_bitrate
    inter = estimator.inter_arrival
    overuse, detector, control = estimator.estimator, estimator.detector, estimator.rate_control
    ssrcs: dict[int, int] = estimator.ssrcs
    group_length, to_ms = inter.group_length, inter.timestamp_to_ms
    group_type, burst_ms, timestamp_to_ms = (
        rate.TimestampGroup,
        rate.BURST_DELTA_THRESHOLD_MS,
        rate.TIMESTAMP_TO_MS,
    )
    overusing = rate.BandwidthUsage.OVERUSING
    uint32_gt = aiortc.utils.uint32_gt

    def add(
        arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        timestamp = abs_send_time << 8
        ssrcs[ssrc] = arrival_time_ms
        if counter.rate(arrival_time_ms) is not None:
            estimator.incoming_bitrate_initialized = True
        elif estimator.incoming_bitrate_initialized:
            counter.reset()
            estimator.incoming_bitrate_initialized = False
        counter.add(payload_size, arrival_time_ms)

        # InterArrival.compute_deltas
        delta: tuple[int, int, int] | None = None
        current = inter.current_group
        in_order = True
        if current is None:
            current = inter.current_group = group_type(timestamp)
        elif (timestamp - current.first_timestamp) & 0xFFFFFFFF >= 0x80000000:
            in_order = False  # out of order: not counted in any group
        else:
            timestamp_delta_ms = round(to_ms * ((timestamp - current.last_timestamp) & 0xFFFFFFFF))
            arrival_time_delta = arrival_time_ms - current.arrival_time
            burst = timestamp_delta_ms == 0 or (
                arrival_time_delta - timestamp_delta_ms < 0 and arrival_time_delta <= burst_ms
            )
            if not burst and (timestamp - current.first_timestamp) & 0xFFFFFFFF > group_length:
                previous = inter.previous_group
                if previous is not None:
                    delta = (
                        (current.last_timestamp - previous.last_timestamp) & 0xFFFFFFFF,
                        current.arrival_time - previous.arrival_time,
                        current.size - previous.size,
                    )
                inter.previous_group = current
                current = inter.current_group = group_type(timestamp=timestamp)
            elif uint32_gt(timestamp, current.last_timestamp):
                current.last_timestamp = timestamp
        if in_order:
            current.size += payload_size
            current.arrival_time = arrival_time_ms

        if delta is not None:
            delta_ms = delta[0] * timestamp_to_ms
            overuse.update(delta[1], delta_ms, delta[2], detector.state(), arrival_time_ms)
            detector.detect(overuse.offset(), delta_ms, overuse.num_of_deltas(), arrival_time_ms)

        last = estimator.last_update_ms
        if (
            last is None
            or arrival_time_ms - last > control.feedback_interval()
            or detector.state() == overusing
        ):
            target_bitrate = control.update(
                detector.state(), counter.rate(arrival_time_ms), arrival_time_ms
            )
            if target_bitrate is not None:
                estimator.last_update_ms = arrival_time_ms
                return target_bitrate, list(ssrcs.keys())
        return None

    return add


def speed_up_nack(nack: Any, history: int) -> None:
    """Make an aiortc ``NackGenerator`` cheaper, and let it keep a missing number
    until ``history`` newer ones have come (aiortc: ``RTP_HISTORY_SIZE``, 128).

    aiortc's ``truncate`` (called for every packet) compares every missing
    sequence number with the newest less 128: with a few dozen missing (a
    loaded receiver, a lossy uplink) that was the largest part of a packet's
    bookkeeping. Nothing can expire before the oldest missing number does, and
    numbers become missing only newer than all others, so the full pass runs
    only once the oldest one seen by the last pass has expired (or when that is
    unknown). ``tests/media/test_seam.py`` compares it with aiortc's, given the
    same history.
    """
    oldest: list[int | None] = [None]  # the oldest missing after the last full pass

    def full() -> None:
        # aiortc's ``NackGenerator.truncate``, with ``history`` for its constant.
        min_seq = uint16_add(nack.max_seq, -history)
        for seq in list(nack.missing):
            if uint16_gt(min_seq, seq):
                nack.missing.discard(seq)

    def truncate() -> None:
        missing = nack.missing
        if not missing or nack.max_seq is None:
            oldest[0] = None
            return
        known = oldest[0]
        if (
            known is not None
            and known in missing  # not given up or received since (the tap discards)
            and not uint16_gt(uint16_add(nack.max_seq, -history), known)
        ):
            return  # nothing has expired yet
        full()
        newest = nack.max_seq
        oldest[0] = max(missing, key=lambda seq: (newest - seq) & 0xFFFF) if missing else None

    nack.truncate = truncate
