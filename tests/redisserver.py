"""A real Redis for the tests and benchmarks: Debian's ``redis-server`` on a free port.

``RedisServer(folder).start()`` runs ``redis-server`` on loopback with its files in
``folder`` (no persistence: a throwaway), and waits until it answers ``PING``;
``stop()`` ends that process by its id. ``redis_or_skip()`` fails under CI (which
installs ``redis-server``, see .ci/run) and skips elsewhere, like the browser tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .ports import free_port
from .requirements import require

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 20.0


def redis_available() -> bool:
    """Whether ``redis-server`` is installed."""
    return os.access(REDIS_SERVER, os.X_OK)


def redis_or_skip() -> None:
    """Fail under CI (which provides redis-server), skip elsewhere."""
    require(redis_available(), "redis-server is needed (apt-get install redis-server)")


class RedisServer:
    """One redis-server process with its own directory and port."""

    def __init__(self, folder: Path, wrap: Callable[..., list[str]] | None = None) -> None:
        """``wrap(*argv)``: the command line that runs ``argv`` (e.g. in a network
        namespace); the port is then probed from the caller's thread, which must
        be in the same place."""
        self.folder = folder
        self.wrap = wrap
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        if self.wrap is not None:
            args = self.wrap(*args)
        with (self.folder / "redis.log").open("wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "redis-server exited: " + (self.folder / "redis.log").read_text()[-2000:]
                )
            if self._ping():
                return
            time.sleep(0.05)  # polling a starting process: there is no event to await
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
