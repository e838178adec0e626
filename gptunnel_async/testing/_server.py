"""A small HTTP/1.1 server (h11 over anyio) that runs an :class:`Emulator` on loopback only.

It runs inside whichever event loop is current (asyncio or trio), keeps connections alive,
serves many connections at once, and can drop a connection without answering.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import anyio.from_thread
import h11

from ._app import Emulator
from ._http import Request, Response

_MAX_BODY = 64 * 1024 * 1024
_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def check_loopback(host: str) -> str:
    """Return the address to bind, refusing anything but loopback (``localhost`` -> 127.0.0.1)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"the emulator only listens on loopback, not {host!r}")


@dataclass(frozen=True)
class EmulatorServer:
    """A running server: where it listens and what it serves."""

    emulator: Emulator
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class _Incoming:
    """What has arrived of the request being read (so one cut off midway can be reported)."""

    def __init__(self, default_host: str, connection: int) -> None:
        self.default_host = default_host
        self.connection = connection
        self.received = 0.0  # monotonic time of its first byte; 0 while none has arrived
        self.method = b""
        self.target = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    def request(self) -> Request:
        path, _, query = self.target.decode("latin-1").partition("?")
        return Request(
            method=self.method.decode("ascii", "replace"),
            path=path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            headers=self.headers,
            body=bytes(self.body),
            base_url=f"http://{self.headers.get('host') or self.default_host}",
            received=self.received,
            connection=self.connection,
        )


async def _read_request(
    conn: h11.Connection, stream: anyio.abc.ByteStream, incoming: _Incoming
) -> Request | None:
    """The next whole request on ``conn``; None when the connection ends (``incoming`` then
    holds whatever had arrived of a request cut off midway)."""
    if conn.trailing_data[0]:  # already here, behind the previous request
        incoming.received = time.monotonic()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(65536)
            except _CLOSED:
                data = b""
            if data and not incoming.received:
                incoming.received = time.monotonic()
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            incoming.method, incoming.target = event.method, event.target
            incoming.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            incoming.body += event.data
            if len(incoming.body) > _MAX_BODY:
                return None
        elif isinstance(event, h11.EndOfMessage):
            return incoming.request()
        else:  # ConnectionClosed or PAUSED
            return None


def _encode(conn: h11.Connection, response: Response, method: str) -> bytes:
    headers = list(response.headers)
    if method != "HEAD" or not any(k == "content-length" for k, _ in headers):
        headers = [(k, v) for k, v in headers if k != "content-length"]
        headers.append(("content-length", str(len(response.body))))
    headers.append(("server", "gptunnel-emulator"))
    out = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body:
        out += conn.send(h11.Data(data=response.body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")


async def _serve_connection(
    emulator: Emulator, stream: anyio.abc.ByteStream, default_host: str, connection: int
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1024 * 1024)
    async with stream:
        incoming = _Incoming(default_host, connection)
        try:
            while True:
                try:
                    request = await _read_request(conn, stream, incoming)
                except h11.RemoteProtocolError:
                    return
                if request is None:
                    return
                incoming = _Incoming(default_host, connection)  # for the next one
                try:
                    answer = await emulator.handle(request)
                except Exception as exc:  # a bug must not take the whole server down
                    emulator.internal_errors.append(exc)
                    return
                if not isinstance(answer, Response):
                    return  # drop: close without a response
                try:
                    await stream.send(_encode(conn, answer, request.method))
                except _CLOSED:
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        finally:
            # Told before the socket closes, so "no connection left" means "nothing untold".
            if incoming.received:
                emulator.request_cut_off(incoming.request())


@asynccontextmanager
async def serve(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[EmulatorServer]:
    """Serve ``emulator`` on a loopback socket for the duration of the ``async with`` block."""
    bind = check_loopback(host)
    listener = await anyio.create_tcp_listener(local_host=bind, local_port=port)
    real_port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    server = EmulatorServer(emulator, bind, real_port)
    default_host = server.url.removeprefix("http://")

    serials = itertools.count(1)

    async def on_connection(stream: anyio.abc.SocketStream) -> None:
        await _serve_connection(emulator, stream, default_host, next(serials))

    async def run_until(stop: anyio.Event) -> None:
        # A server does not die with its client: a cancellation of the block (Ctrl-C in an
        # --offline command, whose emulator shares its process) reaches the block's body, not
        # the requests being answered, which finish; the server stops when the block ends.
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as inner:
                inner.start_soon(listener.serve, on_connection)
                await stop.wait()
                inner.cancel_scope.cancel()

    stop = anyio.Event()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(run_until, stop)
        try:
            yield server
        finally:
            stop.set()


@contextmanager
def run_in_thread(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0, backend: str = "asyncio"
) -> Iterator[str]:
    """Serve from a background thread with its own event loop; yields the base URL."""
    check_loopback(host)
    with anyio.from_thread.start_blocking_portal(backend) as portal:
        cm = portal.wrap_async_context_manager(serve(emulator, host, port))
        with cm as server:
            yield server.url
