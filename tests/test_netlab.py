"""The impairment harness does what its profiles say, measured across it."""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import struct
import time

import pytest

from .netlab import CLINIC, HOSPITAL, Direction, Host, Lane, Link, Profile

PORT = 40000
# The kernel's receive time of each datagram (Linux; Python names no constant for it).
SO_TIMESTAMP = 29


def udp_socket(host: Host, address: str, port: int = 0) -> socket.socket:
    with host.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    sock.setblocking(False)
    return sock


async def echo_rtts(link: Link, count: int) -> list[float]:
    """Round trips of small UDP datagrams clinic -> hospital -> clinic, in ms."""
    loop = asyncio.get_running_loop()
    server = udp_socket(link.hospital, HOSPITAL, PORT)
    client = udp_socket(link.clinic, CLINIC)

    async def serve() -> None:
        while True:
            data, peer = await loop.sock_recvfrom(server, 2048)
            await loop.sock_sendto(server, data, peer)

    task = loop.create_task(serve())
    rtts = []
    try:
        for n in range(count):
            sent = time.monotonic()
            await loop.sock_sendto(client, n.to_bytes(4, "big"), (HOSPITAL, PORT))
            try:
                async with asyncio.timeout(1.0):
                    while int.from_bytes(await loop.sock_recv(client, 2048), "big") != n:
                        pass
            except TimeoutError:
                continue  # lost on the way there or back
            rtts.append((time.monotonic() - sent) * 1000)
    finally:
        task.cancel()
        server.close()
        client.close()
    return rtts


async def tcp_throughput(link: Link, seconds: float) -> float:
    """Bits per second a TCP stream carries from the clinic to the hospital."""
    loop = asyncio.get_running_loop()
    with link.hospital.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOSPITAL, PORT + 1))
    listener.listen(1)
    listener.setblocking(False)
    with link.clinic.entered():
        sender = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sender.setblocking(False)
    accepted = loop.create_task(loop.sock_accept(listener))
    await loop.sock_connect(sender, (HOSPITAL, PORT + 1))
    receiver, _ = await accepted
    received = 0
    chunk = b"x" * 16384

    async def pump() -> None:
        while True:
            await loop.sock_sendall(sender, chunk)

    pumping = loop.create_task(pump())
    try:
        # Skip the slow start, then count what arrives in the window.
        await loop.sock_recv(receiver, 65536)
        await asyncio.sleep(1.0)  # a warm-up period measured in time, not a condition
        while True:
            try:
                receiver.recv(1 << 20)
            except BlockingIOError:
                break
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            try:
                async with asyncio.timeout(seconds - elapsed):
                    received += len(await loop.sock_recv(receiver, 65536))
            except TimeoutError:
                break
    finally:
        pumping.cancel()
        for s in (sender, receiver, listener):
            s.close()
    return received * 8 / seconds


async def test_a_clean_link_adds_almost_nothing() -> None:
    async with Link(Profile.named("clean")) as link:
        rtts = await echo_rtts(link, 30)
    assert len(rtts) == 30
    assert statistics.median(rtts) < 10


async def test_a_link_whose_second_namespace_fails_ends_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[Host] = []
    make = Host.__init__

    def init(self: Host, name: str) -> None:
        if name == "hospital":
            raise RuntimeError("namespace hospital did not come up")
        make(self, name)
        made.append(self)

    monkeypatch.setattr(Host, "__init__", init)
    with pytest.raises(RuntimeError, match="hospital"):
        async with Link(Profile.named("clean")):
            pass
    [clinic] = made
    assert clinic.process.returncode is not None  # its sleeping process is gone


async def test_delay_is_the_profiles_round_trip() -> None:
    async with Link(Profile.named("1m-5loss-150ms"), seed=7) as link:
        rtts = await echo_rtts(link, 40)
    # 5 % loss one way: most echoes come back; each takes the 150 ms round trip.
    assert len(rtts) >= 30
    assert 148 <= statistics.median(rtts) <= 175, rtts


