"""Reading a response body under a size cap, inflating gzip/deflate in bounded pieces.

httpx inflates each network chunk in full before a size check could run: a 2 KB answer can
become gigabytes (``Content-Encoding: gzip, gzip`` over a double-compressed run of zeros). So
the SDK reads the *raw* bytes and inflates them here, never producing more than ``PIECE``
bytes at a time from any layer, and stops at the cap: memory stays near the cap (plus a few
pieces) whatever the server sends. The API path and downloads both read through this module.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import cast

import httpx

from ._errors import APIResponseValidationError, GPTunnelError
from ._logs import clip

#: The most bytes any decoding layer produces at once.
PIECE = 256 * 1024
#: Stacked encodings beyond this many layers are refused (``gzip, gzip`` is already odd).
MAX_LAYERS = 2
#: What ``inflater`` can decode, for an ``Accept-Encoding`` header.
ACCEPT_ENCODING = "gzip, deflate"

Pieces = Callable[[bytes], Iterator[bytes]]
Sink = Callable[[bytes], Awaitable[None]]


def undecodable(encoding: str) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"response body does not match its Content-Encoding {clip(encoding, 40)!r}"
    )


def _layer(token: str, encoding: str) -> zlib._Decompress:
    if token in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if token == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise APIResponseValidationError(f"unsupported Content-Encoding {clip(encoding, 40)!r}")


def inflater(encoding: str) -> Pieces:
    """A decoder for a ``Content-Encoding`` value: raw bytes in, pieces of <= ``PIECE`` out.

    Stacked encodings are decoded layer by layer (the last one applied is undone first), each
    layer handing the next at most ``PIECE`` bytes, so nothing is ever inflated in full.
    """
    tokens = [t.strip().lower() for t in encoding.split(",")]
    tokens = [t for t in tokens if t not in ("", "identity")]
    if len(tokens) > MAX_LAYERS:
        raise APIResponseValidationError(
            f"refusing {len(tokens)} stacked Content-Encodings ({clip(encoding, 40)!r})"
        )
    decoders = [_layer(t, encoding) for t in reversed(tokens)]

    def through(depth: int, data: bytes) -> Iterator[bytes]:
        if depth == len(decoders):
            if data:
                yield data
            return
        decoder = decoders[depth]
        while data:
            try:
                out = decoder.decompress(data, PIECE)
            except zlib.error:
                raise undecodable(encoding) from None
            data = decoder.unconsumed_tail
            yield from through(depth + 1, out)

    def pieces(data: bytes) -> Iterator[bytes]:
        return through(0, data)

    return pieces


async def read_inflated(
    response: httpx.Response,
    limit: int,
    sink: Sink,
    too_large: Callable[[int | None], GPTunnelError],
) -> int:
    """Feed the decoded body to ``sink``; raise ``too_large(declared)`` past ``limit`` bytes.

    ``too_large`` gets the declared Content-Length when that alone exceeds the limit (nothing
    is read then), else ``None``. Returns the number of decoded bytes.
    """
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared))
    encoding = response.headers.get("content-encoding", "")
    try:
        loaded = response.content  # in-memory responses (mock transports) hold it already
    except httpx.ResponseNotRead:
        pass
    except httpx.DecodingError:
        raise undecodable(encoding) from None
    else:
        if len(loaded) > limit:
            raise too_large(None)
        if loaded:
            await sink(loaded)
        return len(loaded)
    pieces = inflater(encoding)
    size = 0
    # aclosing: a read stopped at the cap closes httpx's generator now, not at GC time.
    raw_stream = cast("AsyncGenerator[bytes, None]", response.aiter_raw())  # it is one
    async with aclosing(raw_stream) as raw_chunks:
        async for raw in raw_chunks:
            for piece in pieces(raw):
                size += len(piece)
                if size > limit:
                    raise too_large(None)
                await sink(piece)
    return size


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole decoded body in memory, refusing more than ``limit`` bytes."""
    body = bytearray()

    async def keep(piece: bytes) -> None:
        body.extend(piece)

    def too_large(declared: int | None) -> GPTunnelError:
        size = f" of {declared} bytes" if declared is not None else ""
        return APIResponseValidationError(f"response body{size} exceeds the {limit}-byte limit")

    await read_inflated(response, limit, keep, too_large)
    return bytes(body)
