"""A hostile HTTP/1.1 server on loopback whose every answer a test writes by hand.

The emulator is faithful; an attacker is not. This server lets a test answer a request with
another task's record, trickle a body one byte at a time, or hold a connection open — over a
real socket, so the client's real transport (timeouts, pool, cancellation) is what gets tested.
It runs inside the test's own event loop, on asyncio and trio alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import anyio.from_thread

_MAX_HEAD = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Reply:
    """How a handler answers: ``send`` a whole response, or ``head`` then ``write`` pieces."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def head(self, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
        await self._stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def write(self, data: bytes) -> None:
        await self._stream.send(data)

    async def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        await self.head(status, {"content-type": content_type, "content-length": str(len(body))})
        await self.write(body)

    async def json(self, doc: Any, status: int = 200) -> None:
        await self.send(status, json.dumps(doc).encode())

    async def trickle(self, body: bytes, every: float) -> None:
        """``body`` one byte at a time, ``every`` seconds apart (no read timeout ever fires)."""
        await self.head(200, {"content-type": "application/json", "content-length": str(len(body))})
        for i in range(len(body)):
            await self.write(body[i : i + 1])
            await anyio.sleep(every)


Handler = Callable[[Request, Reply], Awaitable[None]]


@dataclass
class HostileServer:
    url: str
    requests: list[Request] = field(default_factory=list)

    _waiters: list[tuple[int, anyio.Event]] = field(default_factory=list)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    def record(self, request: Request) -> None:
        self.requests.append(request)
        for count, event in self._waiters:
            if len(self.requests) >= count:
                event.set()

    async def wait_for_requests(self, count: int) -> None:
        """Until ``count`` requests have arrived in all."""
        event = anyio.Event()
        self._waiters.append((count, event))
        if len(self.requests) >= count:
            event.set()
        await event.wait()


async def _read_request(stream: anyio.abc.ByteStream, buffer: bytearray) -> Request | None:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            return None
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return None
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    first, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = first.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < size:
        try:
            body += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return None
    buffer[:] = body[size:]
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return Request(method, parts.path, query, headers, bytes(body[:size]))


@asynccontextmanager
async def hostile_server(handler: Handler) -> AsyncIterator[HostileServer]:
    """Serve ``handler`` on ``127.0.0.1`` (a free port) for the duration of the block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = HostileServer(f"http://127.0.0.1:{port}")

    async def connection(stream: anyio.abc.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            while True:
                request = await _read_request(stream, buffer)
                if request is None:
                    return
                server.record(request)
                try:
                    await handler(request, Reply(stream))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return  # the client went away mid-answer: that is what some tests want

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, connection)
        yield server
        tg.cancel_scope.cancel()


@contextmanager
def hostile_server_in_thread(handler: Handler) -> Iterator[HostileServer]:
    """``hostile_server`` on an event loop of its own, for a client in another process."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(hostile_server(handler)) as server,
    ):
        yield server
