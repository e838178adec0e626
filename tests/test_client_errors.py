"""Every error class, reached from its real trigger over a loopback socket; local validation."""

from __future__ import annotations

import pytest
from client_helpers import (
    CREATE_ROUTE,
    RESULT_ROUTE,
    UNKNOWN_TASK_ID,
    closed_port,
    emulated,
    fast_retry,
    make_client,
    make_emulator,
)

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    GPTunnelError,
    InsufficientBalanceError,
    InternalServerError,
    InvalidInputError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    TaskFailedError,
    TaskTimeoutError,
)
from gptunnel_async._retry import RequestKind
from gptunnel_async.catalog import AR_ALL, MODELS


@pytest.mark.anyio
async def test_wrong_key_is_an_authentication_error() -> None:
    emu = make_emulator(api_keys={"the-right-key"})
    async with emulated(emu, key="the-wrong-key") as (_, client):
        with pytest.raises(AuthenticationError) as info:
            await client.media.create(model="yandex-art", prompt="no entry")
    err = info.value
    assert err.status_code == 401
    assert err.error_type == "unauthorized_request_error"
    assert "Unauthorized" in err.message
    assert err.message == str(err)
    assert err.method == "POST"
    assert err.path == "/v1/media/create"
    assert err.may_have_been_created is False
    assert emu.counters.creates_total == 0
    # A 401 is final: not retried.
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1


@pytest.mark.anyio
async def test_the_right_key_is_accepted() -> None:
    emu = make_emulator(api_keys={"the-right-key"})
    async with emulated(emu, key="the-right-key") as (_, client):
        task = await client.media.create(model="yandex-art", prompt="welcome")
    assert task.status == "idle"


@pytest.mark.anyio
async def test_low_balance_is_an_insufficient_balance_error() -> None:
    emu = make_emulator(org_balance=0.5, default_cost=1.0)
    async with emulated(emu) as (_, client):
        with pytest.raises(InsufficientBalanceError) as info:
            await client.media.create(model="yandex-art", prompt="too poor")
    err = info.value
    assert err.status_code == 402
    assert err.error_type == "insufficient_balance_error"
    assert "balance is too low" in err.message
    assert emu.counters.creates_total == 0
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    assert emu.org_balance == 0.5


@pytest.mark.anyio
async def test_http_400_missing_prompt_is_an_invalid_request_error() -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidRequestError) as info:
            await client.request(
                "POST", "/v1/media/create", json={"model": "yandex-art"}, kind=RequestKind.CREATE
            )
    err = info.value
    assert err.status_code == 400
    assert err.error_type == "invalid_request_error"
    assert "'prompt' is a required property" in err.message
    assert err.issues == []
    assert err.may_have_been_created is False
    assert isinstance(err.body, dict)
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    assert emu.counters.creates_total == 0


@pytest.mark.anyio
async def test_http_200_code_3_unknown_model_is_an_invalid_request_error_with_issues() -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidRequestError) as info:
            await client.media.create(model="no-such-model-9000", prompt="unknown")
    err = info.value
    assert err.status_code == 200
    assert err.code == 3
    assert "code 3" in err.message
    assert err.issues
    first = err.issues[0]
    assert first["path"] == ["model"]
    # The provider lists every model it knows as 'a' | 'b' | ...
    for model in ("google-imagen-3", "yandex-art", "suno"):
        assert f"'{model}'" in first["expected"]
    assert "model" in err.message
    assert err.may_have_been_created is False
    # The unknown id was sent (the SDK does not know every model), exactly once.
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    assert emu.counters.creates_total == 0


@pytest.mark.anyio
async def test_http_200_code_3_via_raw_request_carries_issues() -> None:
    body = {"model": "google-imagen-3", "prompt": "x", "ar": "2:1"}
    async with emulated() as (emu, client):
        with pytest.raises(InvalidRequestError) as info:
            await client.request("POST", "/v1/media/create", json=body, kind=RequestKind.CREATE)
    err = info.value
    assert err.code == 3
    assert err.status_code == 200
    assert [i["path"] for i in err.issues] == [["ar"]]
    assert "'16:9'" in err.issues[0]["expected"]
    assert "ar" in err.message
    assert emu.counters.creates_total == 0


