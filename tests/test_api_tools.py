"""FaceSwap, Background Remover and image inputs against the emulator; a mixed-kind poller run."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from client_helpers import UNKNOWN_TASK_ID, emulated
from test_api_midjourney import mj_emulator

from gptunnel_async import (
    BGRemoverTask,
    FaceSwapTask,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidRequestError,
    MediaTask,
    MidjourneyTask,
    NotFoundError,
    Poller,
    PollerOptions,
)
from gptunnel_async._images import MAX_IMAGE_BYTES, image_to_url, sniff_image_mime
from gptunnel_async.testing._files import WEBP_1X1, png

PNG = png((255, 0, 0))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
URL_A = "https://example.com/a.jpg"
URL_B = "https://example.com/b.jpg"


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (WEBP_1X1, "image/webp"),
        (b"GIF89a" + b"\x00" * 10, "image/gif"),
        (b"\x00\x00\x00\x1cftypavif" + b"\x00" * 16, "image/avif"),
        (b"%PDF-1.7 not an image", None),
        (b"", None),
    ],
)
def test_sniffing(data: bytes, mime: str | None) -> None:
    assert sniff_image_mime(data) == mime


@pytest.mark.anyio
async def test_image_inputs_become_urls(tmp_path: Path) -> None:
    path = tmp_path / "face.bin"  # the name says nothing: the bytes decide
    path.write_bytes(JPEG)
    assert await image_to_url(URL_A) == URL_A
    assert await image_to_url(PNG) == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert (await image_to_url(path)).startswith("data:image/jpeg;base64,")
    assert (await image_to_url(str(path))).startswith("data:image/jpeg;base64,")
    data_url = "data:image/webp;base64," + base64.b64encode(WEBP_1X1).decode()
    assert await image_to_url(data_url) == data_url
    big = tmp_path / "big.png"
    with big.open("wb") as f:  # sparse: rejected from its size, never read
        f.truncate(MAX_IMAGE_BYTES + 1)
    bad: list[Any] = [
        b"%PDF-1.7",
        bytearray(b"plain text"),
        PNG[:4] + b"\x00" * (MAX_IMAGE_BYTES),
        big,
        tmp_path / "missing.png",
        "ftp://example.com/a.png",
        "",
        "data:image/png,notbase64",
        42,
    ]
    for value in bad:
        with pytest.raises(InvalidInputError):
            await image_to_url(value)


@pytest.mark.anyio
async def test_faceswap_urls_bytes_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "face.jpg"
    path.write_bytes(JPEG)
    async with emulated(mj_emulator()) as (emu, client):
        task = await client.faceswap.create(URL_A, URL_B, webhook="https://hooks.example/x")
        assert isinstance(task, FaceSwapTask) and task.type == "@FaceSwap"
        assert task.poll_kind == "faceswap"
        done = await client.faceswap.wait(task, timeout=10)
        assert done.is_done and done.url and done.percent == 100
        stored = emu.task(task.id)
        assert stored is not None and stored.webhook == "https://hooks.example/x"
        assert stored.args["images"] == {"sourceImage": URL_A, "faceImage": URL_B}

        inline = await client.faceswap.generate(PNG, path, timeout=10)
        stored = emu.task(inline.id)
        assert stored is not None
        assert stored.args["images"]["sourceImage"].startswith("data:image/png;base64,")
        assert stored.args["images"]["faceImage"].startswith("data:image/jpeg;base64,")
        again = await client.faceswap.result(inline.id)
        assert again.id == inline.id and again.is_done


@pytest.mark.anyio
async def test_bgremover_create_result_wait() -> None:
    async with emulated(mj_emulator()) as (emu, client):
        task = await client.bgremover.create(PNG)
        assert isinstance(task, BGRemoverTask) and task.type == "@BGRemover"
        done = await client.bgremover.wait(task.id, timeout=10)
        assert done.is_done and done.url
        gen = await client.bgremover.generate(URL_A, timeout=10)
        assert gen.is_done
        stored = emu.task(gen.id)
        assert stored is not None and stored.args["images"] == {"image": URL_A}


@pytest.mark.anyio
async def test_tool_input_errors_are_local() -> None:
    async with emulated(mj_emulator()) as (emu, client):
        for webhook in ("http://hooks.example/x", "hooks.example/x", "https://"):
            with pytest.raises(InvalidInputError, match="webhook"):
                await client.faceswap.create(URL_A, URL_B, webhook=webhook)
        with pytest.raises(InvalidInputError, match="face_image is not an image"):
            await client.faceswap.create(URL_A, b"hello")
        with pytest.raises(InvalidInputError, match="image is not an image"):
            await client.bgremover.create(b"%PDF")
        with pytest.raises(InvalidInputError, match="task id"):
            await client.bgremover.result("../etc/passwd")
    assert emu.counters.creates_total == 0
    assert emu.counters.requests_by_route["POST /v1/faceswap/create"] == 0


@pytest.mark.anyio
async def test_tool_server_errors() -> None:
    async with emulated(mj_emulator(org_balance=0.5)) as (_, client):
        with pytest.raises(InsufficientBalanceError):
            await client.faceswap.create(URL_A, URL_B)
        with pytest.raises(InsufficientBalanceError):
            await client.bgremover.create(URL_A)
        with pytest.raises(InvalidRequestError, match="'faceImage' is a required property"):
            await client.request("POST", "/v1/faceswap/create", json={"sourceImage": URL_A})
        with pytest.raises(InvalidRequestError, match="image URL"):
            await client.request("POST", "/v1/bgremover/create", json={"image": "nope"})
        with pytest.raises(InvalidRequestError, match="taskId"):
            await client.request("GET", "/v1/faceswap/result")
        with pytest.raises(NotFoundError):
            await client.faceswap.result(UNKNOWN_TASK_ID)


# -- the poller polls each kind at its own endpoint ------------------------------------------------


@pytest.mark.anyio
async def test_poller_mixes_media_midjourney_faceswap_bgremover() -> None:
    async with emulated(mj_emulator()) as (emu, client):
        media = await client.media.create(model="yandex-art", prompt="mixed")
        grid = await client.midjourney.imagine("mixed")
        swap = await client.faceswap.create(URL_A, URL_B)
        cut = await client.bgremover.create(URL_A)
        bare = await client.midjourney.imagine("by id")
        async with Poller(client, PollerOptions(max_concurrency=4, task_timeout=10)) as poller:
            for task in (media, grid, swap, cut):
                poller.add(task, tag=task.id)
            poller.add(bare.id, kind="midjourney")
            results = [r async for r in poller]
    assert sorted(r.id for r in results if r.id) == sorted(
        t.id for t in (media, grid, swap, cut, bare)
    )
    assert all(r.ok for r in results), [r.error for r in results]
    kinds = {r.id: r.kind for r in results}
    assert kinds == {
        media.id: "media",
        grid.id: "midjourney",
        swap.id: "faceswap",
        cut.id: "bgremover",
        bare.id: "midjourney",
    }
    by_id = {r.id: r.task for r in results}
    assert isinstance(by_id[media.id], MediaTask)
    assert isinstance(by_id[grid.id], MidjourneyTask) and by_id[grid.id].can_upsample
    assert isinstance(by_id[bare.id], MidjourneyTask)
    assert isinstance(by_id[swap.id], FaceSwapTask)
    assert isinstance(by_id[cut.id], BGRemoverTask)
    assert all(r.url for r in results)
    routes = emu.counters.requests_by_route
    for family in ("midjourney", "faceswap", "bgremover", "media"):
        assert routes[f"GET /v1/{family}/result"] >= 1, family
