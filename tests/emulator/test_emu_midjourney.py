"""Midjourney chains, FaceSwap/BGRemover, balance and models over a real socket."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from gptunnel_async.testing import Emulator
from gptunnel_async.testing._files import png

pytestmark = pytest.mark.anyio
Poll = Callable[..., Awaitable[dict[str, Any]]]  # the `poll` fixture from conftest
GRID = ["upsamle_1", "upsamle_2", "upsamle_3", "upsamle_4", "reroll"] + [
    f"variation_{i}" for i in range(1, 5)
]
TASK_KEYS = [
    "id",
    "parentId",
    "object",
    "type",
    "actions",
    "percent",
    "status",
    "result",
    "error",
    "usage",
]
MASK = base64.b64encode(png((255, 255, 255))).decode()


async def _imagine(client: httpx.AsyncClient, poll: Poll, prompt: str = "cat") -> dict[str, Any]:
    r = await client.post("/v1/midjourney/imagine", json={"prompt": prompt})
    return await poll("/v1/midjourney/result", "taskId", r.json()["id"])


async def test_imagine_exact_seed_shape(client: httpx.AsyncClient, emu: Emulator) -> None:
    r = await client.post("/v1/midjourney/imagine", json={"prompt": "Старый IBM PC"})
    data = r.json()
    assert list(data) == TASK_KEYS
    assert data["parentId"] is None
    assert (data["object"], data["type"], data["actions"], data["percent"]) == (
        "task",
        "imagine",
        [],
        0,
    )
    assert (data["status"], data["result"], data["error"]) == ("idle", None, None)
    assert data["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 1,
        "total_tokens": 1,
        "prompt_cost": 0,
        "completion_cost": 18,
        "total_cost": 18,
    }
    assert emu.counters.creates_by_prompt["Старый IBM PC"] == 1


async def test_imagine_errors(client: httpx.AsyncClient, emu: Emulator) -> None:
    r = await client.post("/v1/midjourney/imagine", json={})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "'prompt' is a required property"
    emu.org_balance = 10
    r = await client.post("/v1/midjourney/imagine", json={"prompt": "x"})
    assert r.status_code == 402
    r = await client.post("/v1/midjourney/imagine", json={"prompt": "x", "useWalletBalance": True})
    assert r.status_code == 200
    assert emu.wallet_balance == emu.config.wallet_balance - 18
    r = await client.get("/v1/balance", params={"useWalletBalance": "true"})
    assert r.json()["balance"] == emu.wallet_balance


async def test_percent_rises_with_preview(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.config.durations["midjourney"] = emu.config.durations["midjourney"].fixed(400.0)
    tid = (await client.post("/v1/midjourney/imagine", json={"prompt": "x"})).json()["id"]
    await anyio.sleep(0.2)
    mid = (await client.get("/v1/midjourney/result", params={"taskId": tid})).json()
    assert mid["status"] == "processing"
    assert 0 < mid["percent"] < 100
    assert "_preview.webp" in mid["result"]
    assert (await client.get(mid["result"])).status_code == 200
    # POST with {"id"} is accepted too
    for body in ({"taskId": tid}, {"id": tid}):
        r = await client.post("/v1/midjourney/result", json=body)
        assert r.json()["id"] == tid


async def test_chain_upsample_variation_inpaint(
    client: httpx.AsyncClient, emu: Emulator, poll: Poll
) -> None:
    grid = await _imagine(client, poll)
    assert grid["status"] == "done"
    assert grid["percent"] == 100
    assert grid["actions"] == GRID
    assert grid["result"].split("?")[0].endswith("_result.png")

    up = (
        await client.post("/v1/midjourney/upsample", json={"taskId": grid["id"], "image": 2})
    ).json()
    assert (up["type"], up["parentId"], up["usage"]["total_cost"]) == ("upsample", grid["id"], 0)
    up = await poll("/v1/midjourney/result", "taskId", up["id"])
    assert "inpaint" in up["actions"]
    assert "high_variation" in up["actions"]

    body = {"taskId": up["id"], "mode": "high"}
    var = (await client.post("/v1/midjourney/variation", json=body)).json()
    assert (var["type"], var["parentId"]) == ("variation", up["id"])

    body = {"taskId": up["id"], "mask": MASK, "prompt": "a hat"}
    inp = (await client.post("/v1/midjourney/inpaint", json=body)).json()
    assert (inp["type"], inp["parentId"], inp["usage"]["total_cost"]) == ("inpaint", up["id"], 18)
    inp = await poll("/v1/midjourney/result", "taskId", inp["id"])
    assert inp["actions"] == GRID

    var2 = (
        await client.post("/v1/midjourney/variation", json={"taskId": grid["id"], "image": 4})
    ).json()
    assert var2["type"] == "variation"


async def test_action_validation_errors(client: httpx.AsyncClient, poll: Poll) -> None:
    grid = await _imagine(client, poll)
    gid = grid["id"]
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("upsample", {"image": 1}, 400, "'taskId' is a required property"),
        ("upsample", {"taskId": "0" * 24, "image": 1}, 404, "Task not found"),
        ("upsample", {"taskId": gid}, 400, "'image' is a required property"),
        ("upsample", {"taskId": gid, "image": 5}, 400, "'image' must be an integer from 1 to 4"),
        ("variation", {"taskId": gid}, 400, "'image' is a required property"),
        ("variation", {"taskId": gid, "mode": "high"}, 400, "Action 'high_variation' is not"),
        ("inpaint", {"taskId": gid, "mask": MASK}, 400, "Action 'inpaint' is not available"),
        ("pan", {"taskId": gid, "direction": "left"}, 400, "Action 'pan_left' is not"),
    ]
    for action, body, status, message in cases:
        r = await client.post(f"/v1/midjourney/{action}", json=body)
        assert r.status_code == status, (action, body)
        assert r.json()["error"]["message"].startswith(message), (action, body)

    up = (await client.post("/v1/midjourney/upsample", json={"taskId": gid, "image": 1})).json()
    r = await client.post("/v1/midjourney/variation", json={"taskId": up["id"], "mode": "high"})
    assert r.status_code == 400
    assert "not done" in r.json()["error"]["message"]
    await poll("/v1/midjourney/result", "taskId", up["id"])
    r = await client.post("/v1/midjourney/variation", json={"taskId": up["id"]})
    assert r.json()["error"]["message"] == "'mode' is a required property"
    for mask in ("not base64!", base64.b64encode(b"GIF89a....").decode()):
        r = await client.post("/v1/midjourney/inpaint", json={"taskId": up["id"], "mask": mask})
        assert r.status_code == 400
        assert "PNG" in r.json()["error"]["message"]


async def test_actions_are_idempotent(client: httpx.AsyncClient, emu: Emulator, poll: Poll) -> None:
    grid = await _imagine(client, poll)
    body = {"taskId": grid["id"], "image": 3}
    first = (await client.post("/v1/midjourney/variation", json=body)).json()
    spent = emu.org_balance
    again = (await client.post("/v1/midjourney/variation", json=body)).json()
    assert again["id"] == first["id"]
    assert emu.org_balance == spent
    assert emu.counters.creates_by_route["POST /v1/midjourney/variation"] == 1
    other = (await client.post("/v1/midjourney/variation", json={**body, "image": 1})).json()
    assert other["id"] != first["id"]


async def test_other_actions(client: httpx.AsyncClient, poll: Poll) -> None:
    grid = await _imagine(client, poll)
    reroll = (await client.post("/v1/midjourney/reroll", json={"taskId": grid["id"]})).json()
    assert reroll["type"] == "reroll"
    up = (
        await client.post("/v1/midjourney/upsample", json={"taskId": grid["id"], "image": 1})
    ).json()
    await poll("/v1/midjourney/result", "taskId", up["id"])
    for action, body in (
        ("outpaint", {"zoom": 1.5}),
        ("pan", {"direction": "up"}),
        ("upscale", {"scale": "4x"}),
    ):
        r = await client.post(f"/v1/midjourney/{action}", json={"taskId": up["id"], **body})
        assert r.status_code == 200, r.text
        done = await poll("/v1/midjourney/result", "taskId", r.json()["id"])
        assert done["type"] == action
    r = await client.post("/v1/midjourney/pan", json={"taskId": up["id"], "direction": "sideways"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("family", "body", "task_type"),
    [
        (
            "faceswap",
            {"sourceImage": "https://x/a.png", "faceImage": "data:image/png;base64,AA=="},
            "@FaceSwap",
        ),
        ("bgremover", {"image": "https://x/a.jpg", "webhook": "https://hook/x"}, "@BGRemover"),
    ],
)
async def test_tools(
    client: httpx.AsyncClient,
    emu: Emulator,
    poll: Poll,
    family: str,
    body: dict[str, str],
    task_type: str,
) -> None:
    created = (await client.post(f"/v1/{family}/create", json=body)).json()
    assert list(created) == TASK_KEYS
    assert created["type"] == task_type
    done = await poll(f"/v1/{family}/result", "taskId", created["id"])
    assert done["status"] == "done"
    f = await client.get(done["result"])
    assert f.headers["content-type"] == "image/png"
    assert emu.task(created["id"]).webhook == body.get("webhook")  # type: ignore[union-attr]
    r = await client.post(f"/v1/{family}/create", json={})
    assert r.status_code == 400
    r = await client.get(
        "/v1/faceswap/result" if family == "bgremover" else "/v1/bgremover/result",
        params={"taskId": created["id"]},
    )
    assert r.status_code == 404


async def test_faceswap_rejects_non_url(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/faceswap/create", json={"sourceImage": "x", "faceImage": "y"})
    assert r.status_code == 400


async def test_balance_and_models(client: httpx.AsyncClient) -> None:
    data = (await client.get("/v1/balance")).json()
    assert list(data) == ["orgId", "object", "balance", "creditLimit"]
    assert data["object"] == "balance"
    assert isinstance(data["balance"], float)
    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert set(models["data"][0]) == {
        "id", "object", "created", "title", "max_capacity", "cost_context", "cost_completion",
    }  # fmt: skip
