"""pytest fixtures for testing code that uses gptunnel-async, against the emulator (no key).

Installed with the package and loaded by pytest on its own (entry point ``pytest11``). Tests run
on anyio's pytest plugin (mark them ``@pytest.mark.anyio``), on asyncio or trio::

    @pytest.mark.anyio
    async def test_my_handler(gptunnel_client, gptunnel_counters):
        reply = await my_handler(gptunnel_client, "a fox")
        assert gptunnel_counters.creates_by_prompt["a fox"] == 1

Fixtures: ``gptunnel_emulator`` (the :class:`Emulator`, served while the test runs),
``gptunnel_server`` (its loopback ``.url``), ``gptunnel_client`` (an ``AsyncGPTunnel`` bound to
it, polling at its pace), ``gptunnel_faults`` and ``gptunnel_counters``. The emulator is
configured per test by the ``gptunnel`` marker::

    @pytest.mark.gptunnel(task_seconds=30, failure_rate=1.0)

Marker options: ``task_seconds`` (every task takes this many emulator seconds), ``durations``
(``{model or family: seconds or DurationDist}``), any fault knob of :class:`Faults` by name
(``failure_rate`` is ``task_failure_rate``), and any :class:`EmulatorConfig` field
(``time_scale`` defaults to 1000 here: a minute of emulator time lasts 60 ms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel
    from ._app import Emulator
    from ._counters import Counters
    from ._faults import Faults
    from ._server import EmulatorServer

MARKER = "gptunnel"
#: Emulator seconds per real second in tests: a 60 s video lasts 60 ms.
TEST_TIME_SCALE = 1000.0
_ALIASES = {"failure_rate": "task_failure_rate"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): configure the gptunnel emulator of this test (task_seconds=, "
        "durations=, fault knobs such as failure_rate= or error_rate=, EmulatorConfig fields)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``gptunnel`` markers' options, the closest marker winning."""
    options: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers(MARKER))):
        if mark.args:
            raise TypeError(f"@pytest.mark.{MARKER} takes keyword options only")
        options.update(mark.kwargs)
    return options


@pytest.fixture
def gptunnel_emulator(request: pytest.FixtureRequest) -> Emulator:
    """A fresh emulator, configured by the test's ``gptunnel`` marker (see the module doc)."""
    from ..catalog import MODELS
    from ._app import Emulator
    from ._config import FAMILY_DURATIONS, DurationDist, EmulatorConfig

    options = _options(request)
    fields = {f.name for f in dataclasses.fields(EmulatorConfig)}
    config_kwargs = {k: options.pop(k) for k in list(options) if k in fields and k != "durations"}
    config_kwargs.setdefault("time_scale", TEST_TIME_SCALE)
    config_kwargs.setdefault("seed", 0)
    config = EmulatorConfig(**config_kwargs)
    seconds = options.pop("task_seconds", None)
    if seconds is not None:
        for key in (*MODELS, *FAMILY_DURATIONS):
            config.durations[key] = DurationDist.fixed(float(seconds))
    for key, value in dict(options.pop("durations", {})).items():
        fixed = isinstance(value, (int, float))
        config.durations[key] = DurationDist.fixed(float(value)) if fixed else value
    emulator = Emulator(config)
    for name, value in options.items():
        knob = _ALIASES.get(name, name)
        if knob.startswith("_") or not hasattr(emulator.faults, knob):
            raise TypeError(f"@pytest.mark.{MARKER}: unknown option {name!r}")
        setattr(emulator.faults, knob, value)
    return emulator


@pytest.fixture
async def gptunnel_server(
    gptunnel_emulator: Emulator, anyio_backend: str
) -> AsyncIterator[EmulatorServer]:
    """The emulator, served on a 127.0.0.1 port for the test's duration."""
    from ._server import serve

    async with serve(gptunnel_emulator) as server:
        yield server


@pytest.fixture
async def gptunnel_client(gptunnel_server: EmulatorServer) -> AsyncIterator[AsyncGPTunnel]:
    """An ``AsyncGPTunnel`` of the served emulator. Its polls follow the emulator's clock and
    its retries wait milliseconds, so faults cost no real time."""
    from .._client import AsyncGPTunnel
    from .._retry import RetryPolicy
    from ._offline import OFFLINE_API_KEY

    retry = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.1, retry_after_cap=1.0)
    async with AsyncGPTunnel(
        OFFLINE_API_KEY, base_url=gptunnel_server.url, retry_policy=retry, timeout=10.0
    ) as client:
        yield client


@pytest.fixture
def gptunnel_faults(gptunnel_emulator: Emulator) -> Faults:
    """The emulator's fault knobs (``task_failure_rate``, ``error_rate``, ``script`` ...)."""
    return gptunnel_emulator.faults


@pytest.fixture
def gptunnel_counters(gptunnel_emulator: Emulator) -> Counters:
    """What the emulator saw: ``creates_by_prompt``, ``requests_by_task``, ``max_in_flight`` ..."""
    return gptunnel_emulator.counters
