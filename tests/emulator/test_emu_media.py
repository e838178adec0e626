"""Media endpoints over a real socket: exact shapes, lifecycle, validation, billing."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from gptunnel_async.catalog import MODELS
from gptunnel_async.testing import Emulator, EmulatorServer

pytestmark = pytest.mark.anyio
Poll = Callable[..., Awaitable[dict[str, Any]]]  # the `poll` fixture from conftest
KEY = "test-key"
ID = re.compile(r"^[0-9a-f]{24}$")
CREATE_KEYS = ["code", "id", "model", "prompt", "created_at", "status", "url"]


async def test_create_has_exact_seed_shape(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "Жигули"})
    assert r.status_code == 200
    data = r.json()
    assert list(data) == CREATE_KEYS
    assert data["code"] == 0
    assert ID.match(data["id"])
    assert (data["model"], data["prompt"], data["status"], data["url"]) == (
        "yandex-art",
        "Жигули",
        "idle",
        None,
    )
    assert isinstance(data["created_at"], int)


async def test_imagen_echoes_ar_in_prompt(client: httpx.AsyncClient) -> None:
    body = {"model": "google-imagen-3", "prompt": "Thanos", "ar": "9:21"}
    r = await client.post("/v1/media/create", json=body)
    assert r.json()["prompt"] == "Thanos --ar 9:21"
    r = await client.post(
        "/v1/media/create", json={"model": "flux-dev", "prompt": "x", "ar": "1:1"}
    )
    assert r.json()["prompt"] == "x"


@pytest.mark.parametrize("how", ["get-query", "post-body", "post-query"])
async def test_result_task_id_in_query_or_body(
    client: httpx.AsyncClient, poll: Poll, how: str
) -> None:
    created = (
        await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "a"})
    ).json()
    await poll("/v1/media/result", "task_id", created["id"])
    tid = created["id"]
    if how == "get-query":
        r = await client.get("/v1/media/result", params={"task_id": tid})
    elif how == "post-body":
        r = await client.post("/v1/media/result", json={"task_id": tid})
    else:
        r = await client.post("/v1/media/result", params={"task_id": tid})
    data = r.json()
    assert list(data) == CREATE_KEYS
    assert data["status"] == "done"
    assert data["created_at"] == created["created_at"]
    assert re.match(rf"^{r.url.scheme}://.+/files/{tid}_result\.webp\?expires=\d+$", data["url"])


async def test_result_counts_polls_per_task(
    client: httpx.AsyncClient, emu: Emulator, poll: Poll
) -> None:
    tid = (
        await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "a"})
    ).json()["id"]
    await poll("/v1/media/result", "task_id", tid)
    assert emu.counters.requests_by_task[tid] >= 1
    assert (
        emu.counters.requests_by_route["GET /v1/media/result"] == emu.counters.requests_by_task[tid]
    )
    assert emu.finished_at(tid) is not None


def test_lifecycle_is_lazy_and_recorded() -> None:
    emu = Emulator()
    task = emu.store.create(
        "media", "yandex-art", "p", duration_key="yandex-art", ext="webp", cost=1
    )
    t0, span = task.t_created, task.t_end - task.t_created
    assert 5.0 <= span <= 60.0
    assert task.status(t0) == "idle"
    assert task.status(t0 + 0.05 * span) == "idle"
    assert task.status(t0 + 0.5 * span) == "processing"
    assert task.status(t0 + span) == "done"
    assert 49 <= task.percent(t0 + 0.55 * span) <= 51
    assert emu.finished_at(task.id) is None
    assert task.finished_at(t0 + span + 1) == task.t_end


def test_failed_and_never_finishing_tasks() -> None:
    emu = Emulator()
    emu.faults.task_failure_rate = 1.0
    failed = emu.store.create("media", "flux-dev", "p", duration_key="flux-dev", ext="webp", cost=1)
    assert failed.status(failed.t_end) == "failed"
    assert failed.reason
    emu.faults.task_failure_rate = 0.0
    emu.faults.never_finish_rate = 1.0
    never = emu.store.create("media", "flux-dev", "p", duration_key="flux-dev", ext="webp", cost=1)
    assert never.status(never.t_end + 1e6) == "processing"
    assert never.percent(never.t_end + 1e6) == 99
    assert never.finished_at(never.t_end + 1e6) is None


async def test_failed_task_carries_reason(
    client: httpx.AsyncClient, emu: Emulator, poll: Poll
) -> None:
    emu.faults.task_failure_rate = 1.0
    tid = (
        await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "a"})
    ).json()["id"]
    data = await poll("/v1/media/result", "task_id", tid)
    assert data["status"] == "failed"
    assert data["url"] is None
    assert data["message"] == data["error"] == emu.task(tid).reason  # type: ignore[union-attr]


async def test_video_and_gpt_image_extensions(client: httpx.AsyncClient, poll: Poll) -> None:
    for model, ext in (("gpt-image-1-low", "png"), ("seedance-1-lite-480P-5s", "mp4")):
        tid = (await client.post("/v1/media/create", json={"model": model, "prompt": "x"})).json()[
            "id"
        ]
        data = await poll("/v1/media/result", "task_id", tid)
        assert data["url"].split("?")[0].endswith(f"_result.{ext}")


@pytest.mark.parametrize("auth", [KEY, f"Bearer {KEY}", f"bearer  {KEY}"])
async def test_auth_raw_and_bearer_accepted(server: EmulatorServer, auth: str) -> None:
    server.emulator.config.api_keys = {KEY}
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/v1/balance", headers={"Authorization": auth})
    assert r.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": "wrong"}])
async def test_auth_missing_or_wrong_is_401(
    server: EmulatorServer, headers: dict[str, str]
) -> None:
    server.emulator.config.api_keys = {KEY}
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post(
            "/v1/media/create", json={"model": "yandex-art", "prompt": "x"}, headers=headers
        )
    assert r.status_code == 401
    assert r.json() == {
        "error": {
            "message": "Unauthorized",
            "type": "unauthorized_request_error",
            "param": None,
            "code": None,
        }
    }
    assert server.emulator.counters.creates_total == 0


@pytest.mark.parametrize("field", ["prompt", "model"])
async def test_missing_field_is_400(client: httpx.AsyncClient, field: str) -> None:
    body = {"model": "yandex-art", "prompt": "x"}
    del body[field]
    r = await client.post("/v1/media/create", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": f"'{field}' is a required property",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_invalid_json_is_400(client: httpx.AsyncClient) -> None:
    bad = b'{"model":"glabs-veo-3-1-fast","prompt":"says: "hi""}'
    r = await client.post(
        "/v1/media/create", content=bad, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_bad_ar_is_code_3_with_http_200(client: httpx.AsyncClient, emu: Emulator) -> None:
    r = await client.post(
        "/v1/media/create", json={"model": "gpt-image-1-high", "prompt": "x", "ar": "21:9"}
    )
    assert r.status_code == 200
    data = r.json()
    assert data["code"] == 3
    (issue,) = data["issues"]
    assert issue["path"] == ["ar"]
    assert issue["expected"] == "'1:1' | '16:9' | '9:16' | '4:3' | '3:4'"
    assert set(issue) == {"path", "expected", "message"}
    assert emu.counters.creates_total == 0


async def test_unknown_model_lists_every_model(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/media/create", json={"model": "nope", "prompt": "x"})
    (issue,) = r.json()["issues"]
    assert issue["path"] == ["model"]
    listed = [m.strip("'") for m in issue["expected"].split(" | ")]
    assert listed == [m.id for m in MODELS.values() if m.endpoint == "create"]
    r = await client.post("/v1/media/create", json={"model": "seedream-4", "prompt": "x"})
    assert r.json()["code"] == 3


async def test_too_many_images_and_unknown_ar_accepted(client: httpx.AsyncClient) -> None:
    body = {"model": "glabs-veo-3-1-fast", "prompt": "x", "images": ["http://a/1", "http://a/2"]}
    r = await client.post("/v1/media/create", json=body)
    assert r.json()["code"] == 3
    assert r.json()["issues"][0]["path"] == ["images"]
    body = {"model": "glabs-veo-3", "prompt": "x", "ar": "7:3", "images": ["http://a/1"]}
    assert (await client.post("/v1/media/create", json=body)).json()["code"] == 0
    many = [f"http://a/{i}" for i in range(10)]
    body = {"model": "gpt-image-1-low", "prompt": "x", "images": many}
    assert (await client.post("/v1/media/create", json=body)).json()["code"] == 0


async def test_low_balance_is_402_and_billing(client: httpx.AsyncClient, emu: Emulator) -> None:
    before = emu.org_balance
    await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "x"})
    assert emu.org_balance == before - 1.0
    emu.org_balance = 0.5
    r = await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "x"})
    assert r.status_code == 402
    assert r.json()["error"]["type"] == "insufficient_balance_error"
    assert r.json()["error"]["message"] == "Organization balance is too low to use API"
    assert emu.counters.creates_by_prompt["x"] == 1


async def test_unknown_task_404_and_missing_id_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/media/result", params={"task_id": "0" * 24})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"
    assert r.json()["error"]["message"] == "Task not found"
    r = await client.get("/v1/media/result")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "'task_id' is a required property"


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing")
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


async def test_suno_shape_and_tracks(client: httpx.AsyncClient, poll: Poll) -> None:
    body = {"model": "suno", "prompt": "a song", "title": "T", "version": "chirp-v4"}
    created = (await client.post("/v1/media/create", json=body)).json()
    assert list(created) == ["code", "id", "model", "input", "status", "created_at", "result"]
    assert created["input"] == {"prompt": "a song", "title": "T", "version": "chirp-v4"}
    assert created["result"] == []
    done = await poll("/v1/media/result", "task_id", created["id"])
    assert len(done["result"]) == 2
    track = done["result"][0]
    assert track["status"] == "succeeded"
    assert track["title"] == "T"
    assert isinstance(track["duration"], float)
    assert done["url"] == track["audio_url"]
    assert ".mp3?" in track["audio_url"]


async def test_suno_validation(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/media/create", json={"model": "suno", "prompt": "x" * 401})
    assert r.json()["code"] == 3
    assert r.json()["issues"][0]["path"] == ["prompt"]
    r = await client.post(
        "/v1/media/create", json={"model": "suno", "prompt": "x", "version": "v9"}
    )
    assert r.json()["issues"][0]["path"] == ["version"]


async def test_generate_is_synchronous(client: httpx.AsyncClient, emu: Emulator) -> None:
    body = {"model": "seedream-4", "prompt": "p", "size": "2K", "aspect_ratio": "21:9"}
    r = await client.post("/v1/media/generate", json=body)
    data = r.json()
    assert list(data) == ["id", "result", "cost", "model"]
    assert data["model"] == "seedream-4"
    assert emu.task(data["id"]).status() == "done"  # type: ignore[union-attr]
    assert (await client.get(data["result"])).status_code == 200
    r = await client.post("/v1/media/generate", json={**body, "size": "8K"})
    assert r.json()["code"] == 3
    r = await client.post("/v1/media/generate", json={"model": "flux-dev", "prompt": "p"})
    assert r.json()["code"] == 3
