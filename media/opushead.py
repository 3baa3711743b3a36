"""An Opus stream description for muxing Opus packets without an Opus codec.

WebM and MP4 need the OpusHead (RFC 7845) in the file header. PyAV can only copy
it from another stream's parameters, so we describe an Opus stream in a tiny
in-memory Ogg file (the two header pages and one silent frame), demux it, and use that
stream as the template: nothing is encoded or decoded, and no codec is opened.
"""

from __future__ import annotations

import io
import struct
from functools import cache

import av
from av.container import InputContainer

PRE_SKIP = 312  # what libopus and Chrome use, in 48 kHz samples


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) ^ _CRC[((crc >> 24) & 0xFF) ^ byte]) & 0xFFFFFFFF
    return crc


def _ogg_page(payload: bytes, *, seq: int, header_type: int, granule: int = 0) -> bytes:
    segments = [255] * (len(payload) // 255) + [len(payload) % 255]
    head = struct.pack(
        "<4sBBqIIIB", b"OggS", 0, header_type, granule, 0x7E1E1E1E, seq, 0, len(segments)
    ) + bytes(segments)
    page = bytearray(head + payload)
    struct.pack_into("<I", page, 22, _ogg_crc(bytes(page)))
    return bytes(page)


def opus_head(channels: int = 1) -> bytes:
    """The OpusHead packet for a 48 kHz stream, channel mapping family 0."""
    return struct.pack("<8sBBHIhB", b"OpusHead", 1, channels, PRE_SKIP, 48000, 0, 0)


def ogg_opus_header(channels: int = 1) -> bytes:
    """An Ogg Opus file: the two headers and one 20 ms frame of silence (the
    demuxer wants to see a packet before it describes the stream)."""
    tags = b"OpusTags" + struct.pack("<I", 11) + b"teleconsult" + struct.pack("<I", 0)
    silence = bytes([0xF8 | (0x04 if channels == 2 else 0)])  # CELT 20 ms, empty frame
    return (
        _ogg_page(opus_head(channels), seq=0, header_type=2)
        + _ogg_page(tags, seq=1, header_type=0)
        + _ogg_page(silence, seq=2, header_type=4, granule=PRE_SKIP + 960)
    )


@cache
def _template_container(channels: int) -> InputContainer:
    # Kept open for the life of the process: streams made from the template
    # copy its parameters, and it is a few hundred bytes.
    return av.open(io.BytesIO(ogg_opus_header(channels)), "r", format="ogg")


def opus_template(channels: int = 1) -> av.audio.stream.AudioStream:
    """A demuxed Opus stream whose parameters carry an OpusHead."""
    return _template_container(channels).streams.audio[0]
