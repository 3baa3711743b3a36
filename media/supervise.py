"""The media workers as processes and connections: start, supervision, restart, loss.

``Workers`` keeps one ``Slot`` per worker of a ``media.pool.WorkerPool``: it
starts ``local`` workers itself (``python -m media.worker`` on a Unix socket in
a private temporary folder, their stdin held so that they die with this
process) and connects to remote ones by address. Each connection (``Conn``)
carries the pool's requests and the worker's answers; the worker's events about
legs go to the pool (``on_event``). A worker is lost when its connection ends
or its process exits; then everything that waited on it fails with
``WorkerGone``, the pool repairs and reports the legs it carried (``on_lost``),
and the worker is started again (or, remote, reconnected) after a short
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import media
from media import rpc
from media.errors import RecordingFailed
from media.host import LegCounts, WorkerLoad
from media.leg import RecordingKey

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a worker imports aiortc and PyAV on a loaded machine
CALL_TIMEOUT = 60.0  # an answer gathers candidates; a stop finalizes a file
RESTART_DELAY = 0.5
RESTART_MAX_DELAY = 10.0
STABLE_SECONDS = 10.0  # a worker that ran this long resets the backoff
WORKER_GONE = "media worker stopped"
# Workers start from the repository (or installed) root, so that
# ``-m media.worker`` imports this very package.
PACKAGE_ROOT = Path(media.__file__).resolve().parents[1]


class WorkerGone(RecordingFailed):
    """The media worker that carried (or was to carry) a leg is not there.

    Its code stays ``recording_failed``: to the page it is a recording that
    could not start or go on (the message names the worker, for the logs).
    """


@dataclass(eq=False)
class Conn:
    """One connected worker."""

    name: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pid: int | None = None
    process: asyncio.subprocess.Process | None = None
    alive: bool = True
    # Every leg placed here, including those still being negotiated.
    legs: set[RecordingKey] = field(default_factory=set)
    counts: dict[RecordingKey, LegCounts] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def call(self, op: str, **args: Any) -> Any:
        """Send a request and return the worker's answer.

        Raises:
            WorkerGone: the worker is lost, or did not answer in time.
            RecordingFailed: the worker answered with an error.
        """
        if not self.alive:
            raise WorkerGone(f"{WORKER_GONE}: {self.name}")
        ident = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        try:
            self.writer.write(rpc.dumps({"id": ident, "op": op, **args}))
            async with asyncio.timeout(CALL_TIMEOUT):
                return await future
        except (ConnectionError, OSError) as exc:
            raise WorkerGone(f"{WORKER_GONE}: {self.name}") from exc
        except TimeoutError as exc:
            # A worker that does not answer in a minute is hung: a local one is
            # killed, which ends it as lost (its legs repaired, the pages told).
            if self.process is not None and self.process.returncode is None:
                log.error("media worker %s did not answer %s: killed", self.name, op)
                self.process.kill()
            raise WorkerGone(f"{WORKER_GONE}: {self.name} did not answer") from exc
        finally:
            self.pending.pop(ident, None)


@dataclass(eq=False)
class Slot:
    """A place for one worker: started here (local) or reached by address."""

    name: str
    address: str | None = None  # remote host:port
    conn: Conn | None = None
    first_try: asyncio.Event = field(default_factory=asyncio.Event)


class Workers:
    """The pool's worker processes and connections, kept running until closed."""

    def __init__(
        self,
        directory: Path,
        *,
        local: int,
        addresses: Sequence[str],
        token: str,
        args: Sequence[str],
        on_event: Callable[[Conn, dict[str, Any]], None],
        on_lost: Callable[[Conn], Awaitable[None]],
    ) -> None:
        """Describe the workers (``open`` starts them).

        Args:
            directory: the recordings directory the workers write under.
            local: how many workers to start and supervise here.
            addresses: ``host:port`` of workers started elsewhere.
            token: what remote workers ask of their controller.
            args: the local workers' further command-line arguments.
            on_event: called with each event a worker sends about its legs.
            on_lost: called once a lost worker's connection is closed and its
                requests failed (not while closing): its legs are the pool's.
        """
        self.slots = [Slot(name=f"local-{i + 1}") for i in range(local)] + [
            Slot(name=address, address=address) for address in addresses
        ]
        self.token = token
        self.on_event = on_event
        self.on_lost = on_lost
        self._args = list(args)
        self._absolute = directory.resolve()
        self._sockets: Path | None = None
        self._keepers: list[asyncio.Task[None]] = []
        self._closing = False
        self._changed: asyncio.Condition | None = None
        self._closed: asyncio.Event | None = None

    async def open(self) -> None:
        """Start the local workers, reach the remote ones; returns once each was tried."""
        if any(slot.address is None for slot in self.slots):
            # A private folder (0700) for the Unix sockets: only this user may
            # talk to the workers. /tmp keeps the paths under the 108-byte limit.
            self._sockets = Path(tempfile.mkdtemp(prefix="teleconsult-media-"))
        self._changed = asyncio.Condition()
        self._closed = asyncio.Event()
        for slot in self.slots:
            self._keepers.append(asyncio.create_task(self._keep(slot)))
        await asyncio.gather(*(slot.first_try.wait() for slot in self.slots))

    async def close(self) -> None:
        """Stop the workers (no restarts from now on)."""
        self._closing = True
        if self._closed is not None:
            self._closed.set()
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.writer.close()  # the worker exits when its controller goes
        await asyncio.gather(*self._keepers, return_exceptions=True)
        if self._sockets is not None:
            shutil.rmtree(self._sockets, ignore_errors=True)

    @property
    def closing(self) -> bool:
        """Whether the pool is shutting down (no restarts then)."""
        return self._closing

    def live(self) -> list[Conn]:
        """The connections of the workers that are running now."""
        return [s.conn for s in self.slots if s.conn is not None and s.conn.alive]

    def loads(self) -> list[WorkerLoad]:
        """Legs per worker (a lost one shows as not alive, with none)."""
        out = []
        for slot in self.slots:
            conn = slot.conn
            alive = conn is not None and conn.alive
            out.append(
                WorkerLoad(
                    name=slot.name,
                    pid=conn.pid if conn is not None else None,
                    legs=len(conn.legs) if conn is not None and alive else 0,
                    alive=alive,
                )
            )
        return out

    async def all_running(self) -> None:
        """Return once every worker is running and connected (after a restart, say)."""
        assert self._changed is not None  # noqa: S101 - open() first
        async with self._changed:
            await self._changed.wait_for(lambda: all(load.alive for load in self.loads()))

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def _keep(self, slot: Slot) -> None:
        # Start (or reach) the slot's worker, serve it until it is lost, repair
        # what it left, and again, until the pool closes.
        delay = RESTART_DELAY
        while not self._closing:
            began = time.monotonic()
            try:
                conn = await (self._reach(slot) if slot.address else self._spawn(slot))
            except Exception as exc:
                log.warning("media worker %s could not be started or reached: %s", slot.name, exc)
                conn = None
            slot.first_try.set()
            if conn is not None and self.closing:
                conn.writer.close()  # started while the pool closed: it ends now
            if conn is not None:
                slot.conn = conn
                await self._notify()
                await self._serve(conn)
                slot.conn = None
                await self._notify()
                await self._lost(conn)
            if self.closing:
                break
            if time.monotonic() - began > STABLE_SECONDS:
                delay = RESTART_DELAY
            # A backoff: a worker that dies at once (a broken install) must not
            # be restarted in a tight loop; closing the pool cuts it short.
            assert self._closed is not None  # noqa: S101 - set by open()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_DELAY)

    async def _spawn(self, slot: Slot) -> Conn:
        assert self._sockets is not None  # noqa: S101 - set by open() for local slots
        path = self._sockets / f"{slot.name}.sock"
        path.unlink(missing_ok=True)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "media.worker",
            "--listen",
            f"unix:{path}",
            "--directory",
            str(self._absolute),
            "--log-level",
            str(level),
            "--watch-stdin",
            *self._args,
            cwd=PACKAGE_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None  # noqa: S101 - piped above
            async with asyncio.timeout(START_TIMEOUT):
                line = await process.stdout.readline()
            if not line:
                raise RecordingFailed(f"media worker {slot.name} exited at start")
            pid = json.loads(line)["pid"]
            reader, writer = await asyncio.open_unix_connection(str(path), limit=rpc.LINE_LIMIT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        log.info("media worker %s started (pid %d)", slot.name, pid)
        return Conn(name=slot.name, reader=reader, writer=writer, pid=pid, process=process)

    async def _reach(self, slot: Slot) -> Conn:
        assert slot.address is not None  # noqa: S101 - remote slots have one
        host, _, port = slot.address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=rpc.LINE_LIMIT)
        if self.token:
            writer.write(rpc.dumps({"token": self.token}))
        log.info("media worker %s reached", slot.name)
        return Conn(name=slot.name, reader=reader, writer=writer)

    async def _serve(self, conn: Conn) -> None:
        # Read the worker's answers and events until its connection ends or
        # (local) its process exits.
        async def read() -> None:
            with contextlib.suppress(ConnectionError, ValueError):
                while line := await conn.reader.readline():
                    self._received(conn, json.loads(line))

        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(read())]
        if conn.process is not None:
            waits.append(asyncio.ensure_future(conn.process.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _received(self, conn: Conn, msg: dict[str, Any]) -> None:
        if "id" in msg:
            future = conn.pending.get(msg["id"])
            if future is not None and not future.done():
                if "error" in msg:
                    future.set_exception(RecordingFailed(str(msg["error"])))
                else:
                    future.set_result(msg.get("ok"))
        elif msg.get("event") == "stats":
            conn.pid = msg.get("pid", conn.pid)
            conn.counts = dict(rpc.counts_from_wire(x) for x in msg.get("legs", []))
        else:
            self.on_event(conn, msg)

    async def _lost(self, conn: Conn) -> None:
        """A worker is gone: fail what waited on it, then let the pool end its legs."""
        conn.alive = False
        conn.writer.close()
        if conn.process is not None:
            # Its files are repaired by the pool: nothing may write them any more.
            with contextlib.suppress(ProcessLookupError):
                conn.process.kill()
            await conn.process.wait()
        for future in list(conn.pending.values()):
            if not future.done():
                future.set_exception(WorkerGone(f"{WORKER_GONE}: {conn.name}"))
        if self._closing:
            return
        await self.on_lost(conn)
