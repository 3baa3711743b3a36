"""Picture size from the first keyframe (the muxers need it in the file header).

Read from the bitstream itself, without a decoder: the VP8 key frame header
(RFC 6386, 9.1) and the H.264 sequence parameter set (ITU-T H.264, 7.3.2.1.1).
"""

from __future__ import annotations

HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 key frame, or None if it is not one."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError on truncated input
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _nal_units(access_unit: bytes) -> list[bytes]:
    parts = access_unit.split(b"\x00\x00\x01")
    return [q for q in (p.rstrip(b"\x00") for p in parts) if q]


def h264_size(access_unit: bytes) -> tuple[int, int] | None:
    """Width and height from the SPS in an Annex-B access unit, or None without one."""
    for nal in _nal_units(access_unit):
        if nal[0] & 0x1F != 7:
            continue
        try:
            return _sps_size(_unescape(nal[1:]))
        except (IndexError, ValueError):
            return None
    return None


def _sps_size(sps: bytes) -> tuple[int, int]:
    bits = _Bits(sps)
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.u(1)
        bits.ue()
        bits.ue()
        bits.u(1)
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    last, following = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if following:
                            following = (last + bits.se() + 256) % 256
                        last = following or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)
    bits.u(1)
    crop = (0, 0, 0, 0)
    if bits.u(1):
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    sub_w, sub_h = (2, 2) if chroma_format == 1 else (2, 1) if chroma_format == 2 else (1, 1)
    crop_x = sub_w if chroma_format else 1
    crop_y = (sub_h if chroma_format else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    return width, height


def picture_size(codec: str, keyframe: bytes) -> tuple[int, int] | None:
    """Picture size from a keyframe of ``codec`` (``vp8`` or ``h264``)."""
    if codec == "vp8":
        return vp8_size(keyframe)
    if codec == "h264":
        return h264_size(keyframe)
    return None
