"""``--offline`` and ``gptunnel emulator``: the built-in emulator instead of the real API.

Offline runs serve the emulator on a loopback port inside the command's own event loop, so
the whole SDK path (HTTP, retries, polling, downloads) is exercised with no key and no network.
The emulator runs faster than real time; the poll schedule is told so (``clock_scale``), or it
would poll as if every task took real minutes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from .. import AdaptivePolicy, AsyncGPTunnel
from ..testing import Emulator, EmulatorConfig, serve

#: Offline tasks run this many times faster than on the real service.
OFFLINE_TIME_SCALE = 20.0
#: Any key works against the emulator; this one is never sent anywhere else.
OFFLINE_API_KEY = "offline-emulator-key"


@asynccontextmanager
async def offline_client(time_scale: float = OFFLINE_TIME_SCALE) -> AsyncIterator[AsyncGPTunnel]:
    """A client wired to a fresh emulator served on 127.0.0.1 for the block's duration."""
    emulator = Emulator(EmulatorConfig(time_scale=time_scale))
    async with (
        serve(emulator) as server,
        AsyncGPTunnel(
            OFFLINE_API_KEY,
            base_url=server.url,
            poll_policy=AdaptivePolicy(clock_scale=time_scale),
        ) as client,
    ):
        yield client


async def serve_until_cancelled(
    *,
    host: str,
    port: int,
    time_scale: float,
    api_keys: set[str] | None,
    on_ready: Callable[[str], None],
) -> None:
    """Serve an emulator until cancelled (Ctrl-C); ``on_ready`` gets the base URL."""
    emulator = Emulator(EmulatorConfig(time_scale=time_scale, api_keys=api_keys))
    async with serve(emulator, host, port) as server:
        on_ready(server.url)
        await anyio.sleep_forever()
