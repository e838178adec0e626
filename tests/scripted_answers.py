"""Whole scripted answers for ``hostile_server``: any status, headers and body pieces, paced.

A test describes an answer as a value (``Answer``) from a function of the request; ``scripted``
turns that function into a server handler and counts the body bytes it really sent, so a
test can show that a download was cut off early. Also the attack payloads the download tests
share: a body trickled byte by byte, and zeros gzipped several times over.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
from hostile_server import HostileServer, Reply, Request


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | list[bytes] = b""
    #: Seconds to wait before each body piece after the first.
    pause: float = 0.0
    #: Content-Length to declare (default: the body's real length).
    length: int | None = None


class Scripted:
    """A ``hostile_server`` handler that sends ``answer(request)``; ``sent`` counts body bytes."""

    def __init__(self, answer: Callable[[Request], Answer]) -> None:
        self.answer = answer
        self.sent = 0

    async def __call__(self, request: Request, reply: Reply) -> None:
        answer = self.answer(request)
        pieces = [answer.body] if isinstance(answer.body, bytes) else list(answer.body)
        length = answer.length if answer.length is not None else sum(map(len, pieces))
        headers = {k: v for k, v in answer.headers if k.lower() != "content-length"}
        await reply.head(answer.status, {**headers, "content-length": str(length)})
        for i, piece in enumerate(pieces):
            if i and answer.pause:
                await anyio.sleep(answer.pause)
            await reply.write(piece)
            self.sent += len(piece)


def scripted(answer: Callable[[Request], Answer]) -> Scripted:
    return Scripted(answer)


def port_of(server: HostileServer) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def trickle(data: bytes) -> list[bytes]:
    """``data`` one byte per piece (pair with ``Answer(pause=...)``)."""
    return [data[i : i + 1] for i in range(len(data))]


def gzip_layers(size: int, layers: int) -> bytes:
    """``size`` zero bytes compressed ``layers`` times with gzip, built block by block."""
    block = b"\0" * (1024 * 1024)
    first = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing; never holds ``size`` bytes
    parts = [first.compress(block) for _ in range(math.ceil(size / len(block)))]
    data = b"".join(parts) + first.flush()
    for _ in range(layers - 1):
        data = gzip.compress(data, 9)
    return data
