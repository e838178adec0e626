"""A short real MP4 for the emulator's video results: the prompt's scene, its sun moving.

H.264 Baseline in an ISO MP4, written in pure Python. Every frame is an IDR picture whose
macroblocks are all ``I_PCM`` (raw samples, the one H.264 macroblock needing no transform or
entropy coder), so any player decodes it. A few frames at a low rate keep it small.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache
from typing import Final

from ._bits import BitWriter
from ._pictures import Scene

PROFILE: Final = 66  # Baseline
LEVEL: Final = 30
MB: Final = 16


_NEEDS_ESCAPE: Final = re.compile(rb"\x00\x00(?=[\x00-\x03])")


def _nal(ref_idc: int, kind: int, rbsp: bytes) -> bytes:
    """A NAL unit: header byte, then the payload with emulation-prevention bytes."""
    return bytes([(ref_idc << 5) | kind]) + _NEEDS_ESCAPE.sub(b"\x00\x00\x03", rbsp)


def _trailing(bits: BitWriter) -> bytes:
    bits.bits(1, 1)
    return bits.getvalue()


def sps(width: int, height: int) -> bytes:
    b = BitWriter()
    b.bits(PROFILE, 8)
    b.bits(0xC0, 8)  # constraint_set0/1: plain Baseline
    b.bits(LEVEL, 8)
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type 2: output order = decoding order
    b.ue(1)  # max_num_ref_frames
    b.bits(0, 1)  # gaps_in_frame_num_value_allowed_flag
    b.ue(width // MB - 1)
    b.ue(height // MB - 1)
    b.bits(1, 1)  # frame_mbs_only_flag
    b.bits(1, 1)  # direct_8x8_inference_flag
    b.bits(0, 1)  # frame_cropping_flag
    b.bits(0, 1)  # vui_parameters_present_flag
    return _nal(3, 7, _trailing(b))


def pps() -> bytes:
    b = BitWriter()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.bits(0, 1)  # CAVLC
    b.bits(0, 1)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)  # num_ref_idx_l0_default_active_minus1
    b.ue(0)  # num_ref_idx_l1_default_active_minus1
    b.bits(0, 1)  # weighted_pred_flag
    b.bits(0, 2)  # weighted_bipred_idc
    b.se(0)  # pic_init_qp_minus26
    b.se(0)  # pic_init_qs_minus26
    b.se(0)  # chroma_qp_index_offset
    b.bits(0, 1)  # deblocking_filter_control_present_flag
    b.bits(0, 1)  # constrained_intra_pred_flag
    b.bits(0, 1)  # redundant_pic_cnt_present_flag
    return _nal(3, 8, _trailing(b))


@lru_cache(maxsize=4096)
def _ycbcr(rgb: bytes) -> tuple[int, int, int]:
    """BT.601 studio range, kept in 1..254 (a picture has few colours: memoised)."""
    r, g, b = rgb
    y = round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    cb = round(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255)
    cr = round(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)
    return min(254, max(1, y)), min(254, max(1, cb)), min(254, max(1, cr))


def _planes(scene: Scene, width: int, height: int, t: float) -> tuple[bytes, bytes, bytes]:
    """Y at full size; Cb and Cr from the scene drawn at half size (4:2:0)."""
    full = scene.render(width, height, t)
    half = scene.render(width // 2, height // 2, t)
    luma = bytes(_ycbcr(full[i : i + 3])[0] for i in range(0, len(full), 3))
    chroma = [_ycbcr(half[i : i + 3]) for i in range(0, len(half), 3)]
    return luma, bytes(c[1] for c in chroma), bytes(c[2] for c in chroma)


def _block(plane: bytes, stride: int, x: int, y: int, size: int) -> bytes:
    return b"".join(plane[(y + r) * stride + x : (y + r) * stride + x + size] for r in range(size))


def idr_slice(
    planes: tuple[bytes, bytes, bytes], width: int, height: int, idr_pic_id: int
) -> bytes:
    """One picture (Y, Cb, Cr planes): an IDR slice whose macroblocks are all I_PCM."""
    luma, cb, cr = planes
    b = BitWriter()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I (every slice of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.bits(0, 4)  # frame_num (log2_max_frame_num = 4)
    b.ue(idr_pic_id)
    b.bits(0, 1)  # no_output_of_prior_pics_flag
    b.bits(0, 1)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    for my in range(height // MB):
        for mx in range(width // MB):
            b.ue(25)  # mb_type I_PCM
            b.align()  # pcm_alignment_zero_bit
            b.raw(_block(luma, width, mx * MB, my * MB, MB))
            b.raw(_block(cb, width // 2, mx * 8, my * 8, 8))
            b.raw(_block(cr, width // 2, mx * 8, my * 8, 8))
    return _nal(3, 5, _trailing(b))


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, version_flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version_flags), *parts)


_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _moov(
    sizes: list[int], width: int, height: int, fps: int, offset: int, sps_: bytes, pps_: bytes
) -> bytes:
    n = len(sizes)
    duration = n * 1000 // fps  # movie timescale: ms
    avcc = _box(
        b"avcC",
        bytes([1, PROFILE, 0xC0, LEVEL, 0xFF, 0xE1]),
        struct.pack(">H", len(sps_)),
        sps_,
        b"\x01",
        struct.pack(">H", len(pps_)),
        pps_,
    )
    avc1 = _box(
        b"avc1",
        b"\x00" * 6 + struct.pack(">H", 1),  # reserved, data_reference_index
        b"\x00" * 16,
        struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
        bytes([10]) + b"gptunnel-emulator"[:31].ljust(31, b"\x00")[:31],
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, struct.pack(">I", 1), avc1),
        _full(b"stts", 0, struct.pack(">III", 1, n, 1)),
        _full(b"stsc", 0, struct.pack(">IIII", 1, 1, n, 1)),
        _full(b"stsz", 0, struct.pack(">II", 0, n), *(struct.pack(">I", s) for s in sizes)),
        _full(b"stco", 0, struct.pack(">II", 1, offset)),
    )
    minf = _box(
        b"minf",
        _full(b"vmhd", 1, b"\x00" * 8),
        _box(b"dinf", _full(b"dref", 0, struct.pack(">I", 1), _full(b"url ", 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full(b"mdhd", 0, struct.pack(">IIIIHH", 0, 0, fps, n, 0x55C4, 0)),
        _full(b"hdlr", 0, b"\x00" * 4 + b"vide" + b"\x00" * 12 + b"VideoHandler\x00"),
        minf,
    )
    tkhd = _full(
        b"tkhd",
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, 1, 0, duration),
        b"\x00" * 8,
        struct.pack(">hhhH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mvhd = _full(
        b"mvhd",
        0,
        struct.pack(">IIII", 0, 0, 1000, duration),
        struct.pack(">IH", 0x10000, 0x100),
        b"\x00" * 10,
        _MATRIX,
        b"\x00" * 24,
        struct.pack(">I", 2),
    )
    return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))


@lru_cache(maxsize=16)
def clip(text: str, width: int = 64, height: int = 48, frames: int = 8, fps: int = 4) -> bytes:
    """``frames / fps`` seconds of the scene ``text`` draws (dimensions multiples of 16)."""
    if width % MB or height % MB:
        raise ValueError("width and height must be multiples of 16")
    scene = Scene.of(text)
    samples = []
    for n in range(frames):
        nal = idr_slice(_planes(scene, width, height, n / frames), width, height, n % 2)
        samples.append(struct.pack(">I", len(nal)) + nal)
    sps_, pps_ = sps(width, height), pps()
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    sizes = [len(s) for s in samples]
    draft = _moov(sizes, width, height, fps, 0, sps_, pps_)
    moov = _moov(sizes, width, height, fps, len(ftyp) + len(draft) + 8, sps_, pps_)
    return ftyp + moov + _box(b"mdat", *samples)
