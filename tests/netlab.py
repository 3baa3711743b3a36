"""A township link on one machine: two network namespaces joined by an impaired path.

The kernel here has no ``netem`` (shared notes: tbf and nftables work, delay does
not), so the path is a user-space relay between two TUN devices, one in each
namespace: every IP packet one side sends is read by the relay, held for the
one-way delay, dropped at random (or in bursts), queued behind a token bucket
for the uplink's rate, and written into the other side's TUN device, where the
kernel receives it as if it came off a wire. One mechanism for delay, loss and
rate, per direction, and tested (``tests/test_netlab.py``) by measuring what
crosses it.

    async with Link(Profile.named("1m-5loss-150ms")) as link:
        link.clinic.run("...")      # a command in the clinic's namespace
        with link.hospital.entered():
            ...                      # sockets made here live in the hospital

Addresses come from 198.18.0.0/15, the range set aside for benchmarking
(RFC 2544): the clinic is 198.18.0.1, the hospital 198.18.0.2. Needs root.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import fcntl
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from typing import Any

CLINIC = "198.18.0.1"
HOSPITAL = "198.18.0.2"
MTU = 1400
LATE_MS = 5.0  # a packet delivered later than this after its time is counted late

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_CLONE_NEWNET = 0x40000000
_UDP = 17


@dataclass(frozen=True, kw_only=True)
class Direction:
    """What one direction of the path does to packets."""

    rate_bps: int | None = None  # None: unlimited
    delay_ms: float = 0.0  # one way
    loss: float = 0.0  # probability a packet is dropped (random loss)
    burst: float = 1.0  # mean length of a loss burst, in packets (1: independent)
    queue_ms: float = 200.0  # what the bottleneck's buffer holds before it drops
    block_udp: bool = False


@dataclass(frozen=True, kw_only=True)
class Profile:
    """A township link: the clinic's uplink and downlink."""

    name: str
    up: Direction = field(default_factory=Direction)  # clinic -> hospital
    down: Direction = field(default_factory=Direction)  # hospital -> clinic

    @staticmethod
    def named(name: str) -> Profile:
        """One of the profiles the issue and the benchmark use."""
        return PROFILES[name]


def _symmetric_delay(profile: Profile, rtt_ms: float) -> Profile:
    half = rtt_ms / 2
    return replace(
        profile,
        up=replace(profile.up, delay_ms=half),
        down=replace(profile.down, delay_ms=half),
    )


def _lossy(percent: int, rtt_ms: float) -> tuple[str, Profile]:
    """A 1 Mbit/s uplink losing ``percent`` % of its UDP, at ``rtt_ms``: named for both."""
    name = f"1m-{percent}loss-{rtt_ms:.0f}ms"
    up = Direction(rate_bps=1_000_000, loss=percent / 100)
    return name, _symmetric_delay(Profile(name=name, up=up), rtt_ms)


PROFILES: dict[str, Profile] = {
    "clean": Profile(name="clean"),
    "1m": Profile(name="1m", up=Direction(rate_bps=1_000_000)),
    # A slower township line: the leg's start (0.8 Mbit/s) is above it.
    "600k": Profile(name="600k", up=Direction(rate_bps=600_000)),
    # The lossy links; then, past them, where the pre-call check's
    # "unusable" line was drawn (15 % and 20 %).
    **dict(_lossy(percent, rtt) for percent, rtt in ((5, 150), (10, 300), (15, 300), (20, 300))),
    "udp-blocked": Profile(
        name="udp-blocked", up=Direction(block_udp=True), down=Direction(block_udp=True)
    ),
}


