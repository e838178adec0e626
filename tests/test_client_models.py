"""Every model end to end, ``generate``/``wait``, and parsing of the provider's own examples."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from client_helpers import CREATE_MODELS, CREATE_ROUTE, RESULT_ROUTE, emulated, make_emulator

from gptunnel_async import (
    AuthenticationError,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidRequestError,
    MediaTask,
    TaskFailedError,
    TaskState,
)
from gptunnel_async._response import decode_json, error_from_response
from gptunnel_async.catalog import MODELS
from gptunnel_async.testing._faults import DEFAULT_REASONS

# -- every model, created and awaited over a real socket ------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("model", CREATE_MODELS)
async def test_every_create_model_is_created_and_awaited_to_done(model: str) -> None:
    prompt = f"a lighthouse at dusk ({model})"
    extra = {"version": "chirp-v4"} if model == "suno" else {}
    async with emulated() as (emu, client):
        task = await client.media.create(model=model, prompt=prompt, **extra)
        assert task.model == model
        assert len(task.id) == 24
        assert task.state is TaskState.RUNNING
        done = await client.media.wait(task, timeout=10)
    assert done.id == task.id
    assert done.is_done
    assert done.state is TaskState.DONE
    assert done.urls, "a finished task has at least one result link"
    assert all(u.startswith("http://127.0.0.1:") for u in done.urls)
    assert emu.counters.creates_by_prompt[prompt] == 1
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    if MODELS[model].kind == "audio":
        assert done.result is not None
        assert len(done.result) == 2
        assert all(t.status == "succeeded" and t.audio_url for t in done.result)
        assert all(t.duration and t.duration > 0 for t in done.result)
    else:
        assert done.url is not None


def test_every_documented_create_model_is_covered() -> None:
    documented = {m.id for m in MODELS.values() if m.documented and m.endpoint == "create"}
    assert documented <= set(CREATE_MODELS)
    assert "suno" in CREATE_MODELS


@pytest.mark.anyio
async def test_imagen_prompt_echo_has_the_ar_suffix() -> None:
    async with emulated() as (_, client):
        task = await client.media.create(model="google-imagen-3", prompt="Thanos", ar="9:21")
        assert task.prompt == "Thanos --ar 9:21"
        done = await client.media.wait(task, timeout=10)
    assert done.url is not None


# -- generate() and wait() -----------------------------------------------------------------


@pytest.mark.anyio
async def test_generate_returns_a_done_task() -> None:
    async with emulated() as (emu, client):
        task = await client.media.generate(model="yandex-art", prompt="Жигули", timeout=10)
    assert isinstance(task, MediaTask)
    assert task.is_done
    assert task.model == "yandex-art"
    assert task.prompt == "Жигули"
    assert task.url is not None
    assert task.created_at is not None
    assert task.created_at.tzinfo is not None
    assert task.expires_at == task.created_at + timedelta(hours=48)
    assert emu.counters.creates_by_prompt["Жигули"] == 1


@pytest.mark.anyio
async def test_wait_on_a_bare_task_id() -> None:
    async with emulated() as (emu, client):
        task = await client.media.create(model="gpt-image-1-low", prompt="bare id")
        done = await client.media.wait(task.id, timeout=10)
    assert done.id == task.id
    assert done.is_done
    assert done.url is not None
    assert emu.counters.requests_by_task[task.id] >= 1


@pytest.mark.anyio
async def test_wait_polls_through_transient_503s() -> None:
    async with emulated() as (emu, client):
        task = await client.media.create(model="flux-dev", prompt="through 503s")
        # More 503s than one result() call retries (2): wait() must keep going regardless.
        emu.faults.script(RESULT_ROUTE, [503, 503, 503, 503, 503])
        done = await client.media.wait(task, timeout=10)
    assert done.is_done
    assert emu.faults.pending_script() == 0
    assert emu.counters.responses_by_status[503] == 5
    assert emu.counters.creates_by_prompt["through 503s"] == 1


@pytest.mark.anyio
async def test_wait_reports_progress_until_done() -> None:
    seen: list[str] = []

    async def on_progress(task: MediaTask) -> None:
        seen.append(task.status)

    async with emulated() as (_, client):
        task = await client.media.create(model="glabs-veo-3-1-fast", prompt="progress")
        done = await client.media.wait(task, timeout=10, on_progress=on_progress)
    assert done.is_done
    assert all(s in ("idle", "processing") for s in seen)


@pytest.mark.anyio
async def test_an_unknown_status_keeps_the_wait_going() -> None:
    emu = make_emulator()
    emu.faults.status_names = {"idle": "queued_somewhere", "processing": "rendering-v2"}
    async with emulated(emu) as (_, client):
        task = await client.media.create(model="yandex-art", prompt="odd statuses")
        assert task.status == "queued_somewhere"
        assert task.state is TaskState.RUNNING
        assert not task.is_finished
        done = await client.media.wait(task, timeout=10)
    assert done.is_done


@pytest.mark.anyio
async def test_a_failed_task_carries_its_reason() -> None:
    emu = make_emulator()
    emu.faults.task_failure_rate = 1.0
    async with emulated(emu) as (_, client):
        task = await client.media.create(model="yandex-art", prompt="doomed")
        with pytest.raises(TaskFailedError) as info:
            await client.media.wait(task, timeout=10)
        # The same task read directly: failed, with the reason in message/error.
        again = await client.media.result(task.id)
    err = info.value
    assert err.task_id == task.id
    assert err.error_type == "task_failed"
    assert err.task is not None
    assert err.task.is_failed
    assert err.task.state is TaskState.FAILED
    assert err.task.failure_reason in DEFAULT_REASONS
    assert err.task.failure_reason in str(err)
    assert again.failure_reason == err.task.failure_reason
    assert again.expires_at is None


@pytest.mark.anyio
async def test_a_generate_only_model_is_refused_by_create() -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidInputError, match="generate"):
            await client.media.create(model="seedream-4", prompt="sync only")
    assert emu.counters.api_requests_total == 0


@pytest.mark.anyio
async def test_the_generate_only_hint_names_a_method_that_exists() -> None:
    async with emulated() as (_, client):
        with pytest.raises(InvalidInputError) as info:
            await client.media.create(model="seedream-4", prompt="sync only")
        message = str(info.value)
        assert "/v1/media/generate" in message
        for method in re.findall(r"client\.media\.(\w+)", message):
            assert hasattr(client.media, method), method


# -- the provider's own example responses --------------------------------------------------

_IMAGEN_PROMPT = (
    "Cinematic, high-quality photo of Thanos in a serene Japanese forest, clad in a traditional "
    "samurai armor made of white porcelain, adorned with intricate blue paintings that evoke the "
    "art of ancient Japanese ceramics. The armor's delicate, hand-painted designs seem to shimmer "
    "in the soft, dappled light filtering through the forest canopy. Thanos wields a heavy, "
    "curved katana with a worn, wooden scabbard, its blade gleaming with a subtle, deadly sheen. "
    "The scene is captured in a dramatic, close-up angle, with the misty forest atmosphere and "
    "the soft, golden light of dawn or dusk accentuating the armor's ethereal beauty, while the "
    "weight and power of the katana seem to anchor Thanos to the earth, ready to unleash his fury "
    "upon the world. --ar 9:21"
)
_GPT_PROMPT = (
    "Subject: stunning afro-futuristic female model with metallic blue makeup Subject Position: "
    "confidently standing in center frame, facing camera with slight head tilt Photo Type: "
    "high-fashion editorial portrait Wearing: reflective silver bodysuit with sculptural shoulder "
    "pads Lens: 85mm f/1.4 Environment: minimalist white studio with chrome panels Environment "
    "Focus: shallow depth of field, background softly blurred Environment Description: smooth "
    "reflective floor, hints of neon light reflections Lighting: strong directional spotlight "
    "from the right, with soft fill light Time of Day: studio-lit, artificial Textures: glossy "
    "fabric, smooth skin, gleaming surfaces Atmosphere: bold and futuristic, assertive elegance "
    "Aesthetic: cyber-glam meets editorial minimalism Film Stock: Kodak Ektar 100"
)

# Verbatim from the seed pages (tabs and all), except the long prompts spliced in above.
IMAGEN_CREATE = """{
\t"code": 0,
\t"id": "6880f043e6060500018821de",
\t"model": "google-imagen-3",
\t"prompt": "@PROMPT@",
\t"created_at": 1753280579,
\t"status": "idle",
\t"url": null
}""".replace("@PROMPT@", _IMAGEN_PROMPT)
IMAGEN_RESULT = """{
\t"code": 0,
\t"id": "6880f043e6060500018821de",
\t"model": "google-imagen-3",
\t"prompt": "@PROMPT@",
\t"created_at": 1753280579,
\t"status": "done",
\t"url": "https://timenote.storage.yandexcloud.net/exp48h/6880f043e6060500018821de_result.webp"
}""".replace("@PROMPT@", _IMAGEN_PROMPT)
GPT_CREATE = """{
\t"code": 0,
\t"id": "687fab1e49832bb77d34db47",
\t"model": "gpt-image-1-low",
\t"prompt": "@PROMPT@",
\t"created_at": 1753197342,
\t"status": "idle",
\t"url": null
}""".replace("@PROMPT@", _GPT_PROMPT)
GPT_RESULT = """{
\t"code": 0,
\t"id": "687fa9f2c69e500001e2f9a4",
\t"model": "gpt-image-1-high",
\t"prompt": "@PROMPT@",
\t"created_at": 1753197042,
\t"status": "done",
\t"url": "https://storage.yandexcloud.net/timenote/exp48h/687fa9f2c69e500001e2f9a4-gpt-image-1-high-original.webp"
}""".replace("@PROMPT@", _GPT_PROMPT)
VEO_CREATE = """{
\t"code": 0,
\t"id": "684e5b2214bed9a815408cb3",
\t"model": "glabs-veo-3-1-fast",
\t"prompt": "",
\t"created_at": 175300055,
\t"status": "idle",
\t"url": null
}"""
# The page's prompt holds unescaped quotes (invalid JSON no server can send): escaped here.
VEO_RESULT = """{
\t"code": 0,
\t"id": "684e5b2214bed9a815408cb3",
\t"model": "glabs-veo-3-1-fast",
\t"prompt": "A seventy-five-year-old Soviet grandmother with grey hair in neat bun wearing vintage floral dress and old-fashioned glasses, standing at microphone on comedy stage and says in Russian: «Два дракона заходят в бар. Один другому: \\"Что-то здесь жарkovато\\". Второй в ответ: \\"Рот закрой\\"», with perfect comedic timing and mischievous smile, in modern comedy club with brick walls and neon stage lights, audience laughter and applause building in background, warm spotlight with colorful stage lighting, cinematic quality, medium shot, high resolution, nostalgic comedy atmosphere.",
\t"created_at": 175300055,
\t"status": "done",
\t"url": "https://timenote.storage.yandexcloud.net/predication/6870d9bc6fd394f886a7bd7f_result.mp4"
}"""  # noqa: E501
YANDEX_CREATE = """{
\t"code": 0,
\t"id": "687fc3298a5526000178d77d",
\t"model": "yandex-art",
\t"prompt": "Жигули",
\t"created_at": 1753203497,
\t"status": "idle",
\t"url": null
}"""
YANDEX_RESULT = """{
\t"code": 0,
\t"id": "687fc3298a5526000178d77d",
\t"model": "yandex-art",
\t"prompt": "Жигули",
\t"created_at": 1753203497,
\t"status": "done",
\t"url": "https://timenote.storage.yandexcloud.net/predication/687fc3298a5526000178d77d_yandex-art_result.webp"
}"""
MJ_IMAGINE = """{
\t"id": "65589df803761c00010775ae",
\t"parentId": null,
\t"object": "task",
\t"type": "imagine",
\t"actions": [],
\t"percent": 0,
\t"status": "idle",
\t"result": null,
\t"error": null,
\t"usage": {
\t\t"prompt_tokens": 0,
\t\t"completion_tokens": 1,
\t\t"total_tokens": 1,
\t\t"prompt_cost": 0,
\t\t"completion_cost": 18,
\t\t"total_cost": 18
\t}
}"""
ERR_400 = """{
  "error": {
    "message": "'prompt' is a required property",
    "type": "invalid_request_error",
    "param": null,
    "code": null
  }
}"""
ERR_402 = """{
  "error": {
    "message": "Organization balance is too low to use API",
    "type": "insufficient_balance_error",
    "param": null,
    "code": null
  }
}"""
# Note the trailing comma after "code": null, as on the page.
ERR_401 = """{
  "error": {
    "message": "Unauthorized",
    "type": "unauthorized_request_error",
    "param": null,
    "code": null,
  }
}"""

SEED_EXAMPLES = {
    "imagen-create": (IMAGEN_CREATE, "google-imagen-3", 1753280579, "idle"),
    "imagen-result": (IMAGEN_RESULT, "google-imagen-3", 1753280579, "done"),
    "gpt-image-create": (GPT_CREATE, "gpt-image-1-low", 1753197342, "idle"),
    "gpt-image-result": (GPT_RESULT, "gpt-image-1-high", 1753197042, "done"),
    "veo-create": (VEO_CREATE, "glabs-veo-3-1-fast", 175300055, "idle"),
    "veo-result": (VEO_RESULT, "glabs-veo-3-1-fast", 175300055, "done"),
    "yandex-create": (YANDEX_CREATE, "yandex-art", 1753203497, "idle"),
    "yandex-result": (YANDEX_RESULT, "yandex-art", 1753203497, "done"),
}


@pytest.mark.parametrize("name", sorted(SEED_EXAMPLES))
def test_seed_page_examples_parse(name: str) -> None:
    text, model, created, status = SEED_EXAMPLES[name]
    task = MediaTask.model_validate(decode_json(text.encode()))
    assert len(task.id) == 24
    assert task.code == 0
    assert task.model == model
    assert task.status == status
    assert task.created_at == datetime.fromtimestamp(created, tz=timezone.utc)
    assert task.created_at is not None
    assert task.created_at.tzinfo is not None
    assert task.created_at.utcoffset() == timedelta(0)
    if status == "idle":
        assert task.state is TaskState.RUNNING
        assert task.url is None
        assert task.urls == []
        assert task.expires_at is None
    else:
        assert task.state is TaskState.DONE
        assert task.url is not None
        assert task.url.startswith("https://")
        assert task.urls == [task.url]


def test_imagen_example_echoes_the_ar_suffix() -> None:
    task = MediaTask.model_validate(decode_json(IMAGEN_CREATE.encode()))
    assert task.prompt is not None
    assert task.prompt.endswith(" --ar 9:21")


def test_done_example_expires_48h_after_creation() -> None:
    task = MediaTask.model_validate(decode_json(YANDEX_RESULT.encode()))
    created = datetime(2025, 7, 22, 16, 58, 17, tzinfo=timezone.utc)
    assert task.created_at == created
    assert task.expires_at == created + timedelta(hours=48)


def test_veo_nine_digit_created_at_parses_but_gives_no_expiry() -> None:
    task = MediaTask.model_validate(decode_json(VEO_RESULT.encode()))
    assert task.created_at == datetime.fromtimestamp(175300055, tz=timezone.utc)
    assert task.created_at.year == 1975
    assert task.is_done
    # A 1975 timestamp is a typo: the link's expiry is unknown rather than long past.
    assert task.expires_at is None


def test_veo_page_result_verbatim_is_not_json() -> None:
    raw = VEO_RESULT.replace('\\"', '"')
    with pytest.raises(ValueError):  # noqa: PT011
        decode_json(raw.encode())


def test_midjourney_example_decodes() -> None:
    data = decode_json(MJ_IMAGINE.encode())
    assert data["id"] == "65589df803761c00010775ae"
    assert data["usage"]["total_cost"] == 18
    assert data["parentId"] is None


def test_error_example_with_trailing_comma_decodes_and_maps() -> None:
    data = decode_json(ERR_401.encode())
    assert data == {
        "error": {
            "message": "Unauthorized",
            "type": "unauthorized_request_error",
            "param": None,
            "code": None,
        }
    }
    err = error_from_response(
        status_code=401, headers={}, content=ERR_401.encode(), method="POST", path="/v1/x"
    )
    assert isinstance(err, AuthenticationError)
    assert err.status_code == 401
    assert err.error_type == "unauthorized_request_error"
    assert "Unauthorized" in err.message


@pytest.mark.parametrize(
    ("status", "text", "cls", "error_type", "message"),
    [
        (400, ERR_400, InvalidRequestError, "invalid_request_error", "'prompt' is a required"),
        (402, ERR_402, InsufficientBalanceError, "insufficient_balance_error", "balance is too"),
    ],
)
def test_error_examples_map_to_their_classes(
    status: int, text: str, cls: type[Exception], error_type: str, message: str
) -> None:
    err = error_from_response(
        status_code=status,
        headers={},
        content=text.encode(),
        method="POST",
        path="/v1/midjourney/imagine",
    )
    assert type(err) is cls
    assert err.status_code == status
    assert err.error_type == error_type
    assert message in err.message


@pytest.mark.parametrize(
    "status", ["queued", "pending", "in_progress", "Processing", "weird-new-status", ""]
)
def test_unknown_statuses_count_as_running(status: str) -> None:
    task = MediaTask.model_validate(
        {"id": "6880f043e6060500018821de", "status": status, "created_at": 1753280579}
    )
    assert task.state is TaskState.RUNNING
    assert task.status == status
    assert not task.is_finished
    assert task.expires_at is None


def test_null_status_and_extra_fields_are_tolerated() -> None:
    task = MediaTask.model_validate(
        {"id": "6880f043e6060500018821de", "status": None, "brand_new_field": [1, 2]}
    )
    assert task.status == "idle"
    assert task.state is TaskState.RUNNING
    assert task.model_extra == {"brand_new_field": [1, 2]}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"status": "failed", "message": "Content policy violation"}, "Content policy violation"),
        ({"status": "error", "error": "Generation timed out"}, "Generation timed out"),
        ({"status": "cancelled", "error": {"message": "user cancelled"}}, "user cancelled"),
        ({"status": "failed"}, "status 'failed'"),
    ],
)
def test_failed_task_failure_reason(body: dict[str, object], reason: str) -> None:
    task = MediaTask.model_validate({"id": "6880f043e6060500018821de", **body})
    assert task.state is TaskState.FAILED
    assert task.is_failed
    assert task.failure_reason == reason
    assert task.expires_at is None


def test_created_at_milliseconds_and_iso_are_aware() -> None:
    ms = MediaTask.model_validate({"id": "a" * 24, "created_at": 1753280579000})
    iso = MediaTask.model_validate({"id": "a" * 24, "created_at": "2025-07-23T14:22:59Z"})
    expected = datetime.fromtimestamp(1753280579, tz=timezone.utc)
    assert ms.created_at == expected
    assert iso.created_at == expected
    assert iso.created_at is not None
    assert iso.created_at.tzinfo is not None