@pytest.mark.anyio
async def test_429s_beyond_retries_are_a_rate_limit_error() -> None:
    async with emulated(retry_policy=fast_retry(2)) as (emu, client):
        emu.faults.script(CREATE_ROUTE, [(429, {"Retry-After": "0.01"})] * 3)
        with pytest.raises(RateLimitError) as info:
            await client.media.create(model="yandex-art", prompt="throttled")
    err = info.value
    assert err.status_code == 429
    assert err.error_type == "rate_limit_error"
    assert err.retry_after == pytest.approx(0.01)
    # 1 try + 2 retries; a 429 means nothing was created, so it may be retried and is not billed.
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 3
    assert emu.counters.creates_total == 0
    assert err.may_have_been_created is False
    assert emu.counters.retry_after_violations == 0


@pytest.mark.anyio
async def test_500s_beyond_retries_are_an_internal_server_error() -> None:
    async with emulated(retry_policy=fast_retry(2)) as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="broken")
        emu.faults.script(RESULT_ROUTE, [500, 502, 503])
        with pytest.raises(InternalServerError) as info:
            await client.media.result(task.id)
    err = info.value
    assert isinstance(err, APIStatusError)
    assert err.status_code == 503
    assert err.error_type == "server_error"
    assert err.task_id == task.id
    assert "Service unavailable" in err.message
    assert err.may_have_been_created is False
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 3


@pytest.mark.anyio
async def test_unknown_task_id_is_not_found() -> None:
    async with emulated() as (emu, client):
        with pytest.raises(NotFoundError) as info:
            await client.media.result(UNKNOWN_TASK_ID)
        with pytest.raises(NotFoundError):
            await client.media.wait(UNKNOWN_TASK_ID, timeout=5)
    err = info.value
    assert err.status_code == 404
    assert err.error_type == "not_found_error"
    assert err.task_id == UNKNOWN_TASK_ID
    assert "Task not found" in err.message
    # A 404 is final: one request per call, no retries.
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 2


@pytest.mark.anyio
async def test_connection_refused_is_an_api_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with make_client(url, retry_policy=fast_retry(1)) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.media.result(UNKNOWN_TASK_ID)
        with pytest.raises(APIConnectionError) as create_info:
            await client.media.create(model="yandex-art", prompt="nobody home")
    err = info.value
    assert not isinstance(err, APITimeoutError)
    assert err.status_code is None
    assert err.task_id == UNKNOWN_TASK_ID
    assert "ConnectError" in err.message
    assert err.may_have_been_created is False
    # Refused: the create certainly never arrived, so the error does not claim it might have.
    assert create_info.value.may_have_been_created is False
    assert "may have reached" not in str(create_info.value)


@pytest.mark.anyio
async def test_slow_response_past_the_timeout_is_an_api_timeout_error() -> None:
    async with emulated(timeout=0.2, retry_policy=fast_retry(0)) as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="slow")
        emu.faults.script(RESULT_ROUTE, [("delay", 2.0)])
        with pytest.raises(APITimeoutError) as info:
            await client.media.result(task.id)
    err = info.value
    assert isinstance(err, APIConnectionError)
    assert err.status_code is None
    assert err.task_id == task.id
    assert "ReadTimeout" in err.message
    assert err.may_have_been_created is False


@pytest.mark.anyio
async def test_a_failing_task_raises_task_failed_error() -> None:
    emu = make_emulator()
    emu.faults.task_failure_rate = 1.0
    emu.faults.failure_reasons = ("Content policy violation: the prompt was rejected",)
    async with emulated(emu) as (_, client):
        with pytest.raises(TaskFailedError) as info:
            await client.media.generate(model="gpt-image-1-high", prompt="forbidden", timeout=10)
    err = info.value
    assert err.status_code is None
    assert err.error_type == "task_failed"
    assert err.task_id is not None
    assert len(err.task_id) == 24
    assert "Content policy violation" in err.message
    assert err.task is not None
    assert err.task.failure_reason == "Content policy violation: the prompt was rejected"
    assert emu.counters.creates_by_prompt["forbidden"] == 1


@pytest.mark.anyio
async def test_a_never_finishing_task_raises_task_timeout_error() -> None:
    emu = make_emulator()
    emu.faults.never_finish_rate = 1.0
    async with emulated(emu) as (_, client):
        task = await client.media.create(model="yandex-art", prompt="forever")
        with pytest.raises(TaskTimeoutError) as info:
            await client.media.wait(task, timeout=0.3)
        with pytest.raises(TaskTimeoutError) as bare:
            await client.media.wait(task.id, timeout=0.1)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.error_type == "task_timeout"
    assert err.task_id == task.id
    assert err.status_code is None
    assert task.id in err.message
    assert "may still finish" in err.message
    assert bare.value.task_id == task.id
    assert emu.counters.requests_by_task[task.id] >= 2