class Host:
    """A network namespace kept alive by a sleeping process, with ``lo`` up."""

    def __init__(self, name: str) -> None:
        """Make the namespace (needs root, ``unshare`` and ``ip``)."""
        self.name = name
        unshare, ip = shutil.which("unshare"), shutil.which("ip")
        if os.geteuid() != 0 or unshare is None or ip is None:
            raise RuntimeError("netlab needs root, unshare and ip")
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
            [
                unshare,
                "--net",
                "/bin/sh",
                "-c",
                f"{ip} link set lo up && echo ready && exec sleep 86400",
            ],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline() != b"ready\n":
            self.close()
            raise RuntimeError(f"namespace {name} did not come up")

    @property
    def path(self) -> str:
        """The namespace's file, for setns and nsenter."""
        return f"/proc/{self.process.pid}/ns/net"

    def command(self, *argv: str) -> list[str]:
        """``argv`` to run inside the namespace."""
        return [shutil.which("nsenter") or "nsenter", f"--net={self.path}", *argv]

    def run(self, *argv: str) -> str:
        """Run a command inside the namespace; its output (raises on failure)."""
        done = subprocess.run(  # noqa: S603 - the test's own commands
            self.command(*argv), capture_output=True, text=True, check=False, timeout=30
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with this thread in the namespace (sockets made there stay)."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name} failed")
            try:
                yield
            finally:
                if libc.setns(own, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back failed")
        finally:
            os.close(own)
            os.close(target)

    def tun(self, ifname: str, address: str) -> int:
        """A TUN device in this namespace with ``address``/24; its file descriptor."""
        with self.entered():
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", ifname.encode(), _IFF_TUN | _IFF_NO_PI))
        # A long queue: a burst the relay has not read yet must not be dropped
        # by the kernel (the relay's own queue models the bottleneck).
        self.run("ip", "link", "set", ifname, "mtu", str(MTU), "txqueuelen", "10000", "up")
        self.run("ip", "addr", "add", f"{address}/24", "dev", ifname)
        return fd

    def close(self) -> None:
        """End the namespace (its devices go with it)."""
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Counters:
    """What one direction did, for reports and the self-test.

    Kept in memory the relay's process shares with the test's (``Link``): the
    relay writes them, the test reads them while the link runs.
    """

    # ``late``: delivered more than ``LATE_MS`` after the profile says (the
    # relay's process did not get a core in time: not the link's doing).
    FIELDS = ("packets", "dropped_loss", "dropped_queue", "dropped_udp", "delivered", "late")

    def __init__(self, cells: memoryview | None = None) -> None:
        """Counters over ``cells`` (int64s, one per field), or private ones."""
        size = 8 * len(Counters.FIELDS)
        self._cells = cells if cells is not None else memoryview(bytearray(size)).cast("q")

    def __getattr__(self, name: str) -> int:
        try:
            return int(self._cells[Counters.FIELDS.index(name)])
        except ValueError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: int) -> None:
        if name in Counters.FIELDS:
            self._cells[Counters.FIELDS.index(name)] = value
        else:
            super().__setattr__(name, value)


class Lane:
    """One direction: loss, then a token-bucket bottleneck, then the delay line."""

    def __init__(
        self, spec: Direction, out_fd: int, rng: random.Random, counters: Counters | None = None
    ) -> None:
        """A lane that writes what it lets through to ``out_fd``."""
        self.spec = spec
        self.out_fd = out_fd
        self.rng = rng
        self.counters = counters or Counters()
        self.in_burst = False
        self.link_free_at = 0.0  # when the bottleneck finishes what it holds
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.wakeup: asyncio.Event = asyncio.Event()

    def _lost(self) -> bool:
        loss = self.spec.loss
        if loss <= 0:
            return False
        if self.spec.burst <= 1:
            return self.rng.random() < loss
        # Gilbert model: mean burst length ``burst``, long-run loss rate ``loss``.
        leave = 1 / self.spec.burst
        enter = loss * leave / (1 - loss)
        self.in_burst = self.rng.random() >= leave if self.in_burst else self.rng.random() < enter
        return self.in_burst

    def push(self, packet: bytes, now: float) -> None:
        self.counters.packets += 1
        if self.spec.block_udp and len(packet) > 9 and packet[0] >> 4 == 4 and packet[9] == _UDP:
            self.counters.dropped_udp += 1
            return
        if self._lost():
            self.counters.dropped_loss += 1
            return
        leaves = now
        if self.spec.rate_bps:
            start = max(now, self.link_free_at)
            if (start - now) * 1000 > self.spec.queue_ms:
                self.counters.dropped_queue += 1  # the bottleneck's buffer is full
                return
            self.link_free_at = start + len(packet) * 8 / self.spec.rate_bps
            leaves = self.link_free_at
        self.pending.append((leaves + self.spec.delay_ms / 1000, packet))
        self.wakeup.set()

    async def deliver(self) -> None:
        while True:
            if not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            due, packet = self.pending[0]
            wait = due - time.monotonic()
            if wait > 0:
                # A timer, not a condition: the packet is due at a moment in time.
                await asyncio.sleep(wait)
                continue
            self.pending.popleft()
            if -wait * 1000 > LATE_MS:
                self.counters.late += 1
            try:
                os.write(self.out_fd, packet)
                self.counters.delivered += 1
            except BlockingIOError:
                self.counters.dropped_queue += 1


