"""The web process's side of the media workers: placement, supervision, repair.

``WorkerPool`` has the recorder's interface (``media.host.LegHost``), so the
recording service drives it as it drives an in-process ``Recorder``; each call
goes as a request to the worker process that carries the leg (``media.rpc``).

Placement: every leg of one consultation lives on one worker (in a relayed
call the recorder forwards each participant's frames to the others, inside one
process); a consultation with no running leg goes to the worker with the
fewest legs.

Supervision (``media.supervise``): the pool starts ``local`` workers itself
and connects to remote ones by address. A worker is lost when its connection
ends or its process exits; then every leg it carried is ended: its ``.partial``
file is repaired here (as ``recover`` does after a crash: the same finalize)
and reported through ``on_finished`` like any leg that ended by itself, so the
participant's page is told and offers a new leg, which lands on a live worker
as the next part. The worker is started again (or, remote, reconnected) after
a short backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from media import rpc
from media.errors import RecordingFailed
from media.host import KeptMedia, LegCounts, LegFile, WorkerLoad
from media.leg import LegResult, RecordingKey
from media.repair import Repaired, partial_file, recover, repair
from media.supervise import WORKER_GONE, Conn, WorkerGone, Workers

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Placed:
    """A leg the pool placed on a worker."""

    conn: Conn
    file: LegFile
    started_at: datetime
    # Set once the leg ended by itself (the worker said so, or it was lost).
    ended: bool = False
    # Set when the worker was lost: the repaired file's result.
    lost: asyncio.Future[LegResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class WorkerPool:
    """Recording legs on media worker processes (``media.host.LegHost``)."""

    def __init__(
        self,
        directory: Path,
        *,
        local: int = 0,
        addresses: Sequence[str] = (),
        token: str = "",
        stun_urls: Sequence[str] = (),
        host_addresses: Sequence[str] = (),
        keyframe_interval: float = 10.0,
        start_bitrate: int | None = None,
        video_fec: bool = True,
        relay_hold_max_ms: int = 600,
        on_finished: Callable[[LegResult], None] | None = None,
    ) -> None:
        """Describe the pool (``open`` starts it).

        Args:
            directory: the recordings directory (shared with every worker; a
                remote worker mounts the same volume).
            local: how many workers to start and supervise here.
            addresses: ``host:port`` of workers started elsewhere
                (``teleconsult media-worker``).
            token: what remote workers ask of their controller.
            stun_urls: STUN servers for the workers' own candidates.
            host_addresses: addresses the local workers gather host candidates on.
            keyframe_interval: seconds between keyframe requests.
            start_bitrate: the rate the answers ask browsers to start at.
            video_fec: whether the answers accept RED and ULPFEC for video.
            relay_hold_max_ms: the most the relay's viewers hold a picture
                for retransmissions (0: not at all).
            on_finished: called when a leg ends by itself (the browser went
                away, the file could not be written, its worker was lost).
        """
        self.directory = directory
        self.on_finished = on_finished
        # Called when a leg's file could not be written (the leg goes on).
        self.on_writing_failed: Callable[[LegResult], None] | None = None
        self.legs: dict[RecordingKey, _Placed] = {}
        args: list[str] = []
        for url in stun_urls:
            args += ["--stun", url]
        for address in host_addresses:
            args += ["--host-address", address]
        args += ["--keyframe-interval", str(keyframe_interval)]
        if start_bitrate:
            args += ["--start-bitrate", str(start_bitrate)]
        if not video_fec:
            args.append("--no-video-fec")
        args += ["--relay-hold-max-ms", str(relay_hold_max_ms)]
        self.workers = Workers(
            directory,
            local=local,
            addresses=addresses,
            token=token,
            args=args,
            on_event=self._received,
            on_lost=self._lost,
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Start the local workers, reach the remote ones; returns once each was tried."""
        await self.workers.open()

    async def close(self) -> list[LegResult]:
        """Stop every leg (each file is finalized by its worker), then the workers."""
        results = []
        for key in list(self.legs):
            try:
                result = await self.stop(key)
            except RecordingFailed:
                log.exception("recording peer=%s not stopped at shutdown", key.participant_id)
                continue
            if result is not None:
                results.append(result)
        await self.workers.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return results

    def _received(self, conn: Conn, msg: dict[str, Any]) -> None:
        # A worker's event about one of its legs.
        if msg.get("event") == "finished":
            result = rpc.result_from_wire(msg["result"], self.directory)
            placed = self.legs.get(result.key)
            if placed is not None and placed.conn is conn:
                placed.ended = True
                self._tell(result)
        elif msg.get("event") == "writing_failed":
            self._writing_failed(conn, rpc.result_from_wire(msg["result"], self.directory))

    def _writing_failed(self, conn: Conn, result: LegResult) -> None:
        # The leg stays placed (connected and relayed, without a file).
        placed = self.legs.get(result.key)
        if placed is not None and placed.conn is conn and self.on_writing_failed is not None:
            self.on_writing_failed(result)

    def _tell(self, result: LegResult) -> None:
        if self.on_finished is not None:
            self.on_finished(result)

    async def _lost(self, conn: Conn) -> None:
        """A worker is gone (its process killed, its requests failed): repair
        and report the legs it carried."""
        log.warning("media worker %s lost with %d leg(s)", conn.name, len(conn.legs))
        # Each leg is told as soon as its own file is repaired (on threads,
        # side by side): its page offers again meanwhile.
        await asyncio.gather(
            *(
                self._end_lost(key, placed)
                for key in list(conn.legs)
                if (placed := self.legs.get(key)) is not None and placed.conn is conn
            )
        )

    async def _end_lost(self, key: RecordingKey, placed: _Placed) -> None:
        result = await self._repair_leg(key, placed)
        log.warning(
            "recording consultation=%s peer=%s part=%d: its media worker was lost; %s",
            key.consultation_id,
            key.participant_id,
            key.part,
            "file repaired" if result.file is not None else "nothing kept",
        )
        if not placed.lost.done():
            placed.lost.set_result(result)
        if not placed.ended:
            placed.ended = True
            self._tell(result)

    async def _repair_leg(self, key: RecordingKey, placed: _Placed) -> LegResult:
        if not placed.file.path.exists():
            # A remote worker whose files this machine does not see, or a leg
            # that never wrote: nothing to keep here.
            return LegResult(
                key=key,
                started_at=placed.started_at,
                first_media_offset=None,
                file=None,
                error=f"{WORKER_GONE}; its file is not here to repair",
            )
        repaired = await asyncio.to_thread(repair, placed.file.path)
        return LegResult(
            key=key,
            started_at=placed.started_at,
            first_media_offset=repaired.first_media_offset,
            file=repaired.file,
            error=WORKER_GONE if repaired.error is None else f"{WORKER_GONE}; {repaired.error}",
        )

    # -- placement --------------------------------------------------------------------

    def _place(self, consultation_id: str) -> Conn:
        live = self.workers.live()
        for conn in live:
            if any(k.consultation_id == consultation_id for k in conn.legs):
                return conn
        if not live:
            raise WorkerGone("no media worker is running")
        return min(live, key=lambda c: len(c.legs))

    def _conn_of(self, key: RecordingKey) -> tuple[_Placed, Conn]:
        placed = self.legs.get(key)
        if placed is None:
            raise RecordingFailed(f"no leg {key}")
        return placed, placed.conn

    # -- the recorder's interface -----------------------------------------------------

    async def start(self, key: RecordingKey, offer_sdp: str, *, now: datetime) -> str:
        """Answer a recording offer on the consultation's worker; the answer SDP.

        Raises:
            RecordingFailed: the worker refused the offer, or no worker runs.
        """
        if key in self.legs:
            raise RecordingFailed(f"already recording {key}")
        conn = self._place(key.consultation_id)
        conn.legs.add(key)
        try:
            reply = await conn.call(
                "start", key=rpc.key_to_wire(key), sdp=offer_sdp, now=now.isoformat()
            )
        except BaseException:
            conn.legs.discard(key)
            raise
        self.legs[key] = _Placed(conn=conn, started_at=now, file=self._leg_file(reply))
        if not conn.alive:
            # Lost while its answer was on the way: the page is told as for
            # any lost leg (its repair ran without knowing of this one).
            self._background(self._lost_late(key))
        return str(reply["sdp"])

    async def _lost_late(self, key: RecordingKey) -> None:
        placed = self.legs.get(key)
        if placed is None or placed.ended:
            return
        result = await self._repair_leg(key, placed)
        placed.lost.set_result(result)
        placed.ended = True
        self._tell(result)

    def leg_file(self, key: RecordingKey) -> LegFile:
        """The file a running leg writes (KeyError: no such leg)."""
        return self.legs[key].file

    def _leg_file(self, reply: dict[str, Any]) -> LegFile:
        # The file of a started or resumed leg, as its worker's answer names it
        # (``media.worker``'s ``_file``; the path relative to the directory).
        return LegFile(
            path=self.directory / reply["path"],
            container=reply["container"],
            video_codec=reply["video_codec"],
            audio_codec=reply["audio_codec"],
        )

    async def add_candidate(
        self, key: RecordingKey, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled ICE candidate for a leg."""
        placed = self.legs.get(key)
        if placed is None or not candidate:
            return
        with contextlib.suppress(WorkerGone):  # the page is told through on_finished
            await placed.conn.call(
                "candidate",
                key=rpc.key_to_wire(key),
                candidate=candidate,
                sdp_mid=sdp_mid,
                sdp_mline_index=sdp_mline_index,
            )

    async def stop(
        self, key: RecordingKey, *, drain: bool = True, settle: bool = False
    ) -> LegResult | None:
        """End a leg and return what it produced (its repaired file if its worker
        was lost); ``drain`` and ``settle`` as in ``Recorder.stop``."""
        placed = self.legs.get(key)
        if placed is None:
            return None
        try:
            if placed.lost.done() or not placed.conn.alive:
                raise WorkerGone(WORKER_GONE)
            wire = await placed.conn.call(
                "stop", key=rpc.key_to_wire(key), drain=drain, settle=settle
            )
            result = None if wire is None else rpc.result_from_wire(wire, self.directory)
        except WorkerGone:
            result = await placed.lost
        except RecordingFailed:
            # The worker could not finish it (it logged why): the leg is gone
            # from its count all the same; its partial is repaired at the next start.
            self._drop(key, placed)
            raise
        self._drop(key, placed)
        return result

    def _drop(self, key: RecordingKey, placed: _Placed) -> None:
        if self.legs.get(key) is placed:
            del self.legs[key]
        placed.conn.legs.discard(key)
        placed.conn.counts.pop(key, None)

    def forget(self, key: RecordingKey) -> None:
        """Drop a leg that ended by itself once its result has been taken."""
        placed = self.legs.get(key)
        if placed is None or not placed.ended:
            return
        self._drop(key, placed)
        if placed.conn.alive:
            self._background(self._quietly(placed.conn.call("forget", key=rpc.key_to_wire(key))))

    def partial_path(self, key: RecordingKey, fmt: str) -> Path:
        """Where a leg's file is written while recording (on the shared volume)."""
        return partial_file(self.directory, key, fmt)

    async def kept_media(self, key: RecordingKey) -> KeptMedia | None:
        """What a leg kept without a file carries (None: no such leg, or it has a file)."""
        placed = self.legs.get(key)
        if placed is None or placed.ended or not placed.conn.alive:
            return None
        try:
            reply = await placed.conn.call("kept_media", key=rpc.key_to_wire(key))
        except (WorkerGone, RecordingFailed):
            return None
        if reply is None:
            return None
        return KeptMedia(video_codec=reply["video_codec"], audio=bool(reply["audio"]))

    async def resume(self, key: RecordingKey, new_key: RecordingKey, *, now: datetime) -> None:
        """Record a kept leg again as the part ``new_key``, on the worker it is on.

        Raises:
            RecordingFailed: no such leg without a file, ``new_key`` is taken,
                or its worker is lost.
        """
        placed, conn = self._conn_of(key)
        if new_key in self.legs:
            raise RecordingFailed(f"already recording {new_key}")
        try:
            reply = await conn.call(
                "resume",
                key=rpc.key_to_wire(key),
                new_key=rpc.key_to_wire(new_key),
                now=now.isoformat(),
            )
        except WorkerGone as exc:
            raise RecordingFailed(str(exc)) from exc
        self._drop(key, placed)
        conn.legs.add(new_key)
        self.legs[new_key] = _Placed(conn=conn, started_at=now, file=self._leg_file(reply))

    async def relay_offer(self, key: RecordingKey, viewer: str) -> str:
        """Open the relay of ``key``'s leg to ``viewer``; its offer SDP.

        Raises:
            RecordingFailed: no such leg, it has ended, or its worker is lost.
        """
        placed, conn = self._conn_of(key)
        if placed.ended:
            raise RecordingFailed(f"no live leg {key} to relay")
        return str(await conn.call("relay_offer", key=rpc.key_to_wire(key), viewer=viewer))

    async def relay_answer(self, key: RecordingKey, viewer: str, answer_sdp: str) -> bool:
        """``viewer``'s answer for the relay of ``key``; False if none was offered."""
        placed = self.legs.get(key)
        if placed is None or placed.ended:
            return False
        try:
            return bool(
                await placed.conn.call(
                    "relay_answer", key=rpc.key_to_wire(key), viewer=viewer, sdp=answer_sdp
                )
            )
        except WorkerGone:
            return False

    async def relay_close(self, consultation_id: str, viewer: str) -> None:
        """Close every relay of the consultation's legs to ``viewer``."""
        for conn in self.workers.live():
            if any(k.consultation_id == consultation_id for k in conn.legs):
                with contextlib.suppress(WorkerGone):
                    await conn.call("relay_close", consultation_id=consultation_id, viewer=viewer)

    def recover(self, only: Callable[[Path], bool] | None = None) -> list[Repaired]:
        """Repair every ``.partial`` file under the directory that ``only`` chooses
        (None: all; at start-up, before legs)."""
        return recover(self.directory, only)

    def loads(self) -> list[WorkerLoad]:
        """Legs per worker (a lost one shows as not alive, with none)."""
        return self.workers.loads()

    def leg_counts(self) -> dict[RecordingKey, LegCounts]:
        """Frames written and lost per running leg, as the workers last reported."""
        out: dict[RecordingKey, LegCounts] = {}
        for conn in self.workers.live():
            out.update({k: c for k, c in conn.counts.items() if k in self.legs})
        return out

    async def counts_now(self) -> dict[RecordingKey, LegCounts]:
        """Frames written and lost per running leg, asked of every worker now."""
        out: dict[RecordingKey, LegCounts] = {}
        for conn in self.workers.live():
            with contextlib.suppress(WorkerGone):
                out.update(dict(rpc.counts_from_wire(x) for x in await conn.call("counts")))
        return out

    def worker_of(self, key: RecordingKey) -> WorkerLoad | None:
        """Which worker carries a leg (for tests and logs)."""
        placed = self.legs.get(key)
        if placed is None:
            return None
        conn = placed.conn
        return WorkerLoad(name=conn.name, pid=conn.pid, legs=len(conn.legs), alive=conn.alive)

    # -- helpers ----------------------------------------------------------------------

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(awaitable: Any) -> None:
        with contextlib.suppress(RecordingFailed):
            await awaitable