async def test_the_link_keeps_its_time_while_the_tests_loop_is_busy() -> None:
    """The path runs in its own process: a test (or a benchmark's server) that
    holds its event loop does not hold the packets crossing the link."""
    one_way = Direction(delay_ms=50.0)
    async with Link(Profile(name="delay", up=one_way)) as link:
        receiver = udp_socket(link.hospital, HOSPITAL, PORT)
        receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        sender = udp_socket(link.clinic, CLINIC)
        try:
            sent = time.time()
            for n in range(20):
                sender.sendto(n.to_bytes(4, "big"), (HOSPITAL, PORT))
            # This loop is busy for 300 ms (a benchmark's server relaying a
            # call): nothing here can read the devices or run a timer.
            busy_until = time.monotonic() + 0.3
            while time.monotonic() < busy_until:
                pass
            arrivals = []
            for _ in range(20):
                _, ancillary, _, _ = receiver.recvmsg(64, 64)
                (_, _, stamp), *_ = ancillary
                seconds, microseconds = struct.unpack("qq", stamp[:16])
                arrivals.append(seconds + microseconds / 1e6 - sent)
        finally:
            sender.close()
            receiver.close()
    # Each datagram came off the link at its time (the kernel's receive time),
    # not after the busy spell (300 ms).
    assert all(0.045 <= at <= 0.2 for at in arrivals), arrivals
    assert link.up.late == 0


async def test_random_loss_is_the_profiles_rate() -> None:
    loss = Direction(loss=0.10)
    async with Link(Profile(name="loss", up=loss), seed=3) as link:
        loop = asyncio.get_running_loop()
        server = udp_socket(link.hospital, HOSPITAL, PORT)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        client = udp_socket(link.clinic, CLINIC)
        got = 0

        async def count() -> None:
            nonlocal got
            while True:
                await loop.sock_recv(server, 2048)
                got += 1

        counting = loop.create_task(count())
        try:
            for n in range(2000):
                await loop.sock_sendto(client, n.to_bytes(4, "big"), (HOSPITAL, PORT))
                if n % 50 == 49:
                    await asyncio.sleep(0.005)  # pace the sender like a real stream
            async with asyncio.timeout(2.0):
                while got + link.up.dropped_loss < 2000:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # the counter has no event to wait on
        finally:
            counting.cancel()
            server.close()
            client.close()
    assert got + link.up.dropped_loss == 2000
    assert 0.08 <= 1 - got / 2000 <= 0.12


async def test_the_uplink_carries_its_rate_and_no_more() -> None:
    async with Link(Profile.named("1m")) as link:
        bps = await tcp_throughput(link, 3.0)
    assert 0.8e6 <= bps <= 1.05e6, bps


async def test_udp_blocked_lets_tcp_through_only() -> None:
    async with Link(Profile.named("udp-blocked")) as link:
        assert await echo_rtts(link, 5) == []
        assert link.up.dropped_udp == 5
        assert await tcp_throughput(link, 1.0) > 1e6


@pytest.mark.parametrize("burst", [1.0, 8.0])
async def test_bursty_loss_keeps_the_rate_but_groups_the_drops(burst: float) -> None:
    lane = Lane(Direction(loss=0.05, burst=burst), out_fd=-1, rng=random.Random(11))  # noqa: S311
    lost = []
    for _ in range(20000):
        before = lane.counters.dropped_loss
        lane.push(b"\x45" + b"\x00" * 27, time.monotonic())
        lost.append(lane.counters.dropped_loss > before)
    rate = sum(lost) / len(lost)
    runs = [len(r) for r in "".join("x" if x else " " for x in lost).split() if r]
    assert 0.035 <= rate <= 0.065
    assert statistics.mean(runs) == pytest.approx(burst, rel=0.3)
