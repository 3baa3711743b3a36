"""TCP ports for the servers that tests start, each handed out once in a run.

Binding port 0 and closing gives a port that nothing listens on *now*; the
server meant to listen on it binds it seconds later (its imports, migrations,
media workers). In that window the port can be taken:

- by another caller given the same port: the two web processes of a cluster
  test (the kernel gave one port twice in 3 of 20,000 back-to-back pairs here),
  or tests in two xdist workers. The second server fails to bind, and a
  start-up check that polls the port is answered by the first, so the test
  goes on with both "processes" being one;
- by any outgoing connection: port 0 and ``connect`` draw from the same
  ephemeral range, and a listening socket cannot bind a port a connected
  socket has as its own, ``SO_REUSEADDR`` or not (checked here).

So ``free_port`` hands out ports *below* the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``), which neither port 0 nor ``connect`` ever
picks, and locks a file named after each (``flock``, held until this process
ends), skipping ports another caller holds, in this process or in any other
worker of the run. The locks go with the process; the empty files stay in the
temporary directory, one per port ever handed out.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

LOCKS = Path(tempfile.gettempdir()) / "teleconsult-test-ports"
RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000  # under it: well-known and registered services of the machine
ATTEMPTS = 200

# The lock files this process holds, by port: their descriptors stay open.
_HELD: dict[int, int] = {}


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 by default)."""
    try:
        return int(RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, that no outgoing connection
    can take meanwhile, and that no other test of this run was given."""
    LOCKS.mkdir(mode=0o700, exist_ok=True)
    high = ephemeral_low()
    if high - LOWEST < 1000:
        raise RuntimeError(f"the ephemeral port range starts at {high}: no ports left below it")
    for _ in range(ATTEMPTS):
        port = random.randrange(LOWEST, high)  # noqa: S311 - not a secret
        if port in _HELD:
            continue
        fd = os.open(LOCKS / str(port), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # another worker of this run has it
            continue
        if not _bindable(port):
            os.close(fd)  # a service of the machine, or a test's process still on it
            continue
        _HELD[port] = fd
        return port
    raise RuntimeError(f"no TCP port free of other tests after {ATTEMPTS} tries")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True
