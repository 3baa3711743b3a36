"""The township clip's frame stamps (tests/bench/township.py): a recording's
missing frames are told by the frames' own indices, not by their timestamps.

The camera on a busy 2-core machine delivers some frames late: a step in the
timestamps with no frame missing. Counted from the timestamps, those steps read
as lost frames (a clean 4-party call printed 96.9 % recorded where the file held
every frame the page had sent). Here a clip is encoded by libvpx at a township
bitrate, with frames left out and frames delivered late, scaled down as the
browser may scale it, and read back.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from av.video.frame import PictureType

from .township import CLIP_SECONDS, FPS, file_frames, make_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "camera.y4m"
    make_clip(path)
    return path


def record(
    clip: Path,
    out: Path,
    width: int,
    left_out: set[int],
    late: set[int],
    twice: set[int],
    stale: set[int],
    keyframes: frozenset[int] = frozenset(),
) -> None:
    """Encode the clip twice over (it loops, as the fake camera does) as VP8 at
    250 kbit/s; frames in left_out are not encoded, and at each frame in late the
    capture stalls: it and every frame after it come a frame interval later;
    frames in twice come twice (as Chromium's file camera repeats the clip's
    first frame when it loops), and frames in stale show the picture of the
    frame two before them (as a frame written incomplete decodes); frames in
    keyframes are encoded as keyframes (the first is one anyway)."""
    with av.open(str(clip)) as source, av.open(str(out), "w", format="webm") as sink:
        stream = sink.add_stream("libvpx", rate=FPS)
        stream.width, stream.height = width, width * 3 // 4
        stream.pix_fmt, stream.bit_rate = "yuv420p", 250_000
        # As a browser encodes a call: in real time (libvpx's default "good"
        # deadline made the file take 16.7 CPU-seconds alone, against 9.4).
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        stream.codec_context.time_base = Fraction(1, 1000)
        frames = [f.reformat(width=width, height=width * 3 // 4) for f in source.decode(video=0)]
        extra = 0  # the capture's ticks beyond the frame's index: stalls and repeats
        looped = frames * 2
        for n, original in enumerate(looped):
            if n in stale:
                original = looped[n - 2]
            extra += n in late
            if n in left_out:
                continue
            for copy in range(2 if n in twice else 1):
                extra += copy
                frame = original.reformat()  # a frame of its own, for its own timestamp
                frame.pts = round((n + extra) * 1000 / FPS)
                frame.time_base = Fraction(1, 1000)
                # (A decoded picture comes marked I: passed on, libvpx would
                # make every frame a keyframe.)
                frame.pict_type = PictureType.I if n in keyframes else PictureType.NONE
                for packet in stream.encode(frame):
                    sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)


@pytest.mark.parametrize("width", [640, 320])
def test_the_file_says_which_camera_frames_it_lacks(clip: Path, tmp_path: Path, width: int) -> None:
    length = CLIP_SECONDS * FPS
    # Two frames missing together, one alone just past the clip's loop, two
    # stalls of the capture with no frame missing, the loop's first frame
    # delivered twice, and frame 200 showing frame 198's picture.
    left_out = {20, 21, length + 3}
    late = {60, 100}
    out = tmp_path / "leg.webm"
    # The camera's frame after the lone gap is a keyframe (a browser's pacer
    # drops the frames it holds when a keyframe is asked for).
    keyframes = frozenset({length + 4})
    record(clip, out, width, left_out, late, twice={length}, stale={200}, keyframes=keyframes)
    held = file_frames(out)
    assert held.frames == 2 * length - 3 + 1
    assert held.wrong == [pytest.approx(203 / FPS, abs=0.01)]  # 2 stalls, 1 repeat before
    assert held.unread == 0
    # The stale frame is counted apart, and the frame it stands in for is missing.
    assert [size for _, size in held.gaps] == [2, 1, 1]
    assert held.gaps[0][0] == pytest.approx(19 / FPS, abs=0.01)
    assert held.keyframe_after == [False, True, False]
    assert held.repeated == 1
    assert held.late_steps == 2
    # The file counted up to the camera's frame at a call's end, told by its
    # stamp (the occurrence nearest the file's end): the frames before the
    # second loop's frame 134, and all of them for a stamp the file ends before.
    assert held.until(length - 10) == 2 * length - 10 - 3 + 1
    assert held.until(5) == held.frames
    # Where the file ends against that frame: right before it, or (the file
    # ends at the second loop's last frame) five frames short of frame 5.
    assert held.short_of(length - 10) == 0
    assert held.short_of(5) == 5
    assert held.narrowest == width
