"""Fixtures for the emulator's own tests: an emulator served on a real loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, EmulatorServer, serve

KEY = "test-key"
Poll = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def emu() -> Emulator:
    """Fast emulator: every task lasts 50 ms of real time (50 s emulator time / 1000)."""
    config = EmulatorConfig(time_scale=1000.0, seed=7)
    for key in ("midjourney", "faceswap", "bgremover", "yandex-art", "suno", "seedream-4"):
        config.durations[key] = DurationDist.fixed(50.0)
    return Emulator(config)


@pytest.fixture
async def server(emu: Emulator, anyio_backend: str) -> AsyncIterator[EmulatorServer]:
    async with serve(emu) as srv:
        yield srv
    assert not emu.internal_errors


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": KEY}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=5.0) as c:
        yield c


@pytest.fixture
def poll(client: httpx.AsyncClient) -> Poll:
    """``await poll(path, param, task_id)`` -> the first answer whose status is final."""

    async def _poll(path: str, param: str, task_id: str, *, limit: float = 5.0) -> dict[str, Any]:
        with anyio.fail_after(limit):
            while True:
                r = await client.get(path, params={param: task_id})
                data: dict[str, Any] = r.json()
                if data.get("status") in ("done", "failed"):
                    return data
                await anyio.sleep(0.01)

    return _poll
