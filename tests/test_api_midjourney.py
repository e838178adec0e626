"""``client.midjourney`` against the emulator over a socket: the chain, validation, errors."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from client_helpers import UNKNOWN_TASK_ID, emulated, make_emulator

from gptunnel_async import (
    InsufficientBalanceError,
    InvalidInputError,
    InvalidRequestError,
    MidjourneyTask,
    NotFoundError,
    TaskFailedError,
    TaskState,
)
from gptunnel_async.testing import DurationDist, Emulator
from gptunnel_async.testing._files import png

MJ_SECONDS = 60.0  # emulator seconds = 60 ms real
BLACK_MASK = png((0, 0, 0))
DOC_TASK: dict[str, Any] = {
    "id": "65589df803761c00010775ae",
    "parentId": None,
    "object": "task",
    "type": "imagine",
    "actions": [],
    "percent": 0,
    "status": "idle",
    "result": None,
    "error": None,
    "usage": {
        "prompt_tokens": 0,
        "completion_tokens": 1,
        "total_tokens": 1,
        "prompt_cost": 0,
        "completion_cost": 18,
        "total_cost": 18,
    },
}


def mj_emulator(**config: Any) -> Emulator:
    durations = {k: DurationDist.fixed(MJ_SECONDS) for k in ("midjourney", "faceswap", "bgremover")}
    return make_emulator(durations=durations, **config)


def route_count(emu: Emulator, endpoint: str) -> int:
    return emu.counters.requests_by_route[f"POST /v1/midjourney/{endpoint}"]


# -- parsing -----------------------------------------------------------------------------------


def test_doc_example_parses() -> None:
    task = MidjourneyTask.model_validate(DOC_TASK)
    assert task.parent_id is None
    assert task.type == "imagine"
    assert task.percent == 0 and isinstance(task.percent, float)
    assert task.state is TaskState.RUNNING
    assert task.usage is not None and task.usage.total_cost == 18
    assert task.cost == 18
    assert task.url is None
    assert task.model == "midjourney/imagine"
    assert task.poll_kind == "midjourney"


def test_actions_with_the_docs_typos_are_actionable() -> None:
    grid = MidjourneyTask.model_validate(
        {
            **DOC_TASK,
            "status": "done",
            "percent": "100",
            "result": "https://x/y.png",
            "actions": [
                *(f"upsamle_{i}" for i in range(1, 5)),
                "reroll",
                *(f"variation_{i}" for i in range(1, 5)),
            ],
        }
    )
    assert grid.can_upsample == [1, 2, 3, 4]
    assert grid.can_vary == [1, 2, 3, 4]
    assert grid.can_reroll and not grid.can_inpaint
    assert grid.allows("upsample") and grid.allows("upsamle_2") and grid.allows("upsample_2")
    assert grid.allows("variation") and not grid.allows("pan")
    assert grid.variation_modes == []
    assert grid.url == "https://x/y.png"
    up = MidjourneyTask.model_validate(
        {
            **DOC_TASK,
            "type": "upsample",
            "parentId": DOC_TASK["id"],
            "status": "done",
            "actions": [
                "high_variation",
                "low_variation",
                "outpaint_1.5x",
                "outpaint_2x",
                "pan_left",
                "pan_up",
                "upscale_2x",
                "upscale_4x",
                "inpaint",
            ],
        }
    )
    assert up.parent_id == DOC_TASK["id"]
    assert up.variation_modes == ["high", "low"]
    assert up.allows("variation") and up.allows("high_variation")
    assert up.can_outpaint == [1.5, 2.0]
    assert up.can_upscale == [2.0, 4.0]
    assert up.can_pan == ["left", "up"]
    assert up.can_inpaint and up.is_upsample and not up.is_grid
    assert up.can_upsample == []


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 0.0), ("45", 45.0), ("junk", 0.0), (150, 100.0), (37.5, 37.5)]
)
def test_percent_is_always_a_number(raw: Any, expected: float) -> None:
    task = MidjourneyTask.model_validate({**DOC_TASK, "percent": raw, "status": "weird-new"})
    assert task.percent == expected
    assert task.state is TaskState.RUNNING  # unknown status: still running


# -- the full chain ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_full_chain_imagine_upsample_variation_inpaint() -> None:
    async with emulated(mj_emulator()) as (emu, client):
        mj = client.midjourney
        grid = await mj.imagine("an old IBM PC on a light background")
        assert grid.type == "imagine" and grid.parent_id is None and grid.actions == []
        assert grid.cost == 18
        grid = await mj.wait(grid, timeout=10)
        assert grid.is_done and grid.url and grid.percent == 100
        assert grid.can_upsample == [1, 2, 3, 4]

        up = await mj.wait(await mj.upsample(grid, 2), timeout=10)
        assert up.type == "upsample" and up.parent_id == grid.id
        assert up.variation_modes == ["high", "low"] and up.can_inpaint

        vary = await mj.variation(up, mode="high")
        assert vary.type == "variation" and vary.parent_id == up.id
        vary = await mj.wait(vary, timeout=10)
        assert vary.is_done and vary.can_upsample == [1, 2, 3, 4]

        painted = await mj.wait(await mj.inpaint(up, BLACK_MASK, prompt="a cat"), timeout=10)
        assert painted.type == "inpaint" and painted.parent_id == up.id and painted.url
    assert emu.org_balance == pytest.approx(1_000_000 - 18 * 3)  # upsample is free


@pytest.mark.anyio
async def test_generate_helpers_and_bare_ids() -> None:
    async with emulated(mj_emulator()) as (_, client):
        mj = client.midjourney
        grid = await mj.generate("a lighthouse", timeout=10)
        up = await mj.generate_upsample(grid.id, 4, timeout=10)
        assert up.parent_id == grid.id and up.is_done
        low = await mj.generate_variation(up.id, mode="low", timeout=10)
        assert low.is_done and low.parent_id == up.id
        again = await mj.result(low.id)
        assert again.id == low.id and again.is_done


@pytest.mark.anyio
async def test_outpaint_pan_upscale_reroll() -> None:
    async with emulated(mj_emulator()) as (_, client):
        mj = client.midjourney
        grid = await mj.generate("a harbour", timeout=10)
        up = await mj.generate_upsample(grid, 1, timeout=10)
        out = await mj.wait(await mj.outpaint(up, 1.5), timeout=10)
        pan = await mj.wait(await mj.pan(up, "left"), timeout=10)
        big = await mj.wait(await mj.upscale(up, 4), timeout=10)
        rer = await mj.wait(await mj.reroll(grid), timeout=10)
        assert [t.type for t in (out, pan, big, rer)] == ["outpaint", "pan", "upscale", "reroll"]
        assert out.can_upsample and pan.can_upsample and rer.can_upsample
        assert big.actions == [] and not big.allows("upscale")  # final
        with pytest.raises(InvalidInputError, match="does not offer"):
            await mj.upscale(big, 2)


@pytest.mark.anyio
async def test_a_stale_snapshot_is_refreshed_before_validation() -> None:
    async with emulated(mj_emulator()) as (_, client):
        mj = client.midjourney
        grid = await mj.imagine("stale")
        with pytest.raises(InvalidInputError, match="not finished yet"):
            await mj.upsample(grid, 1)  # still running: refused without a billed request
        await mj.wait(grid, timeout=10)
        up = await mj.upsample(grid, 1)  # the snapshot is still "idle"; it is looked up again
        assert up.parent_id == grid.id


# -- idempotency ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_repeating_an_action_returns_the_same_task_without_a_new_charge() -> None:
    async with emulated(mj_emulator()) as (emu, client):
        mj = client.midjourney
        grid = await mj.generate("twice", timeout=10)
        after_imagine = emu.org_balance
        first = await mj.variation(grid, image=1)
        assert emu.org_balance == after_imagine - 18
        second = await mj.variation(grid, image=1)
        assert second.id == first.id
        assert emu.org_balance == after_imagine - 18
        await mj.wait(first, timeout=10)
        third = await mj.variation(grid.id, image=1)  # after it is done: the same task again
        assert third.id == first.id and third.is_done
        up1 = await mj.upsample(grid, 3)
        up2 = await mj.upsample(grid, 3)
        assert up1.id == up2.id
    assert emu.org_balance == after_imagine - 18
    assert emu.counters.creates_by_route["POST /v1/midjourney/variation"] == 1


# -- progress ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_progress_callback_sees_intermediate_percent_and_previews() -> None:
    emu = mj_emulator()
    emu.config.durations["midjourney"] = DurationDist.fixed(300.0)  # 300 ms real
    seen: list[tuple[float, str | None]] = []
    awaited: list[float] = []

    async def async_cb(task: MidjourneyTask) -> None:
        awaited.append(task.percent)

    async with emulated(emu) as (_, client):
        task = await client.midjourney.imagine("slowly")
        done = await client.midjourney.wait(
            task.id, timeout=10, on_progress=lambda t: seen.append((t.percent, t.preview_url))
        )
        grid2 = await client.midjourney.imagine("slowly again")
        await client.midjourney.wait(grid2.id, timeout=10, on_progress=async_cb)
    assert done.is_done and done.percent == 100
    assert seen and all(p < 100 for p, _ in seen)
    assert any(url is not None and "preview" in url for p, url in seen if p > 0)
    assert awaited and all(p < 100 for p in awaited)


# -- local validation: nothing is sent -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("image", [0, 5, -1, True, "2", 2.0])
async def test_bad_image_number_is_refused_locally(image: Any) -> None:
    async with emulated(mj_emulator()) as (emu, client):
        with pytest.raises(InvalidInputError, match="1 to 4"):
            await client.midjourney.upsample(UNKNOWN_TASK_ID, image)
        with pytest.raises(InvalidInputError, match="1 to 4"):
            await client.midjourney.variation(UNKNOWN_TASK_ID, image=image)
    assert route_count(emu, "upsample") == route_count(emu, "variation") == 0


@pytest.mark.anyio
async def test_variation_rules_checked_against_the_parent() -> None:
    async with emulated(mj_emulator()) as (emu, client):
        mj = client.midjourney
        grid = await mj.generate("rules", timeout=10)
        up = await mj.generate_upsample(grid, 2, timeout=10)
        with pytest.raises(InvalidInputError, match="needs mode"):
            await mj.variation(up)
        with pytest.raises(InvalidInputError, match="does not offer 'variation_1'"):
            await mj.variation(up, image=1)
        with pytest.raises(InvalidInputError, match="does not offer 'high_variation'"):
            await mj.variation(grid, mode="high")
        with pytest.raises(InvalidInputError, match=r"image=1\.\.4"):
            await mj.variation(grid.id)
        with pytest.raises(InvalidInputError, match="mode must be"):
            await mj.variation(up, mode="medium")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="only on an upsample"):
            await mj.inpaint(grid, BLACK_MASK)
        with pytest.raises(InvalidInputError, match="does not offer 'upsample_1'"):
            await mj.upsample(up, 1)
        with pytest.raises(InvalidInputError, match="zoom"):
            await mj.outpaint(up, 3)
        with pytest.raises(InvalidInputError, match="direction"):
            await mj.pan(up, "north")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="scale"):
            await mj.upscale(up, 3)
        with pytest.raises(InvalidInputError, match="prompt"):
            await mj.imagine("   ")
        with pytest.raises(InvalidInputError, match="task id"):
            await mj.reroll("not a valid id!")
    for endpoint in ("variation", "inpaint", "outpaint", "pan", "upscale", "reroll"):
        assert route_count(emu, endpoint) == 0, endpoint


@pytest.mark.anyio
async def test_mask_inputs(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    path.write_bytes(BLACK_MASK)
    async with emulated(mj_emulator()) as (emu, client):
        mj = client.midjourney
        grid = await mj.generate("masks", timeout=10)
        up = await mj.generate_upsample(grid, 1, timeout=10)
        by_path = await mj.inpaint(up, path, prompt="a")
        by_b64 = await mj.inpaint(up, base64.b64encode(BLACK_MASK).decode(), prompt="b")
        data_url = "data:image/png;base64," + base64.b64encode(BLACK_MASK).decode()
        by_data_url = await mj.inpaint(up, data_url, prompt="c")
        assert len({by_path.id, by_b64.id, by_data_url.id}) == 3
        bad_masks: list[Any] = [
            b"GIF89a not a png",
            BLACK_MASK[:20],  # truncated IHDR
            BLACK_MASK[:8] + b"\x00\x00\x00\x0dIDAT" + BLACK_MASK[16:],  # first chunk not IHDR
            "!!! not base64 !!!",
            b"",
            tmp_path / "missing.png",
            12345,
        ]
        for bad in bad_masks:
            with pytest.raises(InvalidInputError, match="mask"):
                await mj.inpaint(up, bad)
    assert route_count(emu, "inpaint") == 3


# -- the documented server errors (raw requests, past the local checks) -------------------------


@pytest.mark.anyio
async def test_documented_server_errors() -> None:
    async with emulated(mj_emulator()) as (_, client):
        grid = await client.midjourney.generate("errors", timeout=10)
        up = await client.midjourney.generate_upsample(grid, 2, timeout=10)
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("upsample", {"image": 1}, "'taskId' is a required property"),
            ("upsample", {"taskId": grid.id, "image": 5}, "1 to 4"),
            ("variation", {"taskId": up.id}, "'mode' is a required property"),
            ("inpaint", {"taskId": up.id, "mask": "bm90IGEgcG5n"}, "base64-encoded PNG"),
            (
                "inpaint",
                {"taskId": grid.id, "mask": base64.b64encode(BLACK_MASK).decode()},
                "not available",
            ),
            ("imagine", {}, "'prompt' is a required property"),
        ]
        for endpoint, body, message in cases:
            with pytest.raises(InvalidRequestError, match=message) as info:
                await client.request("POST", f"/v1/midjourney/{endpoint}", json=body)
            assert info.value.status_code == 400
        with pytest.raises(InvalidRequestError, match="taskId"):
            await client.request("GET", "/v1/midjourney/result")
        with pytest.raises(NotFoundError):
            await client.midjourney.result(UNKNOWN_TASK_ID)


@pytest.mark.anyio
async def test_low_balance_is_402_and_the_wallet_can_pay() -> None:
    async with emulated(mj_emulator(org_balance=10.0, wallet_balance=100.0)) as (emu, client):
        with pytest.raises(InsufficientBalanceError) as info:
            await client.midjourney.imagine("too poor")
        assert info.value.status_code == 402
        task = await client.midjourney.imagine("wallet pays", use_wallet_balance=True)
        assert task.type == "imagine"
    assert emu.org_balance == 10.0
    assert emu.wallet_balance == 82.0


@pytest.mark.anyio
async def test_a_failed_task_raises_with_its_reason() -> None:
    emu = mj_emulator()
    emu.faults.task_failure_rate = 1.0
    async with emulated(emu) as (_, client):
        with pytest.raises(TaskFailedError) as info:
            await client.midjourney.generate("doomed", timeout=10)
        task = info.value.task
        assert isinstance(task, MidjourneyTask) and task.is_failed
        assert task.failure_reason and task.failure_reason in str(info.value)
        with pytest.raises(InvalidInputError, match="failed"):
            await client.midjourney.upsample(task, 1)
