"""A client on loopback polls at the emulator's announced pace; elsewhere the header is ignored.

The emulator sends its time scale with every answer. A plain client (no ``poll_policy``) of an
API on loopback adopts it, so ``python -m gptunnel_async.testing --time-scale 20`` plus
``GPTUNNEL_BASE_URL`` gives waits as quick as the compressed tasks.
"""

from __future__ import annotations

import anyio
import pytest

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel
from gptunnel_async._polling.policy import TaskHint, follow_emulator_clock
from gptunnel_async.testing import (
    DurationDist,
    Emulator,
    EmulatorConfig,
    EmulatorTransport,
    serve,
)

pytestmark = pytest.mark.anyio
VIDEO = "glabs-veo-3-1-fast"
SCALE = 500.0


def video_emulator() -> Emulator:
    config = EmulatorConfig(time_scale=SCALE, seed=3)
    config.durations[VIDEO] = DurationDist.fixed(60.0)  # a minute of emulator time
    return Emulator(config)


async def test_a_plain_client_on_loopback_polls_at_the_emulator_pace() -> None:
    emu = video_emulator()
    async with serve(emu) as server, AsyncGPTunnel("k", base_url=server.url) as client:
        policy = client.poll_policy
        assert isinstance(policy, AdaptivePolicy) and policy.clock_scale == 1.0
        with anyio.fail_after(30):  # at real pace the first poll alone would come much later
            done = await client.media.generate(model=VIDEO, prompt="waves")
        assert policy.clock_scale == SCALE
        assert done.is_done
        assert emu.counters.requests_by_task[done.id] <= 10


async def test_an_explicit_policy_is_left_alone() -> None:
    mine = AdaptivePolicy(clock_scale=2.0)
    async with (
        serve(video_emulator()) as server,
        AsyncGPTunnel("k", base_url=server.url, poll_policy=mine) as client,
    ):
        await client.balance()
    assert mine.clock_scale == 2.0


async def test_a_remote_api_cannot_change_the_pace() -> None:
    """Only loopback is trusted: a remote server could otherwise make the client hammer it."""
    transport = EmulatorTransport(video_emulator())
    async with AsyncGPTunnel(
        "k", base_url="https://api.example.com", transport=transport
    ) as client:
        await client.balance()
        policy = client.poll_policy
        assert isinstance(policy, AdaptivePolicy) and policy.clock_scale == 1.0


@pytest.mark.parametrize("announced", ["abc", "0", "-5", "nan", "inf", ""])
def test_a_malformed_announcement_is_ignored(announced: str) -> None:
    policy = AdaptivePolicy()
    follow_emulator_clock(policy, announced)
    assert policy.clock_scale == 1.0


def test_a_new_clock_rescales_what_the_policy_had_learnt() -> None:
    policy = AdaptivePolicy(jitter=0.0)
    before = policy.first_delay(VIDEO, TaskHint())
    follow_emulator_clock(policy, "20")
    assert policy.first_delay(VIDEO, TaskHint()) == pytest.approx(before / 20, rel=0.05)
