"""A short real MP3 for the emulator's audio results: a little tune picked by the prompt.

MPEG-1 Layer III, mono, 44.1 kHz, 32 kbit/s, written bit by bit: each granule carries a single
spectral line (Huffman table 1), so the decoder plays a plain tone at that line's pitch. Notes
come from a pentatonic scale chosen by a hash of the prompt, so two prompts sound different.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Final

from ._bits import BitWriter

SAMPLE_RATE: Final = 44_100
SAMPLES_PER_FRAME: Final = 1152
#: 32 kbit/s at 44.1 kHz: 144 * 32000 / 44100 = 104 bytes a frame (no padding).
FRAME_BYTES: Final = 104
#: Sync, MPEG-1, Layer III, no CRC | 32 kbit/s, 44.1 kHz, no padding | mono.
HEADER: Final = b"\xff\xfb\x10\xc0"
SIDE_INFO_BYTES: Final = 17
#: The spectral lines the notes use (line k is centred near (k + 0.5) * 38.3 Hz): a scale.
PENTATONIC: Final = (7, 8, 9, 11, 12, 14, 16, 18, 21, 23)
#: Loudness of every note (0..255; +4 doubles the amplitude).
GLOBAL_GAIN: Final = 196

# Huffman table 1 of ISO/IEC 11172-3 (values 0..1, no linbits): (x, y) -> code.
_TABLE1: Final = {(0, 0): "1", (0, 1): "001", (1, 0): "01", (1, 1): "000"}


def _granule_data(line: int) -> BitWriter:
    """Huffman-coded spectrum with one non-zero line (+1 at ``line``)."""
    out = BitWriter()
    for pair in range(line // 2 + 1):
        x = 1 if 2 * pair == line else 0
        y = 1 if 2 * pair + 1 == line else 0
        out.code(_TABLE1[(x, y)])
        if x or y:
            out.bits(0, 1)  # sign: positive
    return out


def _side_info(line: int, bits: int) -> tuple[int, ...]:
    """One granule's side-info fields (long blocks, table 1 everywhere)."""
    return (bits, line // 2 + 1, GLOBAL_GAIN, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0)


_GRANULE_WIDTHS: Final = (12, 9, 8, 4, 1, 5, 5, 5, 4, 3, 1, 1, 1)


@lru_cache(maxsize=64)
def frame(line: int) -> bytes:
    """One frame (two granules) playing spectral ``line``."""
    data = _granule_data(line)
    payload = data.getvalue()
    side = BitWriter()
    side.bits(0, 9)  # main_data_begin: no bit reservoir
    side.bits(0, 5)  # private bits
    side.bits(0, 4)  # scfsi
    for _ in range(2):
        for value, width in zip(_side_info(line, data.bit_length), _GRANULE_WIDTHS, strict=True):
            side.bits(value, width)
    main = BitWriter()
    for _ in range(2):  # the same granule twice, bit-contiguous
        main.code("".join(f"{b:08b}" for b in payload)[: data.bit_length])
    body = HEADER + side.getvalue() + main.getvalue()
    assert len(body) <= FRAME_BYTES
    return body + b"\x00" * (FRAME_BYTES - len(body))


@lru_cache(maxsize=64)
def tune(text: str, seconds: float = 2.0, notes: int = 8) -> bytes:
    """About ``seconds`` of MP3: ``notes`` notes picked from the scale by a hash of ``text``."""
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=notes).digest()
    frames = max(notes, round(seconds * SAMPLE_RATE / SAMPLES_PER_FRAME))
    out = bytearray()
    for n in range(frames):
        note = PENTATONIC[digest[n * notes // frames] % len(PENTATONIC)]
        out += frame(note)
    return bytes(out)
