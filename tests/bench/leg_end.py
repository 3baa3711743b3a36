"""The end of a long recording leg: call end -> playable file, with the lean path.

    python tests/bench/leg_end.py [--minutes M] [--recover]

Makes the packets of an M-minute leg (default 60) from the recording benchmark's
pre-encoded 640x480 30 fps VP8 (~1.1 Mbit/s) + Opus input, packetized as aiortc
sends them (RTP timestamps starting just before their 32-bit wrap), and hands them
to a ``PacketWriter`` in 100 ms batches as fast as its thread takes them (it
appends them to the packet log and muxes the final WebM as it goes, as during a
call). Then it times what ``Recorder.stop`` does at the end of the leg: the last
batch and closing the container (``PacketWriter.close``), then making it the
final file (``packets.finish``: a rename) and its SHA-256. ``--recover`` times
the crash path instead: the final file made from the packet log alone
(``packets.convert``, what ``Recorder.recover`` does at start-up).

The last line: ``M-minute leg: call end -> playable X s (...)``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH = 0.1  # seconds of media per batch, as the recorder flushes
VIDEO_TICKS, AUDIO_TICKS = 3000, 960


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--recover", action="store_true", help="time the crash path instead")
    args = parser.parse_args()

    from aiortc.codecs.vpx import Vp8Encoder

    from media import packets
    from media.finalize import sha256_of
    from media.packets import PacketWriter
    from tests.bench._rec_sender import load
    from tests.bench.recording import encode_input

    work = Path(tempfile.mkdtemp(prefix="leg-end-"))
    encode_input(work / "input.webm")
    video, audio = load(str(work / "input.webm"))
    # One loop of the input, packetized: (seconds into the loop, audio?, payloads).
    loop_seconds = len(video) * VIDEO_TICKS / 90000
    events: list[tuple[float, bool, list[bytes]]] = []
    for i, frame in enumerate(video):
        events.append((i * VIDEO_TICKS / 90000, False, Vp8Encoder._packetize(frame, i % 32768)))
    for i, packet in enumerate(audio):
        events.append((i * AUDIO_TICKS / 48000, True, [packet]))
    events.sort(key=lambda e: e[0])

    partial = work / "rec" / "p-part1.webm.partial"
    t0 = time.monotonic()
    writer = PacketWriter(partial, video_codec="vp8", audio=True, t0=t0)
    seq = {False: 65000, True: 100}
    ts_base = {False: 2**32 - 90000 * 5, True: 2**32 - 48000 * 7}  # both wrap early
    counts = {False: 0, True: 0}
    media_seconds = args.minutes * 60
    loops = int(media_seconds / loop_seconds) + 1
    fed_cpu, fed_wall = cpu(), time.monotonic()
    next_flush = BATCH
    done = False
    for n in range(loops):
        for at, is_audio, payloads in events:
            now = n * loop_seconds + at
            if now >= media_seconds:
                done = True
                break
            if now >= next_flush:
                writer.flush()
                next_flush += BATCH
                while writer.backlog() > 20:  # keep memory bounded
                    time.sleep(0.005)
            ticks = VIDEO_TICKS if not is_audio else AUDIO_TICKS
            ts = (ts_base[is_audio] + counts[is_audio] * ticks) % 2**32
            counts[is_audio] += 1
            for k, payload in enumerate(payloads):
                marker = k == len(payloads) - 1
                writer.keep((t0 + now, is_audio, marker, seq[is_audio] % 65536, ts, payload))
                seq[is_audio] += 1
        if done:
            break
    while writer.backlog() > 0:  # the thread catches up first
        time.sleep(0.01)
    fed_wall, fed_cpu = time.monotonic() - fed_wall, cpu() - fed_cpu
    log_mb = partial.stat().st_size / 1e6
    print(
        f"fed {args.minutes:g} minutes ({counts[False]} video frames, {counts[True]} audio "
        f"packets, packet log {log_mb:.0f} MB) in {fed_wall:.1f} s, {fed_cpu:.1f} s CPU "
        f"({100 * fed_cpu / media_seconds:.2f}% of a core per recorded stream for the "
        "thread's log and muxing, plus making the packets here)",
        flush=True,
    )

    started = time.monotonic()
    stats = writer.close()
    closed = time.monotonic()
    if args.recover:
        packets.muxing_name(partial).unlink()
        started = closed = time.monotonic()
        finished = packets.convert(partial)
        label = "crash repair (packet log -> final file)"
    else:
        finished = packets.finish(stats)
        label = "call end -> playable"
    ended = time.monotonic()
    hashing = time.monotonic()
    sha256_of(finished.path)  # page-cached now, as it was inside finish
    hashing = time.monotonic() - hashing
    total = ended - started
    print(
        f"final file {finished.size / 1e6:.0f} MB, {finished.duration / 60:.1f} min, "
        f"{finished.video_packets} video frames; close {closed - started:.2f} s, "
        f"publish {ended - closed:.2f} s of which SHA-256 about {hashing:.2f} s"
    )
    print(
        f"{args.minutes:g}-minute leg: {label} {total - hashing:.2f} s "
        f"({total:.2f} s with the SHA-256 the records keep)"
    )
    finished.path.unlink()
    for leftover in sorted(work.rglob("*"), reverse=True):
        leftover.unlink() if leftover.is_file() else leftover.rmdir()
    work.rmdir()


if __name__ == "__main__":
    main()
