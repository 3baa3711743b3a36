"""The township benchmark still runs, and the relay holds on a weak uplink.

Not a performance test (the machine is shared): one short relayed call on the
issue's lossy profile (1 Mbit/s up, 5 % loss, 150 ms), checked for what a clinic
doctor would notice: the call comes up, the specialist sees the clinic's video
moving and hears it, and the clinic's recording runs at full width. The side-by-side numbers
are the benchmark's (``python tests/bench/township.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("township.py")
ULPFEC = re.compile(
    r"recording peer=\w+ ULPFEC: (\d+) FEC packets, (\d+) lost packets rebuilt, "
    r"(\d+) of them also retransmitted, (\d+) of those different"
)
PRECALL = re.compile(
    r"1m-5loss-150ms \| relay \| 2: pre-call check (\w+) \([\w, -]+\): direct (\d+) kbit/s up, "
    r"(\d+\.\d) % loss, (\d+) ms"
)
LAST_LINE = re.compile(
    r"township: live bitrate with recording >= (\d+|-)% of without at 1 Mbit/s \+ 5% loss; "
    r"recorded frames (\d+\.\d|-)%"
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_a_relayed_call_on_a_lossy_township_uplink() -> None:
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [
            sys.executable,
            str(SCRIPT),
            "--profiles",
            "1m-5loss-150ms",
            "--planes",
            "relay",
            "--parties",
            "2",
            "--seconds",
            "6",
            "--warmup",
            "2",
            "--detail",
            "--precall",
            # Beside CI's database passes (nice 19, on both CPUs) the clinic's
            # browser is better off free to run on either: confined to one,
            # one CI run's call had 49 late camera frames, 18.4 fps and 98.88 %
            # of what the page sent in its file. Its own CPU is for a machine
            # that runs only the benchmark (test_township_cpus.py checks the pin).
            "--clinic-cpu",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = done.stdout.strip().splitlines()
    assert LAST_LINE.fullmatch(lines[-1]), output
    head = next(line for line in lines if line.startswith("profile |")).split(" | ")
    row = next(line for line in lines if line.startswith("1m-5loss-150ms | relay | 2 |"))
    cells = dict(zip(head, row.split(" | "), strict=True))
    assert float(cells["up s"]) < 3.0, output  # the call comes up
    # The summary's call-up line agrees with the row.
    up = re.compile(r"call up 1m-5loss-150ms relay: 1 call\(s\), median (\d+\.\d) s, slowest \1 s")
    summary = next((up.fullmatch(line) for line in lines if line.startswith("call up")), None)
    assert summary and summary.group(1) == cells["up s"], output
    assert float(cells["fps"]) >= 10, output  # the picture moves
    assert float(cells["conceal %"]) < 15, output  # about the link's own 5 % loss
    assert int(cells["min width"]) >= 480, output  # the recording is not shrunk
    # Every frame the page sent reaches the file, the last ones too: the leg
    # ends after the packets they missed were resent (it lost about half a
    # second of every recording at the end before: 97.5 % at 10 % loss). The
    # file ends at the camera's frame read when the page sent "end" (a frame or
    # two short where the encoder had not sent it yet).
    ends = re.search(r"file ends (\d+) frame\(s\) short of the camera's frame", output)
    assert ends and int(ends.group(1)) <= 3, output
    assert float(cells["of sent %"]) >= 99, output
    # A loose bound: what the browser's encoder sends of the camera's frames
    # varies with the machine's load (94 % at a load of 12). It catches a leg
    # that the page starves.
    assert float(cells["sent of camera %"]) >= 80, output
    # Every frame written must decode: a frame muxed out of order (its first
    # packet resent after a NACK) broke the frames after it up to the next
    # keyframe, 17-36 frames in a 6 s call on this profile.
    assert "the decoder refused" not in output, output
    # How late the server's loop ran its timer in the window (a stall delays
    # every relayed packet): printed, with where the loop was when it stalled.
    loop = re.search(
        r"server loop late p99 (\d+) ms, longest (\d+) ms, \d+ tick\(s\) over 50 ms; "
        r"GC \d+ pause\(s\), longest \d+ ms; over 100 ms \(late/the loop's CPU meanwhile, "
        r"ms\): (-|\d+/\d+(, \d+/\d+)*), in: ",
        output,
    )
    assert loop and int(loop.group(1)) <= int(loop.group(2)), output
    assert "CPUs: every process shares every CPU" in output, output
    # The server runs with the garbage collector as ``teleconsult serve`` sets
    # it: what existed at its start is frozen, and a full collection walks only
    # what came since (without it, one stopped the loop for 302 ms).
    collector = re.search(r"garbage collector: (\d+) objects tracked, (\d+) frozen", output)
    assert collector and int(collector.group(2)) > int(collector.group(1)), output
    # The page read the stamp of its camera's frame when it sent "end" (the
    # file is counted up to it), and the file's frames carry readable stamps.
    after = re.search(r"file frames: (\d+) after the end", output)
    assert after and int(after.group(1)) <= 24, output
    assert re.search(r"file \d+ frames, \d+ missing in \d+ gap\(s\), 0 unread", output), output
    # The clinic ran the pre-call check over its link first. Paced data channel
    # packets measured 244 kbit/s and 52.9 % loss here (the channel's SCTP
    # backed off at every loss; what the page still held was counted lost),
    # and the verdict was "unusable" for a link whose call carries 540 kbit/s
    # of video at 23.5 fps. Video measures it as the call meets it.
    check = PRECALL.search(output)
    assert check, output
    verdict, uplink, loss, rtt = check.groups()
    assert verdict != "unusable", output
    assert int(uplink) >= 500, output
    assert 1.0 <= float(loss) <= 12.0, output
    assert 120 <= int(rtt) <= 400, output
    # The clinic's leg came in RED with ULPFEC, and the recorder rebuilt lost
    # packets from it without a round trip; each rebuilt packet whose
    # retransmission came after all was the same, byte for byte. (The other
    # leg, the specialist's, crosses no loss: its browser sends no FEC.)
    fec = [tuple(map(int, m.groups())) for m in ULPFEC.finditer(output)]
    assert fec and max(f[0] for f in fec) > 0, output
    clinic = max(fec)
    assert clinic[1] > 0 and clinic[3] == 0, clinic
