"""Structure checks of the emulator's result files, written from the formats' specifications.

Each ``parse_*`` raises ``AssertionError`` on a malformed file and returns what a player reads
first (dimensions, frame count, ...). When ffprobe is installed, ``ffprobe_ok`` lets a real
decoder judge the file too.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass


@dataclass
class Picture:
    width: int
    height: int
    pixels: bytes  # RGB rows (PNG only; WebP: empty)


def parse_png(data: bytes) -> Picture:
    """Signature, chunk CRCs, IHDR, and the inflated rows (filter 0, 8-bit RGB)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    kinds = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + chunk) == crc, kind
        kinds.append(kind)
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and pos == len(data)
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", header)
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return Picture(width, height, b"".join(row[1:] for row in rows))


def parse_webp(data: bytes) -> Picture:
    """RIFF sizes, the VP8L signature and header (dimensions, version 0)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    (riff_size,) = struct.unpack("<I", data[4:8])
    assert riff_size + 8 == len(data)
    assert data[12:16] == b"VP8L"
    (chunk_size,) = struct.unpack("<I", data[16:20])
    assert 20 + chunk_size + (chunk_size & 1) == len(data)
    assert data[20] == 0x2F
    (bits,) = struct.unpack("<I", data[21:25])
    width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    assert bits >> 29 == 0  # version
    return Picture(width, height, b"")


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """Top-level boxes of ``data[start:end]``: kind -> (payload start, payload end)."""
    end = len(data) if end is None else end
    found: dict[bytes, tuple[int, int]] = {}
    pos = start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert size >= 8 and pos + size <= end, kind
        found[kind] = (pos + 8, pos + size)
        pos += size
    assert pos == end
    return found


@dataclass
class Video:
    width: int
    height: int
    frames: int
    seconds: float


def parse_mp4(data: bytes) -> Video:
    """ftyp/moov/mdat, the H.264 track's sample table, and every sample's NAL units."""
    top = _boxes(data)
    assert set(top) >= {b"ftyp", b"moov", b"mdat"}
    moov = _boxes(data, *top[b"moov"])
    trak = _boxes(data, *moov[b"trak"])
    mdia = _boxes(data, *trak[b"mdia"])
    a, _ = mdia[b"hdlr"]
    assert data[a + 8 : a + 12] == b"vide"
    a, _ = mdia[b"mdhd"]
    timescale, duration = struct.unpack(">II", data[a + 12 : a + 20])
    stbl = _boxes(data, *_boxes(data, *mdia[b"minf"])[b"stbl"])
    a, _ = stbl[b"stsd"]
    assert data[a + 12 : a + 16] == b"avc1"
    width, height = struct.unpack(">HH", data[a + 16 + 24 : a + 16 + 28])
    assert b"avcC" in data[a : stbl[b"stsd"][1]]
    a, _ = stbl[b"stsz"]
    _, count = struct.unpack(">II", data[a + 4 : a + 12])
    sizes = struct.unpack(f">{count}I", data[a + 12 : a + 12 + 4 * count])
    a, _ = stbl[b"stco"]
    (offset,) = struct.unpack(">I", data[a + 8 : a + 12])
    mdat_start, mdat_end = top[b"mdat"]
    assert offset == mdat_start and offset + sum(sizes) == mdat_end
    for size in sizes:  # each sample: length-prefixed NAL units, an IDR slice among them
        sample, pos, types = data[offset : offset + size], 0, []
        while pos < size:
            (length,) = struct.unpack(">I", sample[pos : pos + 4])
            types.append(sample[pos + 4] & 0x1F)
            pos += 4 + length
        assert pos == size and 5 in types
        offset += size
    return Video(width, height, count, duration / timescale)


@dataclass
class Audio:
    frames: int
    seconds: float
    loud_granules: int


_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def parse_mp3(data: bytes) -> Audio:
    """Back-to-back MPEG-1 Layer III frames at 44.1 kHz; counts granules that carry sound."""
    pos = frames = loud = 0
    while pos < len(data):
        h = data[pos : pos + 4]
        assert h[0] == 0xFF and h[1] & 0xFE == 0xFA, f"no frame sync at byte {pos}"
        bitrate = _BITRATES[h[2] >> 4] * 1000
        assert (h[2] >> 2) & 3 == 0  # 44.1 kHz
        size = 144 * bitrate // 44100 + ((h[2] >> 1) & 1)
        mono = h[3] >> 6 == 3
        side = int.from_bytes(data[pos + 4 : pos + 4 + (17 if mono else 32)], "big")
        side_bits = (17 if mono else 32) * 8
        first = 9 + (5 if mono else 3) + (4 if mono else 8)
        for granule in range(2 if mono else 4):
            shift = side_bits - first - 59 * granule - 12
            loud += (side >> shift) & 0xFFF > 0  # part2_3_length: bits of spectrum
        pos += size
        frames += 1
    assert pos == len(data)
    return Audio(frames, frames * 1152 / 44100, loud)


def ffprobe_ok(data: bytes, suffix: str) -> bool | None:
    """True if ffmpeg decodes the whole file without an error; None without ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    run = subprocess.run(
        [ffmpeg, "-v", "error", "-f", {"mp3": "mp3", "mp4": "mp4"}.get(suffix, "image2pipe"),
         "-i", "-", "-f", "null", "-"],
        input=data, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return run.returncode == 0 and not run.stderr.strip()
