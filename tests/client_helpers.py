"""Shared setup for the client tests: an emulator on a real loopback socket and a fast client."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel, RetryPolicy
from gptunnel_async.catalog import MODELS
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, EmulatorServer, serve

KEY = "test-key"
#: Emulator seconds per real second: a 20 s task lasts 20 ms.
TIME_SCALE = 1000.0
#: Every task of every model takes this many emulator seconds (20 ms real).
TASK_SECONDS = 20.0
CREATE_ROUTE = "POST /v1/media/create"
RESULT_ROUTE = "GET /v1/media/result"
CREATE_MODELS = sorted(m.id for m in MODELS.values() if m.endpoint == "create")
UNKNOWN_TASK_ID = "0123456789abcdef01234567"


def fast_retry(max_retries: int = 2) -> RetryPolicy:
    """Retries with millisecond backoff (a server's Retry-After still wins)."""
    return RetryPolicy(max_retries=max_retries, initial_delay=0.005, max_delay=0.02)


def make_emulator(**config: Any) -> Emulator:
    """A seeded emulator where every task finishes after ``TASK_SECONDS`` emulator seconds."""
    config.setdefault("time_scale", TIME_SCALE)
    config.setdefault("seed", 11)
    cfg = EmulatorConfig(**config)
    for model in MODELS:
        cfg.durations.setdefault(model, DurationDist.fixed(TASK_SECONDS))
    return Emulator(cfg)


def make_client(server: EmulatorServer | str, key: str = KEY, **kwargs: Any) -> AsyncGPTunnel:
    """A client of ``server`` whose waits and retries run at the emulator's pace."""
    url = server if isinstance(server, str) else server.url
    kwargs.setdefault("poll_policy", AdaptivePolicy(clock_scale=TIME_SCALE))
    kwargs.setdefault("retry_policy", fast_retry())
    kwargs.setdefault("timeout", 5.0)
    return AsyncGPTunnel(key, base_url=url, **kwargs)


@asynccontextmanager
async def emulated(
    emu: Emulator | None = None, *, key: str = KEY, **client_kwargs: Any
) -> AsyncIterator[tuple[Emulator, AsyncGPTunnel]]:
    """``async with emulated() as (emu, client):`` — served over 127.0.0.1, closed afterwards."""
    emu = emu if emu is not None else make_emulator()
    async with serve(emu) as server, make_client(server, key, **client_kwargs) as client:
        yield emu, client


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
