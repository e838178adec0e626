"""Shared test setup: every async test runs on asyncio and on trio.

Set ``GPTUNNEL_TEST_BACKENDS=asyncio`` (or ``trio``) to run one backend only; nox does that.
"""

from __future__ import annotations

import os

import pytest

# pytester runs the pytest plugin's own tests; the plugin itself is loaded here as well as by
# its entry point, so the suite runs from a checkout that was never installed.
pytest_plugins = ["pytester", "gptunnel_async.testing.pytest_plugin"]

_BACKENDS = [
    b.strip()
    for b in os.environ.get("GPTUNNEL_TEST_BACKENDS", "asyncio,trio").split(",")
    if b.strip()
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
