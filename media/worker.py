"""A media worker: a process of its own that owns a ``Recorder`` and answers RPC.

``teleconsult serve`` starts ``media_workers`` of these (``python -m
media.worker --listen unix:PATH --watch-stdin``) and supervises them
(``media.pool``); ``teleconsult media-worker --listen host:port`` runs one on
another machine. The recording legs' peer connections, packet handling and
file writing then run on the worker's event loop, never on the web process's.

One controller at a time: a second connection is refused. When the controller
goes away (its process died, the network dropped), the worker exits at once
and leaves its ``.partial`` files as they are: the controller repairs them
(``WorkerPool`` when it notices, or ``RecordingService.recover`` at its next
start), exactly as after a crash of the whole server. Its supervisor (the web
process, or systemd for a remote worker) starts it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import uvloop

from media import rpc, speedups
from media.errors import RecordingFailed
from media.leg import LegResult, RecordingKey
from media.recorder import Recorder

log = logging.getLogger(__name__)

# The controller lost: the worker's own exit status (its supervisor restarts it).
EXIT_CONTROLLER_GONE = 3


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """How a worker records (the web process's recording settings)."""

    directory: Path
    listen: str  # unix:/path or host:port
    stun_urls: tuple[str, ...] = ()
    host_addresses: tuple[str, ...] = ()
    keyframe_interval: float = 10.0
    start_bitrate: int | None = None
    video_fec: bool = True
    relay_hold_max_ms: int = 600
    # Asked of a TCP controller in its first line ({"token": ...}); empty: none.
    token: str = field(default="", repr=False)


class Worker:
    """One worker's recorder and its one controller connection."""

    def __init__(self, config: WorkerConfig) -> None:
        """Make the recorder (nothing listens yet)."""
        self.config = config
        self.recorder = Recorder(
            config.directory,
            stun_urls=config.stun_urls,
            host_addresses=config.host_addresses,
            keyframe_interval=config.keyframe_interval,
            start_bitrate=config.start_bitrate,
            video_fec=config.video_fec,
            relay_hold_max_ms=config.relay_hold_max_ms,
            on_finished=self._finished,
            on_writing_failed=self._writing_failed,
        )
        self.writer: asyncio.StreamWriter | None = None
        self.gone = asyncio.Event()
        self._vetting = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the connection --------------------------------------------------------------

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Listen, serve one controller, return when it has gone."""
        kind, _, where = self.config.listen.partition(":")
        if kind == "unix":
            server = await asyncio.start_unix_server(
                self._connected, path=where, limit=rpc.LINE_LIMIT
            )
        else:
            host, _, port = self.config.listen.rpartition(":")
            server = await asyncio.start_server(
                self._connected, host=host or None, port=int(port), limit=rpc.LINE_LIMIT
            )
        async with server:
            if ready is not None:
                ready.set()
            await self.gone.wait()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.writer is not None or self._vetting:
            writer.close()  # one controller at a time
            return
        self._vetting = True  # while its token is read, others are refused too
        try:
            if self.config.token:
                # Anyone who reaches a TCP worker could otherwise record and
                # relay through it: the first line must carry the token.
                first = json.loads(await reader.readline() or b"{}")
                token = first.get("token") if isinstance(first, dict) else None
                if not isinstance(token, str) or not hmac.compare_digest(
                    token.encode(), self.config.token.encode()
                ):
                    log.warning("media worker: a controller with a wrong token was refused")
                    writer.close()
                    return
            self.writer = writer
            self._vetting = False
            log.info("media worker pid=%d: controller connected", os.getpid())
            stats = asyncio.ensure_future(self._send_stats())
            try:
                while line := await reader.readline():
                    self._spawn(self._answer(json.loads(line)))
            finally:
                stats.cancel()
        except (ConnectionError, ValueError) as exc:
            log.warning("media worker: controller connection broke: %s", exc)
        finally:
            self._vetting = False
        if self.writer is not writer:
            writer.close()  # refused before it became the controller
            return
        # Its controller stops every leg before it closes (``WorkerPool.close``):
        # legs still running mean it went without (killed, or the network).
        running = len(self.recorder.legs)
        if running:
            log.warning(
                "media worker pid=%d: controller gone with %d leg(s) running; "
                "their .partial files are left to it",
                os.getpid(),
                running,
            )
        else:
            log.info("media worker pid=%d: controller closed the connection", os.getpid())
        self.gone.set()

    def _send(self, message: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(rpc.dumps(message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_stats(self) -> None:
        while True:
            counts = self.recorder.leg_counts()
            self._send(
                {
                    "event": "stats",
                    "pid": os.getpid(),
                    "legs": [rpc.counts_to_wire(k, c) for k, c in counts.items()],
                }
            )
            await asyncio.sleep(rpc.STATS_SECONDS)  # a report interval, not a wait

    def _finished(self, result: LegResult) -> None:
        # A leg ended by itself: the controller decides (it calls stop or forget).
        self._send({"event": "finished", "result": rpc.result_to_wire(result, self.directory)})

    def _writing_failed(self, result: LegResult) -> None:
        # A leg's file failed; the leg goes on without one (resume or stop follows).
        self._send(
            {"event": "writing_failed", "result": rpc.result_to_wire(result, self.directory)}
        )

    @property
    def directory(self) -> Path:
        """The recordings directory."""
        return self.recorder.directory

    # -- requests ----------------------------------------------------------------------

    async def _answer(self, msg: dict[str, Any]) -> None:
        ident = msg.get("id")
        try:
            value = await self._do(msg)
        except RecordingFailed as exc:
            self._send({"id": ident, "error": str(exc)})
        except Exception as exc:
            log.exception("media worker: %s failed", msg.get("op"))
            self._send({"id": ident, "error": repr(exc)})
        else:
            self._send({"id": ident, "ok": value})

    def _file(self, key: RecordingKey) -> dict[str, Any]:
        file = self.recorder.leg_file(key)
        return {
            "path": rpc.relative(file.path, self.directory),
            "container": file.container,
            "video_codec": file.video_codec,
            "audio_codec": file.audio_codec,
        }

    async def _do(self, msg: dict[str, Any]) -> Any:
        op = msg.get("op")
        rec = self.recorder
        if op == "start":
            key = rpc.key_from_wire(msg["key"])
            answer = await rec.start(key, msg["sdp"], now=datetime.fromisoformat(msg["now"]))
            return {"sdp": answer, **self._file(key)}
        if op == "kept_media":
            media = await rec.kept_media(rpc.key_from_wire(msg["key"]))
            return (
                None if media is None else {"video_codec": media.video_codec, "audio": media.audio}
            )
        if op == "resume":
            new_key = rpc.key_from_wire(msg["new_key"])
            await rec.resume(
                rpc.key_from_wire(msg["key"]), new_key, now=datetime.fromisoformat(msg["now"])
            )
            return self._file(new_key)
        if op == "candidate":
            await rec.add_candidate(
                rpc.key_from_wire(msg["key"]),
                msg["candidate"],
                msg.get("sdp_mid"),
                msg.get("sdp_mline_index"),
            )
            return None
        if op == "stop":
            result = await rec.stop(
                rpc.key_from_wire(msg["key"]),
                drain=bool(msg.get("drain", True)),
                settle=bool(msg.get("settle", False)),
            )
            return None if result is None else rpc.result_to_wire(result, self.directory)
        if op == "relay_offer":
            return await rec.relay_offer(rpc.key_from_wire(msg["key"]), msg["viewer"])
        if op == "relay_answer":
            return await rec.relay_answer(rpc.key_from_wire(msg["key"]), msg["viewer"], msg["sdp"])
        if op == "relay_close":
            await rec.relay_close(msg["consultation_id"], msg["viewer"])
            return None
        if op == "counts":
            return [rpc.counts_to_wire(k, c) for k, c in rec.leg_counts().items()]
        if op == "forget":
            rec.forget(rpc.key_from_wire(msg["key"]))
            return None
        raise RecordingFailed(f"unknown operation {op!r}")


async def run(config: WorkerConfig, *, announce: bool = False) -> int:
    """Serve until the controller goes; the process's exit status."""
    worker = Worker(config)
    ready = asyncio.Event()
    serving = asyncio.ensure_future(worker.serve(ready))
    started = asyncio.ensure_future(ready.wait())
    await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    if serving.done():
        serving.result()  # could not listen: raise
    if announce:
        # The supervisor waits for this line before it connects.
        print(json.dumps({"ready": config.listen, "pid": os.getpid()}), flush=True)
    log.info("media worker pid=%d listening on %s", os.getpid(), config.listen)
    await serving
    # Leave the .partial files to the controller (see the module docstring):
    # no finalizing here, and no waiting on threads that still write.
    return EXIT_CONTROLLER_GONE


def _watch_stdin() -> None:
    # The supervisor holds our stdin: EOF means it died (even by SIGKILL), and
    # a worker must not outlive it.
    with contextlib.suppress(Exception):
        sys.stdin.buffer.read()
    os._exit(EXIT_CONTROLLER_GONE)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m media.worker``: what ``teleconsult serve`` starts."""
    parser = argparse.ArgumentParser(prog="media.worker", description=__doc__)
    parser.add_argument("--listen", required=True, help="unix:/path or host:port")
    parser.add_argument("--directory", required=True, type=Path)
    parser.add_argument("--stun", action="append", default=[])
    parser.add_argument("--host-address", action="append", default=[])
    parser.add_argument("--keyframe-interval", type=float, default=10.0)
    parser.add_argument("--start-bitrate", type=int, default=0)
    parser.add_argument(
        "--no-video-fec", action="store_true", help="answer without RED and ULPFEC for video"
    )
    parser.add_argument(
        "--relay-hold-max-ms",
        type=int,
        default=600,
        help="the most the relay's viewers hold a picture for retransmissions (0: never)",
    )
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s media-worker %(name)s %(message)s"
    )
    speedups.collect_less()  # this process records: a decision for the whole process
    if args.watch_stdin:
        threading.Thread(target=_watch_stdin, daemon=True, name="watch-stdin").start()
        # Ctrl-C in a terminal and systemd's stop reach the whole process group;
        # the web process then stops every leg (each file finalized) and closes
        # the connection, which ends this worker. Dying first would leave the
        # legs to the crash repair instead.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    config = WorkerConfig(
        directory=args.directory,
        listen=args.listen,
        stun_urls=tuple(args.stun),
        host_addresses=tuple(args.host_address),
        keyframe_interval=args.keyframe_interval,
        start_bitrate=args.start_bitrate or None,
        video_fec=not args.no_video_fec,
        relay_hold_max_ms=args.relay_hold_max_ms,
    )
    return exit_after(run(config, announce=True))


def new_loop() -> asyncio.AbstractEventLoop:
    """The event loop a recording process runs on: uvloop's.

    A recorded stream is about 170 datagrams a second, each a pass through the
    loop's reading and a callback; uvloop does that part in C. Measured with
    ``tests/bench/recording.py --only workers-1`` (12 streams, the two loops
    alternated, 3 runs each): 0.97-1.06 % of a core per stream against
    1.13-1.28 % on asyncio's own loop, whose reading the recorder batches
    itself (``media/reading.py``).
    """
    return cast(asyncio.AbstractEventLoop, uvloop.new_event_loop())


def exit_after(main_coro: Any) -> int:
    """Run ``main_coro`` and end the process with its status, without waiting
    for writer threads that still hold partial files (they are left as they are)."""
    loop = new_loop()
    code = int(loop.run_until_complete(main_coro))
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
