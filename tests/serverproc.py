"""What tests and benchmarks need to run the real server as a process of its own.

Imported by the tests (``from ..serverproc import ...``) and by the benchmark
scripts, which put the repository root on ``sys.path`` first. ``ServerProcess``
is ``python -m web.cli serve`` that a test starts, waits for, kills (SIGKILL, as
a crash) or stops (SIGTERM) and starts again on the same port and data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .ports import free_port

ROOT = Path(__file__).resolve().parents[1]
# How long ``serve`` may take to answer /api/health: migrations, the repair of
# a killed process's recordings, media workers, on a loaded 2-core machine.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment for ``python -m web.cli`` on ``data_dir``, listening on loopback.

    The caller's own ``TELECONSULT_*`` variables (a developer's config) are left
    out; password hashing is made cheap (the demo logs in many times). Further
    settings are given by name: ``server_env(d, port="8081")`` sets
    ``TELECONSULT_PORT``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    env.update(
        TELECONSULT_DATA_DIR=str(data_dir),
        TELECONSULT_HOST="127.0.0.1",
        TELECONSULT_ARGON2_TIME_COST="1",
        TELECONSULT_ARGON2_MEMORY_KIB="1024",
        TELECONSULT_ARGON2_PARALLELISM="1",
        # No second factor (as in ``make_settings``) unless a test asks for one.
        TELECONSULT_TOTP_ROLES="",
    )
    env.update({f"TELECONSULT_{name.upper()}": value for name, value in settings.items()})
    return env


@dataclass
class ServerProcess:
    """``python -m web.cli serve`` as a process of its own, started again at will.

    ``env`` is from ``server_env`` and names the port; ``wrap(*argv)`` gives the
    command line that runs ``argv`` somewhere else (``NetNs.command``: in the
    browsers' network namespace, where the caller must then be too).
    """

    env: dict[str, str]
    log: Path
    wrap: Callable[..., list[str]] | None = None
    proc: asyncio.subprocess.Process | None = None

    @classmethod
    def on_free_port(
        cls,
        data_dir: Path,
        log: Path,
        wrap: Callable[..., list[str]] | None = None,
        **settings: str,
    ) -> ServerProcess:
        """A server on a free port of 127.0.0.1: ``server_env(data_dir, **settings)``."""
        env = server_env(data_dir, port=str(free_port()), **settings)
        env["PYTHONPATH"] = str(ROOT)  # this checkout's code, not an installed one
        return cls(env, log, wrap)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.env["TELECONSULT_PORT"])

    @property
    def base(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start ``serve`` (its output appended to ``log``); return once it answers."""
        argv = [sys.executable, "-m", "web.cli", "serve"]
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *(self.wrap(*argv) if self.wrap else argv),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        async with asyncio.timeout(START_TIMEOUT), aiohttp.ClientSession() as http:
            while True:
                assert self.proc.returncode is None, self.log.read_text(errors="replace")
                try:
                    async with http.get(self.base + "/api/health") as resp:
                        if resp.status == 200 and listens(self.proc.pid, self.port):
                            return
                except aiohttp.ClientConnectionError:
                    pass
                # Polling a port that is not open yet, or that another process
                # answers on (this one then dies of "address already in use").
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL, as a crash: nothing is finished or said."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if that takes too long."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port``, in its own
    network namespace (``/proc/<pid>/net``): the server that answered is the one
    started, not another process on the same port."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; then the inode.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue  # closed meanwhile
    return False
