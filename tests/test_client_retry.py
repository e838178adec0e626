"""Never pay twice: what is retried, what is not, and how long the client waits first."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from client_helpers import (
    CREATE_ROUTE,
    RESULT_ROUTE,
    closed_port,
    emulated,
    fast_retry,
    make_client,
    make_emulator,
)

from gptunnel_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
)
from gptunnel_async._retry import (
    RETRYABLE_STATUSES,
    RequestKind,
    create_may_exist,
    decide_on_exception,
    decide_on_status,
    parse_retry_after,
)
from gptunnel_async.testing import serve
from gptunnel_async.testing._http import Request, Response, json_response

NOT_RESENT = "NOT re-sent"


def _assert_says_it_may_exist(err: APIConnectionError | APIStatusError) -> None:
    assert err.may_have_been_created is True
    text = str(err)
    assert "may exist" in text
    assert NOT_RESENT in text
    assert "billed" in text


# -- a create whose fate is unknown is never re-sent ----------------------------------------


@pytest.mark.anyio
async def test_create_whose_response_is_lost_is_not_resent() -> None:
    prompt = "lost response"
    async with emulated() as (emu, client):
        # Warm the keep-alive pool first: the drop then hits a reused connection.
        await client.media.create(model="yandex-art", prompt="warm-up")
        emu.faults.script(CREATE_ROUTE, ["drop_after"])
        with pytest.raises(APIConnectionError) as info:
            await client.media.create(model="yandex-art", prompt=prompt)
        await anyio.sleep(0.05)  # anything re-sent in the background would land by now
        # The client still works afterwards.
        later = await client.media.create(model="yandex-art", prompt="after")
    err = info.value
    assert not isinstance(err, APITimeoutError)
    _assert_says_it_may_exist(err)
    assert err.method == "POST"
    assert err.path == "/v1/media/create"
    assert err.status_code is None
    # The server did create (and bill) it once; the client did not send it again.
    assert emu.counters.creates_by_prompt[prompt] == 1
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 3
    assert emu.counters.drops == 1
    assert later.status == "idle"


@pytest.mark.anyio
async def test_create_on_a_fresh_connection_that_drops_is_not_resent() -> None:
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, ["drop_after"])
        with pytest.raises(APIConnectionError) as info:
            await client.media.create(model="flux-dev", prompt="fresh drop")
    _assert_says_it_may_exist(info.value)
    assert emu.counters.creates_by_prompt["fresh drop"] == 1
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1


@pytest.mark.anyio
async def test_create_dropped_before_processing_is_not_resent_either() -> None:
    # The client cannot tell "dropped before" from "dropped after": it must not re-send.
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, ["drop"])
        with pytest.raises(APIConnectionError) as info:
            await client.media.create(model="flux-dev", prompt="dropped early")
    _assert_says_it_may_exist(info.value)
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    assert emu.counters.creates_total == 0


@pytest.mark.anyio
async def test_create_read_timeout_is_not_resent() -> None:
    prompt = "slow create"
    async with emulated(timeout=0.2) as (emu, client):
        emu.faults.script(CREATE_ROUTE, [("delay", 2.0)])
        with pytest.raises(APITimeoutError) as info:
            await client.media.create(model="yandex-art", prompt=prompt)
    err = info.value
    _assert_says_it_may_exist(err)
    assert "ReadTimeout" in err.message
    assert emu.counters.creates_by_prompt[prompt] == 1
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_create_5xx_is_not_resent(status: int) -> None:
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, [status])
        with pytest.raises(InternalServerError) as info:
            await client.media.create(model="yandex-art", prompt="5xx create")
    err = info.value
    assert err.status_code == status
    _assert_says_it_may_exist(err)
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [303, 408, 409])
async def test_create_303_408_409_may_exist_and_are_not_resent(status: int) -> None:
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, [status])
        with pytest.raises(APIStatusError) as info:
            await client.media.create(model="yandex-art", prompt="4xx create")
    assert info.value.status_code == status
    _assert_says_it_may_exist(info.value)
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_create_redirected_was_not_processed_and_is_not_followed(status: int) -> None:
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, [(status, {"Location": "https://elsewhere.example/"})])
        with pytest.raises(APIStatusError) as info:
            await client.media.create(model="yandex-art", prompt="redirected create")
    assert info.value.status_code == status
    assert info.value.may_have_been_created is False
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1


@pytest.mark.anyio
async def test_create_425_was_not_processed_and_is_retried() -> None:
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, [425])
        task = await client.media.create(model="yandex-art", prompt="too early")
    assert task.id
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 2
    assert emu.counters.creates_by_prompt["too early"] == 1


@pytest.mark.anyio
async def test_create_meeting_429_is_retried_after_retry_after() -> None:
    prompt = "rate limited create"
    async with emulated() as (emu, client):
        emu.faults.script(CREATE_ROUTE, [(429, {"Retry-After": "0.3"})])
        started = anyio.current_time()
        task = await client.media.create(model="yandex-art", prompt=prompt)
        elapsed = anyio.current_time() - started
    assert task.status == "idle"
    assert elapsed >= 0.3
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 2
    assert emu.counters.creates_by_prompt[prompt] == 1
    assert emu.counters.creates_total == 1
    assert emu.counters.retry_after_violations == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        Response(200, b"<html>502 Bad Gateway</html>", [("content-type", "text/html")]),
        json_response({"code": 0, "status": "idle"}),
    ],
    ids=["not-json", "no-id"],
)
async def test_create_with_an_unreadable_200_may_have_been_created(answer: Response) -> None:
    emu = make_emulator()
    calls: list[str] = []

    async def handle(request: Request) -> Response:
        calls.append(request.path)
        return answer

    emu.handle = handle  # type: ignore[method-assign]
    async with serve(emu) as server, make_client(server) as client:
        with pytest.raises(APIResponseValidationError) as info:
            await client.media.create(model="yandex-art", prompt="odd 200")
    assert calls == ["/v1/media/create"]
    assert info.value.may_have_been_created is True
    assert NOT_RESENT in str(info.value)


class RefuseFirst(httpx.AsyncBaseTransport):
    """Sends the first ``refusals`` requests to a closed loopback port (a real refusal)."""

    def __init__(self, refusals: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refusals = refusals
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.refusals > 0:
            self.refusals -= 1
            request = httpx.Request(
                request.method,
                request.url.copy_with(port=closed_port()),
                headers=request.headers,
                content=request.content,
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_create_meeting_connection_refused_is_retried() -> None:
    prompt = "refused then fine"
    transport = RefuseFirst(2)
    emu = make_emulator()
    async with serve(emu) as server, make_client(server, transport=transport) as client:
        task = await client.media.create(model="yandex-art", prompt=prompt)
    assert task.status == "idle"
    assert transport.attempts == 3
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 1
    assert emu.counters.creates_by_prompt[prompt] == 1


@pytest.mark.anyio
async def test_create_refused_beyond_retries_says_nothing_was_created() -> None:
    transport = RefuseFirst(5)
    emu = make_emulator()
    async with (
        serve(emu) as server,
        make_client(server, transport=transport, retry_policy=fast_retry(2)) as client,
    ):
        with pytest.raises(APIConnectionError) as info:
            await client.media.create(model="yandex-art", prompt="never arrives")
    assert transport.attempts == 3
    assert info.value.may_have_been_created is False
    assert emu.counters.api_requests_total == 0


# -- reads are retried -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_result_poll_through_503s_and_a_429_waits_retry_after() -> None:
    async with emulated(retry_policy=fast_retry(3)) as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="patient")
        emu.faults.script(RESULT_ROUTE, [503, 503, (429, {"Retry-After": "1"})])
        started = anyio.current_time()
        current = await client.media.result(task.id)
        elapsed = anyio.current_time() - started
    assert current.id == task.id
    assert elapsed >= 1.0
    assert elapsed < 3.0
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 4
    assert emu.counters.responses_by_status[503] == 2
    assert emu.counters.responses_by_status[429] == 1
    assert emu.counters.retry_after_violations == 0


@pytest.mark.anyio
async def test_result_honours_retry_after_ms() -> None:
    async with emulated() as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="ms")
        emu.faults.script(RESULT_ROUTE, [(429, {"retry-after-ms": "400", "Retry-After": "0"})])
        started = anyio.current_time()
        await client.media.result(task.id)
        elapsed = anyio.current_time() - started
    assert elapsed >= 0.4
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 2
    assert emu.counters.retry_after_violations == 0


@pytest.mark.anyio
async def test_wait_honours_retry_after_of_a_burst() -> None:
    async with emulated() as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="burst")
        emu.faults.burst_429(0.3, retry_after=0.3)
        done = await client.media.wait(task, timeout=10)
    assert done.is_done
    assert emu.counters.responses_by_status[429] >= 1
    assert emu.counters.retry_after_violations == 0


@pytest.mark.anyio
async def test_retry_after_is_capped_by_the_policy() -> None:
    policy = RetryPolicy(max_retries=1, initial_delay=0.0, max_delay=0.0, retry_after_cap=0.05)
    async with emulated(retry_policy=policy) as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="cap")
        emu.faults.script(RESULT_ROUTE, [(429, {"Retry-After": "30"})])
        with anyio.fail_after(5):
            await client.media.result(task.id)
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("outcome", ["drop", "drop_after", 500, 502, 503, 504, 408, 425])
async def test_result_is_retried_on_transient_failures(outcome: str | int) -> None:
    async with emulated() as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="read retry")
        emu.faults.script(RESULT_ROUTE, [outcome, outcome])
        current = await client.media.result(task.id)
    assert current.id == task.id
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 3


@pytest.mark.anyio
async def test_result_read_timeout_is_retried() -> None:
    async with emulated(timeout=0.2) as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="slow read")
        emu.faults.script(RESULT_ROUTE, [("delay", 2.0)])
        current = await client.media.result(task.id)
    assert current.id == task.id
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 2


@pytest.mark.anyio
async def test_max_retries_zero_sends_once() -> None:
    async with emulated(max_retries=0, retry_policy=None) as (emu, client):
        task = await client.media.create(model="yandex-art", prompt="once")
        emu.faults.script(RESULT_ROUTE, [503])
        with pytest.raises(InternalServerError):
            await client.media.result(task.id)
        emu.faults.script(CREATE_ROUTE, [(429, {"Retry-After": "0"})])
        with pytest.raises(RateLimitError):
            await client.media.create(model="yandex-art", prompt="once more")
    assert emu.counters.requests_by_route[RESULT_ROUTE] == 1
    assert emu.counters.requests_by_route[CREATE_ROUTE] == 2


# -- pure rules ------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after": "120"}, 120.0),
        ({"RETRY-AFTER": " 2 "}, 2.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": email.utils.formatdate(NOW + 10, usegmt=True)}, 10.0),
        ({"Retry-After": "Tuesday, 14-Nov-23 22:14:50 GMT"}, 90.0),
        ({"Retry-After": email.utils.formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "1500.5"}, 1.5005),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),
        ({"retry-after-ms": "-5", "Retry-After": "4"}, 4.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": ""}, None),
        ({}, None),
        ({"Content-Type": "application/json"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    value = parse_retry_after(headers, now=NOW)
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected)


@pytest.fixture
def tokyo_time() -> Iterator[None]:
    """Run with the process's local time zone at UTC+9 (restored afterwards)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_parse_retry_after_gmt_date_is_independent_of_local_zone(tokyo_time: None) -> None:
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=NOW) == pytest.approx(90.0)


