"""The township benchmark's summary (tests/bench/township.py), on rows made here.

A cell whose calls did not all come up is summed up, not a crash: sorting the
call-ups of a cell with a failed call compared None with a number and the
whole run's summary was lost (found in review).
"""

from __future__ import annotations

from typing import Any

from .township import Row, summary


def test_a_cell_with_a_call_that_did_not_come_up_is_counted(capsys: Any) -> None:
    rows = [
        Row("1m-10loss-300ms", "relay", 2, up_s=2.5),
        Row("1m-10loss-300ms", "relay", 2, up_s=0.0, error="no video: TimeoutError"),
        Row("1m-10loss-300ms", "relay", 2, up_s=1.1),
        Row("clean", "relay", 2, up_s=0.0, error="no video: TimeoutError"),
    ]
    summary(rows)
    lines = capsys.readouterr().out.splitlines()
    lossy = "call up 1m-10loss-300ms relay: 3 call(s), median 1.8 s, slowest 2.5 s, 1 with no video"
    assert lossy in lines, lines
    assert "call up clean relay: 1 call(s), 1 with no video" in lines, lines


def test_the_bitrates_compared_are_the_clinic_encoders(capsys: Any) -> None:
    # Browser to browser the FEC packets count as received video; the relay
    # forwards only the media it rebuilt. The encoder's rate is the same measure
    # on both planes; what the page received is printed beside it.
    lossy = "1m-5loss-150ms"
    rows = [
        Row(lossy, "mesh-off", 2, up_s=1.0, kbps=754.0, encoder_kbps=480.0),
        Row(lossy, "mesh-off", 2, up_s=1.0, kbps=700.0, encoder_kbps=460.0),
        Row(
            lossy,
            "relay",
            2,
            up_s=1.0,
            kbps=511.0,
            encoder_kbps=470.0,
            encoded_pct=100.0,
            of_sent_pct=100.4,
            recorded_pct=97.1,
            setup_frames=8,
            connected_pct=99.8,
            start_frames=2,
            sending_pct=100.0,
        ),
        Row(lossy, "relay", 4, up_s=1.0, kbps=100.0, encoder_kbps=100.0),  # not 2 parties
    ]
    summary(rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        "township: live bitrate with recording >= 100% of without at 1 Mbit/s + 5% loss; "
        "recorded frames 99.8%"
    ), lines
    # The recording's share is the whole call's from the leg's connection on;
    # with the frames of its set-up counted too, it is printed apart.
    assert (
        "(recorded frames counting the camera's frames before the leg connected, 8 a call: 97.1%)"
    ) in lines, lines
    # ... and from the leg's first frame sent, with the frames before it.
    assert (
        "(recorded frames from the leg's first frame sent to the end: 100.0%; the camera's "
        "frames from the leg's connection to its first frame sent, 2 a call)"
    ) in lines, lines
    received = "(received by the specialist's page: relay 511 kbit/s of media, mesh 727 kbit/s"
    assert any(line.startswith(received) for line in lines), lines
