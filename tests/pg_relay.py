"""A TCP relay to the tests' PostgreSQL server that a test can cut and restore: the server or
the network gone for one client only, while the others (and the test) keep theirs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc


class PgRelay:
    """A TCP relay to the PostgreSQL server that a test can cut (every connection dropped, new
    ones closed at once, as when the server or the network goes away) and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.cut = False
        self._scopes: list[anyio.CancelScope] = []

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if self.cut:
                return
            with anyio.CancelScope() as scope:
                self._scopes.append(scope)
                async with await anyio.connect_tcp(*self.target) as server:

                    async def pump(a: anyio.abc.SocketStream, b: anyio.abc.SocketStream) -> None:
                        try:
                            async for data in a:
                                await b.send(data)
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                            pass
                        scope.cancel()

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(pump, client, server)
                        tg.start_soon(pump, server, client)

    def drop_all(self) -> None:
        self.cut = True
        for scope in self._scopes:
            scope.cancel()
        self._scopes.clear()


@asynccontextmanager
async def relayed(pg_dsn: str) -> AsyncIterator[tuple[PgRelay, str]]:
    """A relay to ``pg_dsn``'s server on a loopback port, and the DSN that goes through it."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(pg_dsn)
    relay = PgRelay(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, relay._relay)
        yield relay, make_conninfo(**{**params, "host": "127.0.0.1", "port": str(port)})
        tg.cancel_scope.cancel()
