"""Balance, the model list, synchronous ``/media/generate`` and Suno, against the emulator."""

from __future__ import annotations

import pytest
from client_helpers import emulated, make_emulator

from gptunnel_async import (
    APITimeoutError,
    Balance,
    GeneratedImage,
    InsufficientBalanceError,
    InvalidInputError,
    LLMModel,
)
from gptunnel_async.testing import DurationDist
from gptunnel_async.testing._files import png
from gptunnel_async.testing._tools import MODELS_LIST

GENERATE_ROUTE = "POST /v1/media/generate"


def test_balance_doc_shape_parses() -> None:
    bal = Balance.model_validate(
        {"orgId": "org1", "object": "balance", "balance": -12.5, "creditLimit": 100}
    )
    assert bal.org_id == "org1" and bal.balance == -12.5 and bal.credit_limit == 100
    assert bal.available == 87.5


@pytest.mark.anyio
async def test_balance_org_and_wallet() -> None:
    emu = make_emulator(org_balance=500.0, wallet_balance=42.0, credit_limit=10.0)
    async with emulated(emu) as (_, client):
        org = await client.balance()
        wallet = await client.balance(use_wallet_balance=True)
        await client.midjourney.imagine("spend 18")
        after = await client.balance()
    assert isinstance(org, Balance)
    assert org.balance == 500.0 and org.credit_limit == 10.0 and org.object == "balance"
    assert org.org_id == "emulator-org"
    assert wallet.balance == 42.0
    assert after.balance == 482.0


@pytest.mark.anyio
async def test_models_list() -> None:
    async with emulated() as (_, client):
        models = await client.models()
    assert [m.id for m in models] == [row[0] for row in MODELS_LIST]
    assert all(isinstance(m, LLMModel) for m in models)
    first = models[0]
    assert first.title and first.max_capacity and first.cost_context is not None
    assert first.created is not None and first.created.year >= 2024


# -- synchronous /media/generate ---------------------------------------------------------------


@pytest.mark.anyio
async def test_generate_sync_returns_the_image() -> None:
    async with emulated() as (emu, client):
        image = await client.media.generate_sync(
            prompt="a red fox", size="2K", aspect_ratio="21:9", images=[png((1, 2, 3))]
        )
    assert isinstance(image, GeneratedImage)
    assert image.model == "seedream-4" and image.url and image.url.startswith("http://127.0.0.1")
    assert image.cost is not None and image.id
    assert emu.counters.creates_by_route[GENERATE_ROUTE] == 1


@pytest.mark.anyio
async def test_generate_sync_local_validation() -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidInputError, match="size"):
            await client.media.generate_sync(prompt="x", size="8K")
        with pytest.raises(InvalidInputError, match="/media/create"):
            await client.media.generate_sync(model="yandex-art", prompt="x")
        with pytest.raises(InvalidInputError, match="not an image"):
            await client.media.generate_sync(prompt="x", images=[b"text"])
        with pytest.raises(InvalidInputError, match="prompt"):
            await client.media.generate_sync(prompt="")
    assert emu.counters.requests_by_route[GENERATE_ROUTE] == 0


@pytest.mark.anyio
async def test_generate_sync_waits_past_the_client_timeout_and_is_never_resent() -> None:
    emu = make_emulator()
    emu.config.durations["seedream-4"] = DurationDist.fixed(400.0)  # 0.4 s real
    async with emulated(emu, timeout=0.1) as (_, client):
        image = await client.media.generate_sync(prompt="slow", read_timeout=5.0)
        assert image.url
        with pytest.raises(APITimeoutError) as info:
            await client.media.generate_sync(prompt="too slow", read_timeout=0.05)
        assert info.value.may_have_been_created
    assert emu.counters.creates_by_prompt["too slow"] == 1  # billed once, not re-sent


@pytest.mark.anyio
async def test_generate_sync_low_balance() -> None:
    async with emulated(make_emulator(org_balance=0.0)) as (_, client):
        with pytest.raises(InsufficientBalanceError):
            await client.media.generate_sync(prompt="poor")


# -- Suno ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_suno_custom_mode() -> None:
    async with emulated() as (_, client):
        task = await client.media.create_suno(
            "a song about the sea",
            lyric="[Verse]\nWaves",
            title="Sea",
            tags=["folk", "calm"],
            version="chirp-v4-5",
        )
        assert task.input is not None
        assert task.input["lyric"] == "[Verse]\nWaves" and task.input["tags"] == "folk, calm"
        assert task.input["version"] == "chirp-v4-5"
        done = await client.media.wait(task, timeout=10)
    assert done.result and all(t.audio_url and t.title == "Sea" for t in done.result)
    assert len(done.urls) == 2


@pytest.mark.anyio
async def test_suno_validation_is_local() -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidInputError, match="version"):
            await client.media.create_suno("x", version="chirp-v9")
        with pytest.raises(InvalidInputError, match="version"):
            await client.media.create(model="suno", prompt="x", version="chirp-v9")
        with pytest.raises(InvalidInputError, match="400"):
            await client.media.create_suno("y" * 401)
        with pytest.raises(InvalidInputError, match="tags"):
            await client.media.create_suno("x", tags=["ok", ""])
    assert emu.counters.creates_total == 0
