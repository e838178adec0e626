"""A client wired to an emulator on a loopback port: the one-liner for offline runs and tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from .._client import AsyncGPTunnel
from .._polling.policy import AdaptivePolicy
from ._app import Emulator
from ._config import EmulatorConfig
from ._persist import TaskFile
from ._server import serve

#: Any key works against the emulator; this one is never sent anywhere else.
OFFLINE_API_KEY = "offline-emulator-key"
OFFLINE_TIME_SCALE = 20.0


@asynccontextmanager
async def offline_client(
    emulator: Emulator | None = None,
    *,
    time_scale: float = OFFLINE_TIME_SCALE,
    state_file: str | os.PathLike[str] | None = None,
) -> AsyncIterator[AsyncGPTunnel]:
    """Serve ``emulator`` (or a fresh one) on 127.0.0.1 and yield a client pointed at it.

    The client's poll schedule runs at the emulator's speed (``time_scale``, taken from the
    emulator when one is given), so waits are as quick as the compressed tasks. With a
    ``state_file`` the emulator's tasks outlive this process: those an earlier run saved there
    are served again, and every new one is added (``TaskFile``), so an offline batch resumes.
    """
    if emulator is None:
        emulator = Emulator(EmulatorConfig(time_scale=time_scale))
    scale = emulator.config.time_scale
    tasks = TaskFile(state_file) if state_file is not None else None
    if tasks is not None:
        await anyio.to_thread.run_sync(tasks.attach, emulator.store)
    try:
        async with (
            serve(emulator) as server,
            AsyncGPTunnel(
                OFFLINE_API_KEY, base_url=server.url, poll_policy=AdaptivePolicy(clock_scale=scale)
            ) as client,
        ):
            yield client
    finally:
        if tasks is not None:
            tasks.close()
