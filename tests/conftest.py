"""Shared test setup: every async test runs on asyncio and on trio.

Set ``GPTUNNEL_TEST_BACKENDS=asyncio`` (or ``trio``) to run one backend only; nox does that.
"""

from __future__ import annotations

import os

import pytest

_BACKENDS = [
    b.strip()
    for b in os.environ.get("GPTUNNEL_TEST_BACKENDS", "asyncio,trio").split(",")
    if b.strip()
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
