"""Bit writers for the emulator's file encoders: MSB-first (H.264, MP3) and LSB-first (WebP)."""

from __future__ import annotations


class BitWriter:
    """Appends bits to a byte string, most significant bit of each byte first."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0
        self._n = 0

    def bits(self, value: int, count: int) -> None:
        """Write the low ``count`` bits of ``value``, its highest bit first."""
        for shift in range(count - 1, -1, -1):
            self._acc = (self._acc << 1) | ((value >> shift) & 1)
            self._n += 1
            if self._n == 8:
                self._out.append(self._acc)
                self._acc = self._n = 0

    def code(self, pattern: str) -> None:
        """Write a code given as a string of ``0``/``1`` characters."""
        for bit in pattern:
            self.bits(bit == "1", 1)

    def ue(self, value: int) -> None:
        """Unsigned Exp-Golomb (H.264's ``ue(v)``)."""
        value += 1
        length = value.bit_length()
        self.bits(0, length - 1)
        self.bits(value, length)

    def se(self, value: int) -> None:
        """Signed Exp-Golomb (``se(v)``)."""
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    @property
    def aligned(self) -> bool:
        return self._n == 0

    @property
    def bit_length(self) -> int:
        return len(self._out) * 8 + self._n

    def raw(self, data: bytes) -> None:
        """Append whole bytes (the writer must be byte-aligned)."""
        assert self.aligned
        self._out += data

    def align(self) -> None:
        """Pad with zero bits up to the next byte boundary."""
        if self._n:
            self.bits(0, 8 - self._n)

    def getvalue(self) -> bytes:
        self.align()
        return bytes(self._out)


class LsbBitWriter:
    """Appends bits least significant first (the order WebP's lossless format reads them)."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0
        self._n = 0

    def bits(self, value: int, count: int) -> None:
        """Write the low ``count`` bits of ``value``, its lowest bit first."""
        self._acc |= (value & ((1 << count) - 1)) << self._n
        self._n += count
        while self._n >= 8:
            self._out.append(self._acc & 0xFF)
            self._acc >>= 8
            self._n -= 8

    @property
    def bit_length(self) -> int:
        return len(self._out) * 8 + self._n

    def getvalue(self) -> bytes:
        tail = bytes([self._acc]) if self._n else b""
        return bytes(self._out) + tail
