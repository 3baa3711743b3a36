"""The recorder: one server-side, receive-only peer per recorded participant.

Each participant's page opens a second, send-only RTCPeerConnection to the
server with the same camera and microphone tracks. The recorder answers it with
aiortc, takes the RTP packets off its transport as they arrive (``tap.RtpTap``)
and hands them to the leg's ``PacketWriter``, whose writing (on the process's
one writer thread) appends them to a crash-safe packet log and muxes frames into
the final file as it goes (``packets.py``); the event loop never touches a codec
or the disk.

aiortc sends no keyframe request when nothing decodes, so the recorder asks
(RTCP PLI) until the first video keyframe arrives, again after a gap in the
video, and every ``keyframe_interval`` seconds so the file stays seekable
(Chrome otherwise sends almost no keyframes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from media import answer, packets, repair, seam, twcc
from media.assembler import describe as describe_losses
from media.errors import RecordingFailed
from media.finalize import start_note
from media.host import KeptMedia, LegCounts, LegFile, WorkerLoad
from media.leg import Leg, LegResult, RecordingKey
from media.packets import PacketWriter, WriterThread
from media.reading import Reading
from media.relay import Fanout
from media.repair import Repaired, partial_file
from media.tap import RtpTap
from media.writer import CONTAINER_FOR

log = logging.getLogger(__name__)

SUPPORTED_VIDEO = ("vp8", "h264")
BATCH_SECONDS = 0.1  # how often kept packets are handed to the legs' threads


class Recorder:
    """All recording legs of this server process."""

    def __init__(
        self,
        directory: Path,
        *,
        stun_urls: Sequence[str] = (),
        host_addresses: Sequence[str] = (),
        keyframe_interval: float = 10.0,
        start_bitrate: int | None = None,
        video_fec: bool = True,
        relay_hold_max_ms: int = 600,
        on_finished: Callable[[LegResult], None] | None = None,
        on_writing_failed: Callable[[LegResult], None] | None = None,
    ) -> None:
        """Prepare the recorder.

        Args:
            directory: where recordings are written (one folder per consultation).
            stun_urls: STUN servers for the recorder's own candidates (none by
                default: it is a server with known addresses; passed explicitly
                so that aiortc never falls back to a public STUN server).
            host_addresses: addresses to gather host candidates on (aioice skips
                loopback by itself); empty: every interface.
            keyframe_interval: seconds between keyframe requests once recording.
            start_bitrate: the rate (bit/s) the answer asks the browser to start
                its video at (None: the browser's own 300 kbit/s).
            video_fec: whether the answer accepts RED and ULPFEC for video
                (offered by the browser), from which the tap rebuilds lost
                packets without a round trip (``media/ulpfec.py``).
            relay_hold_max_ms: the most the relay's viewers are asked to hold
                a picture for the retransmission of a packet lost on its
                sender's uplink (``media/hold.py``); 0: never.
            on_finished: called (on the loop) when a leg ends by itself, e.g.
                when the browser goes away.
            on_writing_failed: called (on the loop) with the part that ended
                when a leg's file could not be written (a full disk, EIO, a
                permission): the leg itself goes on, connected and relayed,
                without a file, until ``resume`` or ``stop``.
        """
        seam.install_passthrough()
        seam.restrict_host_addresses(host_addresses)
        self.directory = directory
        self.config = RTCConfiguration(
            iceServers=[RTCIceServer(urls=list(stun_urls))] if stun_urls else []
        )
        self.keyframe_interval = keyframe_interval
        self.start_bitrate = start_bitrate
        self.video_fec = video_fec
        self.relay_hold_max_ms = relay_hold_max_ms
        # Every leg's packets are written on this one thread (media/packets.py).
        self.writer_thread = WriterThread()
        # Every leg's sockets read together, every leg's feedback sent by one timer.
        self.reading = Reading()
        self.on_finished = on_finished
        self.on_writing_failed = on_writing_failed
        self.legs: dict[RecordingKey, Leg] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()

    def partial_path(self, key: RecordingKey, fmt: str) -> Path:
        """Where a leg's file is written while recording."""
        return partial_file(self.directory, key, fmt)

    async def start(self, key: RecordingKey, offer_sdp: str, *, now: datetime) -> str:
        """Answer a participant's recording offer; returns the answer SDP.

        Raises:
            RecordingFailed: a leg with this key exists, or the offer carries no
                video codec the recorder can store (VP8, H.264).
        """
        if key in self.legs:
            raise RecordingFailed(f"already recording {key}")
        pc = RTCPeerConnection(configuration=self.config)
        leg = Leg(key=key, pc=pc, started_at=now, t0=time.monotonic())
        self.legs[key] = leg

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            leg.tasks.append(asyncio.ensure_future(leg.consume(track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and leg.result is None:
                log.info("recording peer=%s %s", key.participant_id, pc.connectionState)
                await self._ended_by_itself(leg)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            video_codec, audio = None, False
            for transceiver in pc.getTransceivers():
                codec = seam.negotiated_codec(transceiver)
                if transceiver.kind == "video":
                    if codec not in SUPPORTED_VIDEO:
                        raise RecordingFailed(f"cannot record video codec {codec}")
                    video_codec = codec
                    leg.video_mime = f"video/{codec}"
                    leg.receivers.append(transceiver.receiver)
                elif transceiver.kind == "audio" and codec == "opus":
                    audio = True
                    seam.audio_in_arrival_order(transceiver.receiver)
            fmt = CONTAINER_FOR[video_codec]
            leg.writer = PacketWriter(
                self.partial_path(key, fmt),
                video_codec=video_codec,
                audio=audio,
                t0=leg.t0,
                thread=self.writer_thread,
            )
            tap = leg.tap = RtpTap(self.reading)
            fanout = leg.fanout = Fanout(
                self.config,
                video_codec=video_codec,
                audio=audio,
                want_keyframe=leg.keyframe_wanted.set,
                hold=self._hold(tap),
            )
            ext_id = twcc.transport_cc_id(offer_sdp)
            feedback = twcc.TransportFeedback(ext_id) if ext_id is not None else None
            leg.feedback = feedback
            # Relayed video goes packet by packet (``Leg.keep``); only audio
            # still takes aiortc's receive path to the viewers, as frames.
            # RED and ULPFEC: a packet lost on the uplink is rebuilt at once.
            fec = answer.fec_types(offer_sdp) if video_codec and self.video_fec else None
            tap.attach(pc, leg.keep, fanout.relaying, feedback, relay_kinds=("audio",), fec=fec)
            await pc.setLocalDescription(await pc.createAnswer())
            tap.skip_stun_parse()
        except Exception:
            self.legs.pop(key, None)
            await pc.close()
            if leg.writer is not None:
                # Its packet log was opened: left behind, the next start would
                # "recover" it as a part of the recording.
                await self._close_file(key, now, leg.writer)
                leg.writer = None
            raise
        if video_codec:
            leg.tasks.append(asyncio.ensure_future(leg.ask_for_keyframes(self.keyframe_interval)))
        if feedback is not None:
            leg.tasks.append(asyncio.ensure_future(tap.send_feedback()))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_writers())
        log.info(
            "recording consultation=%s peer=%s part=%d codec=%s",
            key.consultation_id,
            key.participant_id,
            key.part,
            video_codec,
        )
        return answer.edited(
            pc.localDescription.sdp,
            offer_sdp,
            transport_cc=feedback is not None,
            start_bitrate=self.start_bitrate,
            fec=fec,
        )

    def _hold(self, tap: RtpTap) -> Callable[[], int] | None:
        """How long the relay's viewers should hold the leg's video now (ms), bounded."""
        most = self.relay_hold_max_ms
        if most <= 0:
            return None
        return lambda: min(most, tap.hold_ms(seam.current_ms()))

    async def relay_offer(self, key: RecordingKey, viewer: str) -> str:
        """Open a send-only connection from ``key``'s leg to ``viewer``; its offer SDP.

        Raises:
            RecordingFailed: no such leg, or it has ended.
        """
        leg = self.legs.get(key)
        if leg is None or leg.fanout is None or leg.done.is_set():
            raise RecordingFailed(f"no live leg {key} to relay")
        return await leg.fanout.offer(viewer)

    async def relay_answer(self, key: RecordingKey, viewer: str, answer_sdp: str) -> bool:
        """``viewer``'s answer for the relay of ``key``; False if none was offered."""
        leg = self.legs.get(key)
        if leg is None or leg.fanout is None or leg.done.is_set():
            return False
        return await leg.fanout.answer(viewer, answer_sdp)

    async def relay_close(self, consultation_id: str, viewer: str) -> None:
        """Close every relay of the consultation's legs to ``viewer`` (they left)."""
        for key, leg in list(self.legs.items()):
            if key.consultation_id == consultation_id and leg.fanout is not None:
                await leg.fanout.close(viewer)

    async def add_candidate(
        self, key: RecordingKey, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled ICE candidate from the browser for its recording leg."""
        leg = self.legs.get(key)
        if leg is None or not candidate:
            return
        parsed = candidate_from_sdp(candidate.removeprefix("candidate:").removeprefix("a="))
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await leg.pc.addIceCandidate(parsed)

    async def stop(
        self, key: RecordingKey, *, drain: bool = True, settle: bool = False
    ) -> LegResult | None:
        """End a leg (if it has not ended by itself) and return what it produced.

        With ``drain`` false the leg does not first ask its page for the last
        packets still missing (``Leg.drain``): the page was replaced by another
        and cannot answer, and its new leg waits for this one to end. With
        ``settle`` (another page ended the call) it first waits for its page to
        stop its video (``Leg._settled``).
        """
        leg = self.legs.get(key)
        if leg is None:
            return None
        leg.settle = settle
        if not drain:
            leg.ask_at_end = False
        result = await self._finish(leg)
        self.legs.pop(key, None)
        return result

    def forget(self, key: RecordingKey) -> None:
        """Drop a leg that ended by itself once its result has been taken."""
        leg = self.legs.get(key)
        if leg is not None and leg.result is not None and leg.result.done():
            del self.legs[key]

    async def _ended_by_itself(self, leg: Leg) -> None:
        # The browser went away or the file could not be written: the leg ends
        # here, and whoever listens is told (stop() was not asked for it).
        # The leg stays in ``legs`` until stop() (which returns its result) or
        # ``forget``: whoever listens decides.
        result = await self._finish(leg)
        if self.on_finished is not None:
            self.on_finished(result)

    async def _finish(self, leg: Leg) -> LegResult:
        # Both stop() and the peer's own end may get here; the work runs once.
        if leg.result is None:
            leg.result = asyncio.ensure_future(self._finalize_leg(leg))
        return await asyncio.shield(leg.result)

    async def _finalize_leg(self, leg: Leg) -> LegResult:
        """Close the peer, flush the writer, make the final file (off the loop)."""
        key = leg.key
        await leg.drain()
        leg.done.set()
        fec = leg.tap.fec_counts() if leg.tap is not None else None
        if fec is not None:
            log.info(
                "recording peer=%s ULPFEC: %d FEC packets, %d lost packets rebuilt, "
                "%d of them also retransmitted, %d of those different",
                key.participant_id,
                *fec,
            )
        if leg.fanout is not None:
            await leg.fanout.close()
            took = leg.tap.repair_ms() if leg.tap is not None else None
            if leg.fanout.held_ms and took is not None:
                log.info(
                    "recording peer=%s relay hold: viewers held the video up to %d ms "
                    "(the last retransmissions took %d ms, nine in ten %d ms)",
                    key.participant_id,
                    leg.fanout.held_ms,
                    *took,
                )
        await leg.pc.close()
        for task in leg.tasks:
            task.cancel()
        await asyncio.gather(*leg.tasks, return_exceptions=True)
        if leg.writer is None:
            if leg.failed_part is not None:
                # Its file failed earlier and the leg went on without one:
                # that part is what it produced.
                return await asyncio.shield(leg.failed_part)
            return LegResult(
                key=key,
                started_at=leg.started_at,
                first_media_offset=None,
                file=None,
                error="no media",
            )
        return await self._close_file(key, leg.started_at, leg.writer)

    async def _close_file(
        self, key: RecordingKey, started_at: datetime, writer: PacketWriter
    ) -> LegResult:
        """Flush and close ``writer``, finalize its file (off the loop): the part's result."""
        stats = await asyncio.to_thread(writer.close)
        if stats.video_losses:
            log.info(
                "recording peer=%s video frames lost: %s",
                key.participant_id,
                describe_losses(stats.video_losses, writer.t0, more=stats.video_losses_full),
            )
        if stats.first_media_offset is None:
            await asyncio.to_thread(_discard, stats.path)
            await asyncio.to_thread(_discard, start_note(stats.path))
            await asyncio.to_thread(_discard, packets.muxing_name(stats.path))
            return LegResult(
                key=key,
                started_at=started_at,
                first_media_offset=None,
                file=None,
                error="no media arrived",
            )
        try:
            finished = await asyncio.to_thread(packets.finish, stats)
        except Exception as exc:
            log.exception("finalizing %s failed", stats.path.name)
            return LegResult(
                key=key,
                started_at=started_at,
                first_media_offset=stats.first_media_offset,
                file=None,
                error=repr(exc),
            )
        return LegResult(
            key=key,
            started_at=started_at,
            first_media_offset=stats.first_media_offset,
            file=finished,
            error="; ".join(stats.errors) or None,
        )

    async def close(self) -> list[LegResult]:
        """Stop every leg (server shutdown): every recording is finalized."""
        # Together: each may wait for the last packets of its frames (``Leg.drain``).
        keys = list(self.legs)
        try:
            stopped = await asyncio.gather(
                *(self.stop(key) for key in keys), return_exceptions=True
            )
        finally:
            if self._flusher is not None:
                self._flusher.cancel()
                await asyncio.gather(self._flusher, return_exceptions=True)
        results = []
        for key, result in zip(keys, stopped, strict=True):
            if isinstance(result, BaseException):
                log.error("recording %s not finished at shutdown", key, exc_info=result)
            elif result is not None:
                results.append(result)
        return results

    async def _flush_writers(self) -> None:
        # One timer for every leg: frames reach the writer threads in batches.
        while self.legs:
            await asyncio.sleep(BATCH_SECONDS)
            for leg in list(self.legs.values()):
                if leg.writer is None or leg.done.is_set():
                    continue
                if leg.writer.failed.is_set():
                    self._writing_failed(leg)
                    continue
                leg.writer.flush()

    def _writing_failed(self, leg: Leg) -> None:
        # The file cannot be written (a full disk, EIO, a permission): the part
        # ends with what reached the file, and the leg goes on without a file.
        # Its connection and its relay stay up: in a relayed call this leg is
        # the participant's only uplink, and the live call matters more than
        # the recording. ``resume`` gives it a new part once writing is possible.
        writer = leg.writer
        if writer is None:
            return
        log.warning(
            "recording consultation=%s peer=%s part=%d: writing failed; the call goes on",
            leg.key.consultation_id,
            leg.key.participant_id,
            leg.key.part,
        )
        leg.writer = None
        part = asyncio.ensure_future(self._close_file(leg.key, leg.started_at, writer))
        leg.failed_part = part
        part.add_done_callback(self._tell_writing_failed)

    def _tell_writing_failed(self, part: asyncio.Future[LegResult]) -> None:
        if part.cancelled() or part.exception() is not None:
            return
        if self.on_writing_failed is not None:
            self.on_writing_failed(part.result())

    async def resume(self, key: RecordingKey, new_key: RecordingKey, *, now: datetime) -> None:
        """Record a leg whose file failed again, as the new part ``new_key``.

        The leg keeps its connection and relay (nothing is renegotiated); its
        frames go to ``new_key``'s file from the next video keyframe on (one is
        asked for at once). Its key is ``new_key`` from now on.

        Raises:
            RecordingFailed: no live leg ``key`` without a file, or ``new_key``
                is taken.
        """
        leg = self.legs.get(key)
        if leg is None or leg.done.is_set() or leg.writer is not None or leg.fanout is None:
            raise RecordingFailed(f"no leg {key} to resume")
        if new_key in self.legs:
            raise RecordingFailed(f"already recording {new_key}")
        video_codec, audio = leg.fanout.video_codec, leg.fanout.audio
        t0 = time.monotonic()
        writer = PacketWriter(
            self.partial_path(new_key, CONTAINER_FOR[video_codec]),
            video_codec=video_codec,
            audio=audio,
            t0=t0,
            thread=self.writer_thread,
        )
        del self.legs[key]
        leg.key, leg.started_at, leg.t0, leg.writer, leg.failed_part = (
            new_key,
            now,
            t0,
            writer,
            None,
        )
        self.legs[new_key] = leg
        leg.keyframe_wanted.set()
        log.info(
            "recording consultation=%s peer=%s part=%d: resumed",
            new_key.consultation_id,
            new_key.participant_id,
            new_key.part,
        )

    def recover(self, only: Callable[[Path], bool] | None = None) -> list[Repaired]:
        """Repair what a killed server left: every ``.partial`` file is finalized
        (``repair.recover``: a packet log is made into the final file; a
        container written live by an earlier version is remuxed).

        Blocking (call it on a worker thread, at start-up, before new legs).
        Each result carries the file's first media offset as noted while it was
        written, so that the records can place it on the session's clock.

        Args:
            only: which files to repair (None: all); another process sharing
                the directory may still be writing the others.
        """
        return repair.recover(self.directory, only)

    # -- what the web process reads of a leg (media.host.LegHost) -------------------

    def leg_file(self, key: RecordingKey) -> LegFile:
        """The file a running leg writes, or was to write (KeyError: no such leg).

        A leg whose file failed at its first write (a full disk) while it was
        being answered has no writer any more; its part is noted all the same,
        and ended as every failed part is (``on_writing_failed``).
        """
        leg = self.legs[key]
        writer = leg.writer
        if writer is not None:
            return LegFile(
                path=writer.path,
                container=writer.format,
                video_codec=writer.video_codec,
                audio_codec=writer.stats.audio_codec,
            )
        if leg.fanout is None:
            raise KeyError(key)
        video_codec, container = leg.fanout.video_codec, CONTAINER_FOR[leg.fanout.video_codec]
        return LegFile(
            path=self.partial_path(key, container),
            container=container,
            video_codec=video_codec,
            audio_codec="opus" if leg.fanout.audio else None,
        )

    async def kept_media(self, key: RecordingKey) -> KeptMedia | None:
        """What a live leg without a file carries (None: no such leg, or it has a file)."""
        leg = self.legs.get(key)
        if leg is None or leg.done.is_set() or leg.writer is not None or leg.fanout is None:
            return None
        return KeptMedia(video_codec=leg.fanout.video_codec, audio=leg.fanout.audio)

    def loads(self) -> list[WorkerLoad]:
        """This process is the one worker."""
        return [WorkerLoad(name="in-process", pid=os.getpid(), legs=len(self.legs))]

    def leg_counts(self) -> dict[RecordingKey, LegCounts]:
        """Frames written and lost so far, per running leg."""
        out = {}
        for key, leg in list(self.legs.items()):
            if leg.writer is not None:
                stats = leg.writer.stats
                out[key] = LegCounts(
                    video_written=stats.video_packets,
                    audio_written=stats.audio_packets,
                    video_lost=stats.video_dropped + stats.video_lost,
                )
        return out


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
