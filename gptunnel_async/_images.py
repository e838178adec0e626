"""Images given by the user (a URL, bytes, or a file path) turned into what the API accepts.

The API takes image URLs or ``data:`` URLs, and Midjourney's inpaint takes a bare base64 PNG.
Everything is checked locally, before a billed request is sent: bytes must *be* an image (sniffed
from magic bytes, never trusted from a file name), inputs are size-capped, and a mask must be a
PNG whose header parses.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path
from typing import Union
from urllib.parse import urlsplit

import anyio

from ._errors import InvalidInputError

#: An image as a user may give it: an http(s) or ``data:`` URL, raw bytes, or a file path.
ImageInput = Union[str, bytes, bytearray, memoryview, "os.PathLike[str]"]

#: Largest image the SDK will inline as a ``data:`` URL (the request body carries it, base64).
MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: Largest inpaint mask (a black-and-white PNG is small; anything bigger is a mistake).
MAX_MASK_BYTES = 10 * 1024 * 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEIF_BRANDS = {b"heic": "image/heic", b"heix": "image/heic", b"mif1": "image/heif"}


def sniff_image_mime(data: bytes) -> str | None:
    """The MIME type of image bytes from their magic number, or ``None`` if not an image."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and len(data) >= 26:
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in _HEIF_BRANDS:
            return _HEIF_BRANDS[brand]
    return None


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR; ``InvalidInputError`` if it is not a PNG."""
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidInputError("not a PNG image (the PNG signature is missing)")
    if len(data) < 33:
        raise InvalidInputError("truncated PNG image (no complete IHDR chunk)")
    length, chunk = struct.unpack(">I4s", data[8:16])
    width, height = struct.unpack(">II", data[16:24])
    if chunk != b"IHDR" or length != 13 or width == 0 or height == 0:
        raise InvalidInputError("malformed PNG image (the first chunk is not a valid IHDR)")
    return width, height


def _check_size(name: str, size: int, limit: int) -> None:
    if size == 0:
        raise InvalidInputError(f"{name} is empty")
    if size > limit:
        raise InvalidInputError(f"{name} is {size} bytes; the limit is {limit} bytes")


async def _read_file(name: str, path: Path, limit: int) -> bytes:
    def read() -> bytes:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InvalidInputError(f"{name}: cannot read {str(path)!r}: {exc.strerror}") from None
        _check_size(name, size, limit)  # before reading: never load a huge file
        return path.read_bytes()

    return await anyio.to_thread.run_sync(read)


def _decode_base64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{name} is not valid base64") from None


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):  # e.g. a long base64 string is "a file name too long"
        return False


def _is_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def load_image_bytes(value: ImageInput, *, name: str, limit: int) -> bytes:
    """The bytes of an image given as bytes, a path, or a ``data:`` URL (not an http URL)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str) and value.startswith("data:"):
        header, sep, payload = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidInputError(f"{name}: a data: URL must be base64 (data:<mime>;base64,...)")
        _check_size(name, len(payload) * 3 // 4, limit)
        data = _decode_base64(name, payload)
    elif isinstance(value, (str, os.PathLike)):
        data = await _read_file(name, Path(value), limit)
    else:
        raise InvalidInputError(
            f"{name} must be a URL, bytes or a file path, not {type(value).__name__}"
        )
    _check_size(name, len(data), limit)
    return data


async def image_to_url(
    value: ImageInput, *, name: str = "image", limit: int = MAX_IMAGE_BYTES
) -> str:
    """An http(s) URL as given, or bytes/a path/a ``data:`` URL as a checked ``data:`` URL.

    The MIME type comes from the bytes' magic number, so a mislabelled or non-image file is
    refused here rather than billed and failed by the provider.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidInputError(f"{name} must not be empty")
        if _is_url(text):
            return text
        if "://" in text:
            raise InvalidInputError(f"{name}: only http(s) URLs are accepted, got {text[:40]!r}")
        value = text
    data = await load_image_bytes(value, name=name, limit=limit)
    mime = sniff_image_mime(data)
    if mime is None:
        raise InvalidInputError(
            f"{name} is not an image (expected PNG, JPEG, WebP, GIF, BMP, TIFF, AVIF or HEIC)"
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


async def mask_to_base64(value: ImageInput, *, name: str = "mask") -> str:
    """A mask (PNG bytes, a path, base64 text or a ``data:`` URL) as bare base64 PNG text.

    Only the PNG signature and IHDR are checked: that black means keep and white means change
    is the caller's part (the provider rejects other masks after billing nothing).
    """
    if isinstance(value, str) and not value.startswith("data:") and not _is_file(value):
        if _is_url(value):
            raise InvalidInputError(f"{name} must be a PNG (bytes, path or base64), not a URL")
        _check_size(name, len(value) * 3 // 4, MAX_MASK_BYTES)
        data = _decode_base64(name, value.strip())
    else:
        data = await load_image_bytes(value, name=name, limit=MAX_MASK_BYTES)
    try:
        png_size(data)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None
    return base64.b64encode(data).decode("ascii")


def check_webhook(webhook: object) -> str | None:
    """A webhook must be an absolute https URL (the provider posts results to it)."""
    if webhook is None:
        return None
    if not isinstance(webhook, str):
        raise InvalidInputError(f"webhook must be a string URL, not {type(webhook).__name__}")
    parts = urlsplit(webhook.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInputError(f"webhook must be an absolute https:// URL, got {webhook[:60]!r}")
    return webhook.strip()
