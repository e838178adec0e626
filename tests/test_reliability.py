"""The quick parts of the reliability campaign (issue #6); the full runs are in ``reliability/``.

- a small fault campaign (200 tasks, every fault mixed, over a real loopback socket), on both
  backends: nothing yielded twice or lost, nothing created twice, no request inside a
  Retry-After window, every outcome reconciled with the emulator, files whole;
- kill anywhere: ``gptunnel batch`` SIGKILLed at random moments and rerun, under 429 bursts,
  5xx, drops and slow downloads (subprocesses: once, no backend); 2-4 runs started together on
  one folder; the offline quick start stopped with Ctrl-C and rerun;
- a small soak (1,000 tasks through one poller): fds and connections steady, back after close.

See ``docs/reliability.md`` for the full figures and the commands that produced them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import AsyncGPTunnel  # noqa: E402
from gptunnel_async.poller import generate_many  # noqa: E402
from gptunnel_async.testing import Emulator, EmulatorConfig, EmulatorTransport  # noqa: E402
from reliability import (  # noqa: E402
    concurrency_campaign,
    fault_campaign,
    kill_campaign,
    offline_resume,
    soak,
)
from reliability._emulator import EmulatorProcess  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.anyio
async def test_fault_campaign_quick(tmp_path: Path) -> None:
    s = fault_campaign.quick_settings()
    with anyio.fail_after(90):
        report, _, figures = await fault_campaign.campaign(s, tmp_path)
    checks = figures["checks"]
    print(report)  # (shown with -s, or when another check fails)
    failed = [name for name, passed in checks.items() if not passed]
    assert not failed, report
    # the faults really happened, and each outcome class the campaign claims to cover occurs
    counters = figures["counters"]
    assert counters["drops"] > 0
    assert counters["sent_429"] > 0
    assert figures["outcomes"].get(fault_campaign.OK_FILE, 0) > 100
    assert figures["outcomes"].get("task failed", 0) > 0
    assert figures["outcomes"].get("create outcome unknown", 0) > 0


def test_kill_anywhere_quick(tmp_path: Path) -> None:
    """SIGKILL `gptunnel batch` at random moments, rerun it: see reliability/kill_campaign.py."""
    s = kill_campaign.quick_settings()
    report, ok, figures = kill_campaign.campaign(s, tmp_path)
    assert ok, report
    assert figures["kills"] >= s.kills


def test_runs_started_together_on_one_folder_quick(tmp_path: Path) -> None:
    s = concurrency_campaign.quick_settings()
    s.trials, s.prompts = 3, 8
    report, ok, figures = concurrency_campaign.campaign(s, tmp_path)
    assert ok, report
    assert sum(t["refused"] for t in figures["trials"]) >= 3  # the lock was really contended


def test_offline_quick_start_stopped_and_rerun_quick(tmp_path: Path) -> None:
    report, ok, _ = offline_resume.campaign(offline_resume.quick_settings(), tmp_path)
    assert ok, report


@pytest.mark.anyio
async def test_soak_quick(tmp_path: Path) -> None:
    s = soak.Settings(tasks=1000, deadline=60.0)
    with EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu:
        with anyio.fail_after(90):
            result = await soak.soak(s, emu.url, tmp_path)
    report, _ok, figures = soak.analyse(s, result)
    checks = figures["checks"]
    for name in ("every task yielded", "all ok", "fds steady", "connections bounded"):
        assert checks[name], report
    assert checks["fds back after close"], report


@pytest.mark.anyio
async def test_a_slow_create_completes_and_one_cancelled_mid_flight_is_journaled(
    tmp_path: Path,
) -> None:
    """A create that has left is never abandoned: slow is fine, and a cancellation waits for
    its answer so the task id reaches the journal (the resumed run polls it, creates nothing)."""
    emu = Emulator(EmulatorConfig(time_scale=1000, seed=1))
    emu.faults.script("POST /v1/media/create", [("delay", 1.0), ("delay", 1.0)])
    requests = [{"model": "flux-dev", "prompt": "slow create"}]
    journal = tmp_path / "journal.sqlite"
    async with AsyncGPTunnel(
        "k", base_url="http://127.0.0.1:9", transport=EmulatorTransport(emu)
    ) as client:
        with anyio.fail_after(30):
            async with generate_many(client, requests) as run:
                assert [r.ok async for r in run] == [True]
        second = [{"model": "flux-dev", "prompt": "cancelled mid-create"}]
        with anyio.move_on_after(0.2):  # cancel while the create is in flight
            async with generate_many(client, second, journal=journal) as run:
                async for _ in run:
                    pass
        with anyio.fail_after(30):
            async with generate_many(client, second, journal=journal) as run:
                resumed = [r async for r in run]
    assert len(resumed) == 1 and resumed[0].ok, resumed
    assert emu.counters.creates_by_prompt["cancelled mid-create"] == 1