@pytest.mark.parametrize(
    "date",
    ["Tue Nov 14 22:14:50 2023", "Tue, 14 Nov 2023 22:14:50 -0000"],
    ids=["asctime", "minus-0000"],
)
def test_parse_retry_after_zoneless_dates_are_gmt(tokyo_time: None, date: str) -> None:
    assert email.utils.formatdate(NOW + 90, usegmt=True) == "Tue, 14 Nov 2023 22:14:50 GMT"
    assert parse_retry_after({"Retry-After": date}, now=NOW) == pytest.approx(90.0)


def test_parse_retry_after_accepts_httpx_headers_and_real_clock() -> None:
    headers = httpx.Headers({"Retry-After": "3"})
    assert parse_retry_after(headers) == 3.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after(httpx.Headers({"retry-after": date}))
    assert value is not None
    assert 28.0 <= value <= 30.0


REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/media/create")
NEVER_SENT = [
    httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST),
    httpx.ConnectTimeout("timed out", request=REQUEST),
    httpx.PoolTimeout("no free connection", request=REQUEST),
]
MAYBE_SENT = [
    httpx.ReadTimeout("timed out", request=REQUEST),
    httpx.WriteTimeout("timed out", request=REQUEST),
    httpx.RemoteProtocolError("Server disconnected", request=REQUEST),
    httpx.ReadError("connection reset", request=REQUEST),
    httpx.WriteError("broken pipe", request=REQUEST),
]


