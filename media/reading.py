"""What the taps of one recorder share on its event loop: reading and feedback timers.

Left to asyncio, each tapped socket wakes the loop for each frame's burst and
each audio packet (80-100 times a second per stream), and a wake-up (epoll, a
pass of the loop, a callback, a failed read) cost several times what the
packets it brought did: measured, an idle loop woken for single 1,100-byte
datagrams used 95 µs of CPU per datagram on this (loaded) machine, 27 µs in
bursts of five. ``Reading`` reads every tapped socket with one timer and one
``epoll`` call: at most ``1 / POLL_INTERVAL`` wake-ups a second for the
process, however many legs. A packet waits up to ``POLL_INTERVAL`` longer
before the recorder, the relay or a NACK sees it; its arrival time is the
kernel's (``SO_TIMESTAMP``), so transport-wide feedback, REMB and the file's
timing see when it came, not when it was read. One more timer sends every
leg's transport-wide feedback (a timer and a task step per leg every 0.1 s
cost more than building the feedback itself).

The recorder owns one (``Recorder.reading``) and hands it to each ``RtpTap``.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from media import twcc

log = logging.getLogger(__name__)

# Datagrams read from one socket per pass, at most (the loop's other work,
# RTCP and timers, must not starve behind a flood).
DRAIN_MAX = 32
_MAX_DATAGRAM = 1 << 16
# How often the tapped sockets are read, together (seconds): Chromium's pacer
# sends in 5 ms bursts too.
POLL_INTERVAL = 0.005
# The wall clock's offset to the monotonic one (``clock_offset_us``): at most this
# many tries, and a bracket this narrow (ns) is taken at once.
OFFSET_TRIES = 3
OFFSET_CLOSE_NS = 20_000
# The kernel's receive time of each datagram (Linux: SO_TIMESTAMP, SCM_TIMESTAMP
# with a struct timeval), so that reading late does not move arrivals.
_SO_TIMESTAMP = 29
_TIMEVAL = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMEVAL.size)
_POLLING = sys.platform.startswith("linux") and hasattr(select, "epoll")

DataReceived = Callable[..., None]  # (data, component, arrival_us=None)
SendNow = Callable[[], Awaitable[bool]]  # sends a leg's feedback; False once it ended


class _Poller:
    """Reads every socket added to it that has datagrams waiting, every ``POLL_INTERVAL``."""

    def __init__(self, owner: Reading, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.epoll = select.epoll()
        self.readers: dict[int, Callable[[], None]] = {}
        self.timer: asyncio.TimerHandle | None = None

    def add(self, fd: int, drain: Callable[[], None]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = drain
        if self.timer is None:
            self.timer = self.loop.call_later(POLL_INTERVAL, self._tick)

    def remove(self, fd: int) -> None:
        """Stop reading ``fd`` (before it is closed)."""
        if self.readers.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        if not self.readers:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.epoll.close()
            if self.owner.poller is self:
                self.owner.poller = None

    def _tick(self) -> None:
        assert self.timer is not None  # noqa: S101 - cancelled with the last reader
        at = self.timer.when() + POLL_INTERVAL
        self.timer = self.loop.call_at(max(at, self.loop.time()), self._tick)
        self.read()

    def read(self) -> None:
        """Read every socket that has datagrams waiting, now."""
        events = self.epoll.poll(0)
        if not events:
            return
        self.owner.offset_us = clock_offset_us()
        readers = self.readers
        for fd, _ in events:
            drain = readers.get(fd)
            if drain is not None:
                try:
                    drain()
                except Exception:  # one leg's trouble must not stop the others' reading
                    log.exception("reading a recording socket failed")


def clock_offset_us() -> int:
    """``time.time() - time.monotonic()`` in µs.

    The two clocks are read one after the other; a thread switch between the
    reads (a loaded machine) would put the difference off by as long as it
    lasted, 1.5 ms in a CI run. So the wall clock is read between two reads of
    the monotonic one, up to ``OFFSET_TRIES`` times, and the tightest bracket is
    kept (its midpoint).
    """
    best_span, best = -1, 0
    for _ in range(OFFSET_TRIES):
        before = time.monotonic_ns()
        wall = time.time_ns()
        after = time.monotonic_ns()
        span = after - before
        if best_span < 0 or span < best_span:
            best_span, best = span, wall - (before + after) // 2
        if span <= OFFSET_CLOSE_NS:
            break
    return best // 1000


class Reading:
    """One recorder's socket reading and feedback timer (one event loop)."""

    def __init__(self) -> None:
        self.poller: _Poller | None = None
        # time.time() - time.monotonic() in µs, taken at each poll (the
        # kernel's receive times are wall clock; the tap wants monotonic).
        self.offset_us = 0
        # Each leg's feedback sender -> set when its connection has ended.
        self.feedback: dict[SendNow, asyncio.Future[None]] = {}
        self.clock: asyncio.Task[None] | None = None

    def take_over(self, protocol: Any, data_received: DataReceived) -> None:
        """Read ``protocol``'s socket here: RTP to ``data_received``, the rest to the protocol.

        ``protocol`` is aioice's UDP protocol of a host candidate.
        """
        original = protocol.datagram_received
        component = protocol.local_candidate.component
        transport = protocol.transport
        if not hasattr(transport, "pause_reading"):
            # uvloop (the media workers' loop): its UDP transport cannot stop
            # reading, and it reads each datagram in C as it comes, a wake-up
            # costing little; RTP goes straight to the tap, timed on arrival.
            _deliver_as_read(protocol, original, component, data_received)
            return
        # asyncio reads one datagram per wake-up of the loop (a poll, a pass of
        # the loop, a callback): most of what an RTP packet cost beside its own
        # work. The socket is read here instead, on a duplicate of its
        # descriptor (the same socket; asyncio keeps its own and closes both).
        sock = transport.get_extra_info("socket").dup()
        lost = protocol.connection_lost
        if not _POLLING:
            _drain_on_wake_up(protocol, sock, original, component, data_received)
            return
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMP, 1)
        recvmsg, unpack_time = sock.recvmsg, _TIMEVAL.unpack
        error_received = protocol.error_received

        def drain() -> None:
            for _ in range(DRAIN_MAX):
                try:
                    data, ancillary, _flags, addr = recvmsg(_MAX_DATAGRAM, _ANCILLARY)
                except BlockingIOError:
                    return
                except OSError as exc:  # as asyncio's reader would
                    error_received(exc)
                    return
                if data and 127 < data[0] < 192:
                    arrival_us = None
                    for level, kind, value in ancillary:
                        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMP:
                            seconds, micro = unpack_time(value)
                            arrival_us = seconds * 1_000_000 + micro
                    data_received(data, component, arrival_us)
                else:
                    original(data, addr)

        poller = self.poller
        if poller is None:
            poller = self.poller = _Poller(self, asyncio.get_running_loop())
        fd = sock.fileno()
        # asyncio's reader for this socket stops (closing the transport still
        # works as before): the poller reads it.
        transport.pause_reading()
        poller.add(fd, drain)

        def connection_lost(exc: Exception | None) -> None:
            poller.remove(fd)
            sock.close()
            lost(exc)

        protocol.connection_lost = connection_lost

    def read_now(self) -> None:
        """Take what the kernel holds for the sockets now (not at the next poll)."""
        if self.poller is not None:
            self.poller.read()

    async def send_feedback(self, send_now: SendNow) -> None:
        """Call ``send_now`` every ``twcc.INTERVAL`` (one timer for every leg) until it
        returns False (its connection ended)."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.feedback[send_now] = ended
        if self.clock is None:
            self.clock = asyncio.ensure_future(self._feedback_clock())
        try:
            await ended
        finally:
            self.feedback.pop(send_now, None)

    async def _feedback_clock(self) -> None:
        """Every ``twcc.INTERVAL``, each leg's feedback; ends when no leg is left."""
        feedback = self.feedback
        try:
            while feedback:
                await asyncio.sleep(twcc.INTERVAL)
                for send_now, ended in list(feedback.items()):
                    if ended.done():
                        continue
                    try:
                        going = await send_now()
                    except Exception:
                        # One leg's failure (a TURN channel, SRTP) ends its
                        # feedback, not every leg's: the timer is shared.
                        log.exception("transport-wide feedback failed; the leg sends no more")
                        going = False
                    if not going and not ended.done():
                        ended.set_result(None)
        finally:
            # (no await between the last look at ``feedback`` and this: a leg
            # that registers next starts a new clock)
            self.clock = None


def _deliver_as_read(
    protocol: Any, original: Any, component: int, data_received: DataReceived
) -> None:
    """The loop reads the socket (uvloop): RTP to the tap, the rest to aioice."""

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            data_received(data, component)
        else:
            original(data, addr)

    protocol.datagram_received = datagram_received


def _drain_on_wake_up(
    protocol: Any, sock: Any, original: Any, component: int, data_received: DataReceived
) -> None:
    """Without epoll: asyncio wakes the loop; the socket is drained once woken."""
    recvfrom = sock.recvfrom
    lost = protocol.connection_lost

    def datagram_received(data: bytes, addr: Any) -> None:
        for _ in range(DRAIN_MAX):
            if data and 127 < data[0] < 192:
                data_received(data, component)
            else:
                original(data, addr)
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except OSError:  # BlockingIOError: drained (other errors: asyncio's reader sees them)
                return

    def connection_lost(exc: Exception | None) -> None:
        sock.close()
        lost(exc)

    protocol.datagram_received = datagram_received
    protocol.connection_lost = connection_lost
