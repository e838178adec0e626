"""Small real pictures for the emulator's result files: a landscape drawn from the prompt.

A newcomer opening an offline result should see a picture, and two prompts should not give the
same one. So the prompt seeds a little scene (sky, sun, two ranges of hills) rendered in pure
Python and saved as PNG (zlib) or lossless WebP (an uncompressed VP8L bitstream); the video
encoder animates the same scene. No imaging library needed.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from ._bits import LsbBitWriter

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
RGB = tuple[int, int, int]


def _mix(a: RGB, b: RGB, f: float) -> RGB:
    return (
        int(a[0] + (b[0] - a[0]) * f),
        int(a[1] + (b[1] - a[1]) * f),
        int(a[2] + (b[2] - a[2]) * f),
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass(frozen=True)
class Scene:
    """What a prompt draws: colours, the sun's place and the hills' shapes (all from a hash)."""

    sky_top: RGB
    sky_bottom: RGB
    sun: RGB
    far: RGB
    near: RGB
    sun_x: float
    sun_y: float
    sun_r: float
    waves: tuple[float, ...]

    @classmethod
    def of(cls, text: str) -> Scene:
        d = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=32).digest()
        u = [b / 255 for b in d]
        # A day sky (blues) or a sunset (reds, oranges); the land takes the opposite hues.
        hue = 0.5 + 0.2 * u[0] if u[17] < 0.6 else (0.93 + 0.17 * u[0]) % 1
        return cls(
            sky_top=_hsv(hue, 0.55 + 0.4 * u[1], 0.45 + 0.4 * u[2]),
            sky_bottom=_hsv((hue + 0.08 + 0.1 * u[3]) % 1, 0.25 + 0.3 * u[4], 0.95),
            sun=_hsv((hue + 0.5) % 1 if u[5] > 0.5 else 0.12, 0.6 + 0.4 * u[6], 1.0),
            far=_hsv((hue + 0.3 + 0.2 * u[7]) % 1, 0.4 + 0.3 * u[8], 0.5 + 0.2 * u[9]),
            near=_hsv((hue + 0.35 + 0.2 * u[10]) % 1, 0.6 + 0.3 * u[11], 0.25 + 0.2 * u[12]),
            sun_x=0.15 + 0.7 * u[13],
            sun_y=0.15 + 0.3 * u[14],
            sun_r=0.08 + 0.1 * u[15],
            waves=tuple(u[16:32]),
        )

    def render(self, width: int, height: int, t: float = 0.0) -> bytes:
        """RGB rows (``3 * width * height`` bytes); ``t`` in [0, 1] moves the sun (for video).

        Built row by row from a few colours per row (the emulator renders on its event loop:
        a picture costs about a millisecond); only the sun's box is drawn pixel by pixel.
        """
        w = self.waves
        sun_x = (self.sun_x + 0.3 * t) % 1.0 * width
        sun_y = (self.sun_y + 0.1 * math.sin(math.pi * t)) * height
        radius = self.sun_r * min(width, height)
        glow = 1.6 * radius
        far_top = [
            math.ceil(height * (0.59 + 0.08 * math.sin(6.3 * (x / width * (1 + 2 * w[0]) + w[1]))))
            for x in range(width)
        ]
        near_top = [
            math.ceil(
                height
                * (0.75 + 0.06 * math.sin(6.3 * (x / width * (2 + 3 * w[3]) + w[4] + 0.5 * t)))
            )
            for x in range(width)
        ]
        rows: list[bytes] = []
        last = max(height - 1, 1)
        sun = bytes(self.sun)
        for y in range(height):
            sky_rgb = _mix(self.sky_top, self.sky_bottom, y / last)
            sky, far = bytes(sky_rgb), bytes(_mix(self.far, sky_rgb, 0.25))
            near = bytes(_mix(self.near, (0, 0, 0), 0.5 * y / height))
            row = [
                near if y >= n else far if y >= f else sky
                for n, f in zip(near_top, far_top, strict=True)
            ]
            dy = y - sun_y
            if abs(dy) < glow:
                shades = [bytes(_mix(self.sun, sky_rgb, 0.3 + 0.1 * k)) for k in range(8)]
                span = math.sqrt(glow * glow - dy * dy)
                for x in range(max(0, int(sun_x - span)), min(width, int(sun_x + span) + 1)):
                    if row[x] is sky:
                        d = math.hypot(x - sun_x, dy) - radius
                        row[x] = sun if d <= 0 else shades[min(7, int(8 * d / (glow - radius)))]
            rows.append(b"".join(row))
        return b"".join(rows)


def size_for(aspect: str | None, long_side: int = 96) -> tuple[int, int]:
    """A small width and height with the requested aspect ratio (``"16:9"``), else square."""
    try:
        a, b = (float(p) for p in (aspect or "").split(":"))
    except ValueError:
        return long_side, long_side
    if not (a > 0 and b > 0):
        return long_side, long_side
    if a >= b:
        return long_side, max(8, round(long_side * b / a))
    return max(8, round(long_side * a / b)), long_side


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: bytes, width: int, height: int) -> bytes:
    """RGB rows as an 8-bit truecolour PNG."""
    stride = 3 * width
    rows = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


_BIT_REVERSED: Final = bytes(int(f"{v:08b}"[::-1], 2) for v in range(256))


def _flat_code(bits: LsbBitWriter, alphabet: int) -> None:
    """A normal VP8L prefix code giving the first 256 symbols 8-bit codes (and no others).

    The code-length code has two 1-bit symbols: ``0`` (code 0) and ``8`` (code 1); symbol 8 is
    the 12th in the format's code-length order, so 12 code-length lengths are sent.
    """
    bits.bits(0, 1)  # not a simple code
    bits.bits(12 - 4, 4)
    order = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8)
    for symbol in order:
        bits.bits(1 if symbol in (0, 8) else 0, 3)
    bits.bits(0, 1)  # every symbol's length follows
    for symbol in range(alphabet):
        bits.bits(1 if symbol < 256 else 0, 1)


def _single(bits: LsbBitWriter, symbol: int) -> None:
    """A simple VP8L prefix code with one 8-bit symbol: reading it costs no bits."""
    bits.bits(1, 1)
    bits.bits(0, 1)
    bits.bits(1, 1)
    bits.bits(symbol, 8)


def encode_webp(rgb: bytes, width: int, height: int) -> bytes:
    """RGB rows as a lossless WebP (VP8L, no transforms, every channel an 8-bit code)."""
    bits = LsbBitWriter()
    bits.bits(0x2F, 8)
    bits.bits(width - 1, 14)
    bits.bits(height - 1, 14)
    bits.bits(0, 1)  # no alpha
    bits.bits(0, 3)  # version
    bits.bits(0, 1)  # no transform
    bits.bits(0, 1)  # no colour cache
    bits.bits(0, 1)  # no meta prefix codes
    _flat_code(bits, 256 + 24)  # green + length prefixes
    _flat_code(bits, 256)  # red
    _flat_code(bits, 256)  # blue
    _single(bits, 255)  # alpha: opaque
    _single(bits, 0)  # distance: unused
    # Every pixel is three 8-bit codes (green, red, blue), each sent most significant bit
    # first: the pixel bytes reordered and bit-reversed, appended after the header's bits.
    pixels = bytearray(len(rgb))
    pixels[0::3], pixels[1::3], pixels[2::3] = rgb[1::3], rgb[0::3], rgb[2::3]
    stream = bits.getvalue(), bits.bit_length
    tail = int.from_bytes(pixels.translate(_BIT_REVERSED), "little") << stream[1]
    total = int.from_bytes(stream[0], "little") | tail
    data = total.to_bytes((stream[1] + 8 * len(pixels) + 7) // 8, "little")
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


@lru_cache(maxsize=64)
def picture(text: str, ext: str, aspect: str | None = None) -> bytes:
    """The picture ``text`` draws, as ``ext`` (``png`` or ``webp``)."""
    width, height = size_for(aspect)
    rgb = Scene.of(text).render(width, height)
    return encode_webp(rgb, width, height) if ext == "webp" else encode_png(rgb, width, height)
