"""A copy of a recording with a watermark burned into its picture.

The only place where the server decodes and re-encodes video, and only when a
viewer asks for a watermarked export: replay and download stay byte copies of
the stored file. The video is decoded, the watermark (who exported it, their
institution, when) is blended into the luma plane of every frame, and the
frames are encoded again with the same codec family (VP8 in WebM, H.264 in
MP4); the audio packets are copied unchanged.

The watermark is a pre-rendered mask (Pillow, a CJK font so that Chinese names
are legible), tiled diagonally over the frame, so each frame costs two numpy
blends and no text rendering. Everything here blocks and is CPU-bound: callers
run it on a worker thread and keep at most one export running at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import av
import av.container
import av.stream
from av.video.frame import VideoFrame

from media.errors import MediaError

# numpy and Pillow are imported by the functions that draw: the web process
# imports this module at start-up (signaling.workflow.replay) and seldom exports.
if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# Debian's fonts-noto-cjk (installed by .ci/run) and a few other usual places.
CJK_FONTS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)

ENCODERS = {"webm": "libvpx", "mp4": "libx264"}
TEXT_LEVEL = 235  # luma the text is pushed towards (white, video range)
SHADOW_LEVEL = 16  # and its shadow (black), so it reads on any background
TEXT_ALPHA = 0.45
SHADOW_ALPHA = 0.35
ANGLE = 24  # degrees the tiles are turned by


class ExportFailed(MediaError):
    """The recording could not be exported (unreadable file, no font, no encoder)."""


@dataclass(frozen=True, kw_only=True)
class Watermark:
    """What is burned in: who exported the recording and when (already formatted)."""

    lines: tuple[str, ...]
    font: Path

    @classmethod
    def of(cls, *lines: str, font: Path | None = None) -> Watermark:
        """A watermark of the non-empty ``lines`` in ``font`` (default: a CJK font found here)."""
        kept = tuple(line for line in lines if line)
        if not kept:
            raise ExportFailed("a watermark needs some text")
        return cls(lines=kept, font=font or find_cjk_font())


@dataclass(frozen=True, kw_only=True)
class Exported:
    """The exported file and what it holds."""

    path: Path
    video_frames: int
    audio_packets: int


def find_cjk_font() -> Path:
    """A font with Chinese glyphs, or ``ExportFailed``: a name drawn as boxes protects nobody."""
    for path in CJK_FONTS:
        if path.is_file():
            return path
    raise ExportFailed("no CJK font found (install fonts-noto-cjk)")


@lru_cache(maxsize=8)
def watermark_mask(
    width: int, height: int, lines: tuple[str, ...], font: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Alpha masks (text, shadow) of the tiled watermark for a frame of this size.

    Each is a float32 array of shape (height, width) with values in [0, 1].
    Public so that tests can look where the text is.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = max(12, round(min(width, height) / 18))
    face = ImageFont.truetype(str(font), size=size)
    line_gap = round(size * 0.3)
    boxes = [tuple(round(v) for v in face.getbbox(line)) for line in lines]
    tile_w = max(b[2] - b[0] for b in boxes) + size * 3
    tile_h = sum(b[3] - b[1] for b in boxes) + line_gap * (len(lines) - 1) + size * 3
    # Draw on a canvas larger than the frame's diagonal, turn it, crop the middle.
    side = math.ceil(math.hypot(width, height)) + tile_w
    text = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(text)
    for row, y in enumerate(range(0, side, tile_h)):
        shift = (tile_w // 2) * (row % 2)  # brick pattern: no straight columns
        for x in range(-shift, side, tile_w):
            top = y
            for line, box in zip(lines, boxes, strict=True):
                draw.text((x - box[0], top - box[1]), line, font=face, fill=255)
                top += box[3] - box[1] + line_gap
    text = text.rotate(ANGLE, resample=Image.Resampling.BILINEAR)
    left, top = (side - width) // 2, (side - height) // 2
    text = text.crop((left, top, left + width, top + height))
    shadow = text.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.GaussianBlur(1))
    text_alpha = np.asarray(text, dtype=np.float32) / 255.0
    shadow_alpha = np.clip(np.asarray(shadow, dtype=np.float32) / 255.0 - text_alpha, 0.0, 1.0)
    return text_alpha * TEXT_ALPHA, shadow_alpha * SHADOW_ALPHA


def burn(frame: VideoFrame, watermark: Watermark, size: tuple[int, int]) -> VideoFrame:
    """``frame`` scaled to ``size`` (yuv420p) with the watermark blended into its luma."""
    import numpy as np

    width, height = size
    if frame.width != width or frame.height != height or frame.format.name != "yuv420p":
        frame = frame.reformat(width=width, height=height, format="yuv420p")
    planes = frame.to_ndarray(format="yuv420p")  # Y rows, then U and V rows
    text, shadow = watermark_mask(width, height, watermark.lines, watermark.font)
    luma = planes[:height].astype(np.float32)
    luma += (SHADOW_LEVEL - luma) * shadow
    luma += (TEXT_LEVEL - luma) * text
    planes[:height] = np.clip(luma, 0, 255).astype(np.uint8)
    out = VideoFrame.from_ndarray(planes, format="yuv420p")
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def export_watermarked(
    source: Path | BinaryIO,
    target: Path,
    watermark: Watermark,
    *,
    progress: Callable[[float], None] = lambda fraction: None,
    bit_rate: int = 1_000_000,
) -> Exported:
    """Write ``target``: ``source`` with ``watermark`` burned into its video, audio copied.

    ``source`` is a path or a readable binary file (a recording sealed at rest
    is read through its decrypting reader).

    The container (``webm`` or ``mp4``) follows ``target``'s suffix and must be
    the source's. ``progress`` gets the fraction done (0..1), now and then.
    Raises ``ExportFailed`` when the source cannot be read or encoded; a
    half-written ``target`` is removed.
    """
    kind = target.suffix.lstrip(".")
    if kind not in ENCODERS:
        raise ExportFailed(f"cannot export to .{kind}")
    try:
        return _export(source, target, kind, watermark, progress, bit_rate)
    except ExportFailed:
        target.unlink(missing_ok=True)
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        raise ExportFailed(f"export failed: {type(exc).__name__}") from exc


def _export(
    source: Path | BinaryIO,
    target: Path,
    kind: str,
    watermark: Watermark,
    progress: Callable[[float], None],
    bit_rate: int,
) -> Exported:
    with av.open(str(source) if isinstance(source, Path) else source, "r") as inp:
        if not inp.streams.video:
            raise ExportFailed("the recording has no video to watermark")
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        duration = float(inp.duration / av.time_base) if inp.duration else 0.0
        vin.thread_type = "AUTO"
        # Every stream is added before the first packet is written (the header
        # goes out then). The size in the header holds for the whole file: the
        # browser may have changed resolution on the way, the encoder cannot.
        size = _even(vin.width, vin.height) or _first_size(inp, vin)
        options = {"movflags": "+faststart"} if kind == "mp4" else {}
        with av.open(str(target), "w", format=kind, options=options) as out:
            vout = _video_stream(out, kind, size, vin, bit_rate)
            aout = out.add_stream_from_template(ain) if ain is not None else None
            frames = audio = 0
            last_report = -1.0
            for packet in inp.demux(*(s for s in (vin, ain) if s is not None)):
                if packet.stream is ain and aout is not None:
                    if packet.dts is None:
                        continue  # the demuxer's flush packet
                    packet.stream = aout
                    out.mux(packet)
                    audio += 1
                    continue
                for frame in packet.decode():
                    if not isinstance(frame, VideoFrame) or frame.pts is None:
                        continue
                    out.mux(vout.encode(burn(frame, watermark, size)))
                    frames += 1
                    seconds = float(frame.pts * frame.time_base) if frame.time_base else 0.0
                    if duration and seconds - last_report >= 1.0:
                        last_report = seconds
                        progress(min(0.99, seconds / duration))
            out.mux(vout.encode(None))
            if not frames:
                raise ExportFailed("the recording has no decodable video")
    progress(1.0)
    log.info("exported a watermarked copy: %d frames, %d audio packets", frames, audio)
    return Exported(path=target, video_frames=frames, audio_packets=audio)


def _even(width: int, height: int) -> tuple[int, int] | None:
    size = (width - width % 2, height - height % 2)
    return size if size[0] > 0 and size[1] > 0 else None


def _first_size(
    inp: av.container.InputContainer, vin: av.video.stream.VideoStream
) -> tuple[int, int]:
    """The size of the first decodable frame (for a header that does not say)."""
    for frame in inp.decode(vin):
        size = _even(frame.width, frame.height)
        if size:
            inp.seek(0)
            return size
    raise ExportFailed("the recording has no decodable video")


def _video_stream(
    out: av.container.OutputContainer,
    kind: str,
    size: tuple[int, int],
    vin: av.video.stream.VideoStream,
    bit_rate: int,
) -> av.video.stream.VideoStream:
    rate = vin.average_rate or vin.guessed_rate or Fraction(30)
    options = (
        # Realtime speed settings: an export must not hold a core for long.
        {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        if kind == "webm"
        else {"preset": "veryfast", "tune": "zerolatency"}
    )
    stream = out.add_stream(ENCODERS[kind], rate=rate, options=options)
    if not isinstance(stream, av.video.stream.VideoStream):
        raise ExportFailed(f"{ENCODERS[kind]} is not a video encoder")
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = bit_rate
    stream.thread_count = 1
    # Keep the source's timestamps: frames stay where they were (gaps included).
    if vin.time_base is not None:
        stream.time_base = vin.time_base
        stream.codec_context.time_base = vin.time_base
    return stream