@pytest.mark.parametrize("kind", list(RequestKind))
@pytest.mark.parametrize("exc", NEVER_SENT, ids=lambda e: type(e).__name__)
def test_unsent_requests_are_retried_even_for_create(kind: RequestKind, exc: Exception) -> None:
    decision = decide_on_exception(kind, exc)
    assert decision.retry is True
    assert decision.may_have_been_created is False
    assert type(exc).__name__ in decision.reason


@pytest.mark.parametrize("exc", MAYBE_SENT, ids=lambda e: type(e).__name__)
def test_maybe_sent_create_is_not_retried(exc: Exception) -> None:
    decision = decide_on_exception(RequestKind.CREATE, exc)
    assert decision.retry is False
    assert decision.may_have_been_created is True
    assert type(exc).__name__ in decision.reason


@pytest.mark.parametrize("exc", MAYBE_SENT, ids=lambda e: type(e).__name__)
def test_maybe_sent_read_is_retried(exc: Exception) -> None:
    decision = decide_on_exception(RequestKind.READ, exc)
    assert decision.retry is True
    assert decision.may_have_been_created is False


@pytest.mark.parametrize("kind", list(RequestKind))
def test_non_transport_errors_are_not_retried(kind: RequestKind) -> None:
    decision = decide_on_exception(kind, ValueError("bug"))
    assert decision.retry is False
    assert decision.may_have_been_created is False


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_reads_retry_every_retryable_status(status: int) -> None:
    decision = decide_on_status(RequestKind.READ, status)
    assert decision.retry is True
    assert decision.may_have_been_created is False
    assert str(status) in decision.reason


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_creates_retry_only_429_and_425(status: int) -> None:
    decision = decide_on_status(RequestKind.CREATE, status)
    assert decision.retry is (status in (425, 429))
    assert decision.may_have_been_created is (status >= 500 or status in (408, 409))


