"""``--offline`` and ``gptunnel emulator``: the built-in emulator instead of the real API.

Offline runs serve the emulator on a loopback port inside the command's own event loop, so
the whole SDK path (HTTP, retries, polling, downloads) is exercised with no key and no network.
The emulator runs faster than real time; the poll schedule is told so (``clock_scale``), or it
would poll as if every task took real minutes.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ..testing import Emulator, EmulatorConfig, serve


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
