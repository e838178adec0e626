"""Tiny but valid result files, generated in pure Python, and the links that serve them.

The bytes only need to be real enough for a client to check magic numbers, content types and
lengths, and to save them; they are built once (PNG per colour) and cached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import zlib
from functools import lru_cache
from typing import Final

from ._http import Response
from ._state import Task

CONTENT_TYPES: Final = {
    "png": "image/png",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
}
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: A known-valid 1x1 lossless WebP (RIFF/WEBP/VP8L).
WEBP_1X1: Final = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=256)
def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A solid ``size``x``size`` RGB PNG."""
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * size
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * size))
        + _chunk(b"IEND", b"")
    )


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


@lru_cache(maxsize=1)
def mp4() -> bytes:
    """ftyp + moov/mvhd (1 s at timescale 1000) + an empty-ish mdat."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">IIIII", 0, 0, 0, 1000, 1000)
        + struct.pack(">IH", 0x00010000, 0x0100)
        + b"\x00" * 10
        + matrix
        + b"\x00" * 24
        + struct.pack(">I", 2),
    )
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", b"\x00" * 16)


@lru_cache(maxsize=1)
def mp3() -> bytes:
    """Ten silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, 417 bytes each)."""
    frame = b"\xff\xfb\x90\x00" + b"\x00" * 413
    return frame * 10


def colour_of(task_id: str) -> tuple[int, int, int]:
    digest = hashlib.blake2s(task_id.encode(), digest_size=3).digest()
    return digest[0], digest[1], digest[2]


def content(task_id: str, ext: str) -> bytes:
    """The bytes of a result file for a task and extension."""
    if ext == "png":
        return png(colour_of(task_id))
    if ext == "webp":
        return WEBP_1X1
    if ext == "mp4":
        return mp4()
    return mp3()


def link(base_url: str, task: Task, suffix: str = "result", ext: str | None = None) -> str:
    """An expiring link to one of a task's files, served by the emulator under ``/files``."""
    return f"{base_url}/files/{task.id}_{suffix}.{ext or task.ext}?expires={task.expires_unix()}"


def is_png_base64(value: object) -> bool:
    """True for base64 (or a ``data:`` URL) whose bytes start with the PNG signature."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(PNG_SIGNATURE)


def s3_error(status: int, code: str, message: str) -> Response:
    """An S3-style XML error, as a storage bucket answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return Response(status, body, [("content-type", "application/xml")])


def serve_file(task: Task | None, suffix: str, ext: str, now: float) -> Response:
    """Answer ``GET /files/<id>_<suffix>.<ext>``: the bytes, 404 if absent, 403 if expired."""
    missing = s3_error(404, "NoSuchKey", "The specified key does not exist.")
    if task is None or ext not in CONTENT_TYPES:
        return missing
    status = task.status(now)
    if suffix == "preview":
        if status == "idle":
            return missing
    elif status != "done" or not _has_file(task, suffix, ext):
        return missing
    if now >= task.link_expires_at():
        return s3_error(403, "AccessDenied", "Request has expired")
    return Response(200, content(task.id, ext), [("content-type", CONTENT_TYPES[ext])])


def _has_file(task: Task, suffix: str, ext: str) -> bool:
    if task.family == "suno":
        return suffix in ("track1", "track2") and ext == "mp3"
    return suffix == "result" and ext == task.ext
