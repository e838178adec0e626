"""A client wired to an emulator on a loopback port: the one-liner for offline runs and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._client import AsyncGPTunnel
from .._polling.policy import AdaptivePolicy
from ._app import Emulator
from ._config import EmulatorConfig
from ._server import serve

#: Any key works against the emulator; this one is never sent anywhere else.
OFFLINE_API_KEY = "offline-emulator-key"
OFFLINE_TIME_SCALE = 20.0


@asynccontextmanager
async def offline_client(
    emulator: Emulator | None = None, *, time_scale: float = OFFLINE_TIME_SCALE
) -> AsyncIterator[AsyncGPTunnel]:
    """Serve ``emulator`` (or a fresh one) on 127.0.0.1 and yield a client pointed at it.

    The client's poll schedule runs at the emulator's speed (``time_scale``, taken from the
    emulator when one is given), so waits are as quick as the compressed tasks.
    """
    if emulator is None:
        emulator = Emulator(EmulatorConfig(time_scale=time_scale))
    scale = emulator.config.time_scale
    async with (
        serve(emulator) as server,
        AsyncGPTunnel(
            OFFLINE_API_KEY, base_url=server.url, poll_policy=AdaptivePolicy(clock_scale=scale)
        ) as client,
    ):
        yield client