def test_error_hierarchy() -> None:
    for cls in (
        AuthenticationError,
        InsufficientBalanceError,
        InvalidRequestError,
        NotFoundError,
        RateLimitError,
        InternalServerError,
    ):
        assert issubclass(cls, APIStatusError)
    for cls in (APIStatusError, APIConnectionError, APITimeoutError):
        assert issubclass(cls, APIError)
    for cls in (APIError, InvalidInputError, TaskFailedError, TaskTimeoutError):
        assert issubclass(cls, GPTunnelError)
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(APITimeoutError, APIConnectionError)


# -- local validation: nothing is sent ------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model", "kwargs", "needles"),
    [
        ("google-imagen-3", {"ar": "2:1"}, [repr(a) for a in AR_ALL]),
        ("gpt-image-1-high", {"ar": "21:9"}, ["'1:1'", "'16:9'", "'9:16'", "'4:3'", "'3:4'"]),
        ("glabs-veo-3-1-fast", {"ar": "4:3"}, ["'1:1'", "'16:9'", "'9:16'"]),
        ("yandex-art", {"ar": "1:1"}, ["no ar at all"]),
        ("suno", {"ar": "1:1"}, ["no ar at all"]),
        ("seedream-3", {"images": ["https://a/1.png", "https://a/2.png"]}, ["at most 1"]),
        ("glabs-veo-3-1-fast", {"images": ["https://a/1.png", "https://a/2.png"]}, ["at most 1"]),
        ("google-imagen-3", {"images": ["https://a/1.png"]}, ["none"]),
        ("suno", {}, ["limit is 400"]),
    ],
)
async def test_invalid_input_is_refused_locally(
    model: str, kwargs: dict[str, object], needles: list[str]
) -> None:
    prompt = "x" * 401 if model == "suno" and not kwargs else "a valid prompt"
    async with emulated() as (emu, client):
        with pytest.raises(InvalidInputError) as info:
            await client.media.create(model=model, prompt=prompt, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await client.media.generate(model=model, prompt=prompt, timeout=5, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    if "ar" in kwargs or "images" in kwargs:
        assert repr(model) in message
    for needle in needles:
        assert needle in message
    assert info.value.status_code is None
    # Nothing reached the emulator: no request at all, so nothing billed.
    assert emu.counters.api_requests_total == 0
    assert emu.counters.creates_total == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": 42},
        {"prompt": "ok", "ar": 16},
        {"prompt": "ok", "images": "https://a/1.png"},
        {"prompt": "ok", "images": [""]},
    ],
)
async def test_malformed_arguments_are_refused_locally(kwargs: dict[str, object]) -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidInputError):
            await client.media.create(model="gpt-image-1-low", **kwargs)  # type: ignore[arg-type]
    assert emu.counters.api_requests_total == 0


@pytest.mark.anyio
@pytest.mark.parametrize("task_id", ["", "../etc/passwd", "a b", "x" * 129, "id?x=1"])
async def test_malformed_task_ids_are_refused_locally(task_id: str) -> None:
    async with emulated() as (emu, client):
        with pytest.raises(InvalidInputError):
            await client.media.result(task_id)
        with pytest.raises(InvalidInputError):
            await client.media.wait(task_id, timeout=1)
    assert emu.counters.api_requests_total == 0


@pytest.mark.anyio
async def test_unknown_model_is_sent_as_is() -> None:
    async with emulated() as (emu, client):
        # An odd ar and many images: unknown to the SDK, so not its call to refuse.
        with pytest.raises(InvalidRequestError) as info:
            await client.media.create(
                model="brand-new-model-2030",
                prompt="try it",
                ar="7:5",
                images=["https://a/1.png", "https://a/2.png", "https://a/3.png"],
            )
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    assert emu.counters.api_requests_total == 1
    assert info.value.code == 3


@pytest.mark.anyio
async def test_known_model_with_unknown_constraints_is_sent() -> None:
    # seedance-1-pro has no documented ar list or image limit: the SDK checks neither.
    assert MODELS["seedance-1-pro-1080P-5s"].ar is None
    async with emulated() as (emu, client):
        task = await client.media.create(
            model="seedance-1-pro-1080P-5s", prompt="free", ar="1:1", images=["https://a/1.png"]
        )
    assert task.model == "seedance-1-pro-1080P-5s"
    assert emu.counters.creates_total == 1