@pytest.mark.parametrize(
    ("status", "may_exist"),
    [(301, False), (302, False), (303, True), (304, True), (307, False), (308, False),
     (400, False), (402, False), (404, False), (408, True), (409, True), (422, False),
     (425, False), (429, False), (500, True), (504, True)],
)  # fmt: skip
def test_which_answers_to_a_create_may_follow_a_created_task(status: int, may_exist: bool) -> None:
    assert create_may_exist(status) is may_exist
    assert decide_on_status(RequestKind.CREATE, status).may_have_been_created is may_exist


@pytest.mark.parametrize("kind", list(RequestKind))
@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 422, 501])
def test_final_statuses_are_not_retried(kind: RequestKind, status: int) -> None:
    decision = decide_on_status(kind, status)
    assert decision.retry is False


def test_retryable_statuses() -> None:
    assert frozenset({408, 409, 425, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0, jitter=False)
    delays = policy.delays()
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 50)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    jittered = RetryPolicy(initial_delay=0.5, max_delay=4.0)
    gen = jittered.delays()
    for cap in (0.5, 1.0, 2.0, 4.0, 4.0):
        assert 0.0 <= next(gen) <= cap
    assert policy.delay_for(None, 0.7) == 0.7
    assert policy.delay_for(3.0, 0.7) == 3.0
    assert policy.delay_for(-1.0, 0.7) == 0.0
    assert policy.delay_for(1e9, 0.7) == policy.retry_after_cap


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"initial_delay": -0.1},
        {"initial_delay": 5.0, "max_delay": 1.0},
        {"retry_after_cap": -1.0},
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