class Link:
    """The clinic and the hospital, joined by an impaired path (an async context).

    The path runs in a process of its own (``relay``), not on the caller's event
    loop: a network's timing must not depend on what the test's process is busy
    with. On the loop of a township benchmark that also ran the server and its
    relay, packets left the path up to 50-70 ms late at the 99th percentile
    (389 ms at worst): jitter no real link had, which the browsers' congestion
    control read as a full queue.
    """

    def __init__(self, profile: Profile, *, seed: int = 1) -> None:
        """Describe the link; it is built on ``__aenter__``."""
        self.profile = profile
        self.seed = seed
        self.clinic: Host
        self.hospital: Host
        self.up: Counters
        self.down: Counters
        self._fds: list[int] = []
        self._shared: mmap.mmap | None = None
        self._relay: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Link:
        self.clinic = Host("clinic")
        try:
            self.hospital = Host("hospital")
            clinic_fd = self.clinic.tun("tc-clinic", CLINIC)
            self._fds.append(clinic_fd)
            hospital_fd = self.hospital.tun("tc-hospital", HOSPITAL)
            self._fds.append(hospital_fd)
            # Both lanes' counters, in memory the relay's process shares.
            shared_fd = os.memfd_create("netlab-counters")
            self._fds.append(shared_fd)
            os.ftruncate(shared_fd, _COUNTERS_BYTES)
            self._shared = mmap.mmap(shared_fd, _COUNTERS_BYTES)
            self.up, self.down = _shared_counters(self._shared)
            spec = {"up": asdict(self.profile.up), "down": asdict(self.profile.down)}
            self._relay = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                json.dumps(spec),
                str(self.seed),
                str(clinic_fd),
                str(hospital_fd),
                str(shared_fd),
                pass_fds=(clinic_fd, hospital_fd, shared_fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert self._relay.stdout is not None
            async with asyncio.timeout(30):
                if await self._relay.stdout.readline() != b"ready\n":
                    raise RuntimeError("the link's relay did not start")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._relay is not None:
            assert self._relay.stdin is not None
            self._relay.stdin.close()  # the relay ends when its input does
            try:
                async with asyncio.timeout(10):
                    await self._relay.wait()
            except TimeoutError:
                self._relay.kill()
                await self._relay.wait()
        if self._shared is not None:
            # Keep what the lanes counted readable after the link is gone.
            final = bytes(self._shared)
            self.up, self.down = _shared_counters(bytearray(final))
            with suppress(BufferError):  # a caller still holds the live counters
                self._shared.close()
        for fd in self._fds:
            os.close(fd)
        for host in (getattr(self, "clinic", None), getattr(self, "hospital", None)):
            if host is not None:
                host.close()


_COUNTERS_BYTES = 2 * 8 * len(Counters.FIELDS)


def _shared_counters(buffer: Any) -> tuple[Counters, Counters]:
    """The up and down lanes' counters over ``buffer`` (``_COUNTERS_BYTES`` long)."""
    cells = memoryview(buffer).cast("q")
    half = len(Counters.FIELDS)
    return Counters(cells[:half]), Counters(cells[half:])


async def relay(
    spec: dict[str, Any], seed: int, clinic_fd: int, hospital_fd: int, shared_fd: int
) -> None:
    """The impaired path between the two TUN devices, until standard input ends."""
    shared = mmap.mmap(shared_fd, _COUNTERS_BYTES)
    up_counters, down_counters = _shared_counters(shared)
    rng = random.Random(seed)  # noqa: S311 - an impairment, not a secret
    up = Lane(Direction(**spec["up"]), hospital_fd, rng, up_counters)
    down = Lane(Direction(**spec["down"]), clinic_fd, rng, down_counters)
    loop = asyncio.get_running_loop()

    def read(fd: int, lane: Lane) -> None:
        now = time.monotonic()
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            lane.push(packet, now)

    loop.add_reader(clinic_fd, read, clinic_fd, up)
    loop.add_reader(hospital_fd, read, hospital_fd, down)
    tasks = [loop.create_task(lane.deliver()) for lane in (up, down)]
    ended = asyncio.Event()
    loop.add_reader(0, ended.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await ended.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    # A wire is never busy with anything else: the relay takes the CPU before
    # the browsers and the server it carries packets between (real-time
    # priority; it sleeps on its timers and its devices otherwise, and the
    # kernel's real-time throttling keeps 5 % of each second for the rest).
    with suppress(PermissionError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    spec_json, seed_arg, *fds = sys.argv[1:]
    asyncio.run(relay(json.loads(spec_json), int(seed_arg), *(int(fd) for fd in fds)))
