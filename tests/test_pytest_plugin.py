"""The pytest plugin, run as a user would: a test file of their own, in a fresh pytest run.

Each case writes a small test module with ``pytester`` and runs it in a subprocess (the user's
own pytest), on asyncio and trio.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PLUGIN = "gptunnel_async.testing.pytest_plugin"
ROOT = Path(__file__).resolve().parents[1]

BACKENDS = """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

USER_BOT = """
import pytest
from gptunnel_async import AsyncGPTunnel, TaskFailedError


async def handle_draw(client: AsyncGPTunnel, text: str) -> str:
    task = await client.media.generate(model="google-imagen-3", prompt=text)
    path = await task.download("out/")
    return f"here you are: {path.name}"


@pytest.mark.anyio
async def test_the_handler_replies_with_a_file(gptunnel_client, gptunnel_counters):
    reply = await handle_draw(gptunnel_client, "a fox")
    assert reply.endswith(".webp")
    assert gptunnel_counters.creates_by_prompt["a fox"] == 1


@pytest.mark.anyio
@pytest.mark.gptunnel(failure_rate=1.0)
async def test_the_handler_sees_a_failed_task(gptunnel_client):
    with pytest.raises(TaskFailedError):
        await handle_draw(gptunnel_client, "a fox")
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(BACKENDS)
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_subprocess("-p", PLUGIN, "-p", "anyio", *args)


def test_a_users_bot_handler_is_tested_on_both_backends(pytester: pytest.Pytester) -> None:
    result = run(pytester, USER_BOT)
    result.assert_outcomes(passed=4)


def test_the_marker_sets_durations_faults_and_config(pytester: pytest.Pytester) -> None:
    source = """
import pytest
from gptunnel_async.testing import DurationDist


@pytest.mark.anyio
@pytest.mark.gptunnel(task_seconds=7, time_scale=50, error_rate=0.25,
                      durations={"suno": DurationDist(1.0, 2.0)})
async def test_knobs(gptunnel_emulator, gptunnel_faults, gptunnel_server):
    config = gptunnel_emulator.config
    assert config.time_scale == 50
    assert config.duration_dist("google-imagen-3") == DurationDist.fixed(7.0)
    assert config.duration_dist("midjourney/upsample") == DurationDist.fixed(7.0)
    assert config.duration_dist("suno") == DurationDist(1.0, 2.0)
    assert gptunnel_faults.error_rate == 0.25
    assert gptunnel_server.url.startswith("http://127.0.0.1:")


@pytest.mark.anyio
@pytest.mark.gptunnel(no_such_knob=1)
async def test_unknown(gptunnel_emulator):
    pass
"""
    result = run(pytester, source)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*unknown option 'no_such_knob'*"])


def test_faults_and_counters_prove_a_lost_answer_is_not_resent(pytester: pytest.Pytester) -> None:
    source = """
import pytest
from gptunnel_async import GPTunnelError


@pytest.mark.anyio
async def test_lost_answer(gptunnel_client, gptunnel_faults, gptunnel_counters):
    gptunnel_faults.script("POST /v1/media/create", ["drop_after"])
    with pytest.raises(GPTunnelError) as caught:
        await gptunnel_client.media.create(model="google-imagen-3", prompt="a fox")
    assert caught.value.may_have_been_created
    assert gptunnel_counters.creates_by_prompt["a fox"] == 1
"""
    run(pytester, source).assert_outcomes(passed=2)


def test_the_entry_point_names_the_plugin() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is 3.11+")
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as f:
        entry_points = tomllib.load(f)["project"]["entry-points"]["pytest11"]
    assert entry_points == {PLUGIN: PLUGIN}
    assert (ROOT / Path(*PLUGIN.split("."))).with_suffix(".py").is_file()


def test_an_installed_entry_point_and_an_explicit_load_register_it_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``pip install``, pytest loads the plugin by its entry point; a ``-p`` or
    ``pytest_plugins`` naming it too (as this suite's conftest does) must not clash."""
    site = pytester.mkdir("site")
    dist = site / "gptunnel_fake-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gptunnel-fake\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{PLUGIN} = {PLUGIN}\n")
    pytester.makeconftest(BACKENDS + f"\npytest_plugins = [{PLUGIN!r}]\n")
    pytester.makepyfile(test_user=USER_BOT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-p", "anyio")
    result.assert_outcomes(passed=4)
