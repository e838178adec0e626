"""Hostile responses: garbage, truncated, wrong-typed, huge and deeply nested bodies.

Whatever a server (or a proxy, or an attacker in the middle) answers, every public call either
returns its typed result or raises a ``GPTunnelError`` subclass: never a raw ``KeyError``,
``TypeError``, ``pydantic.ValidationError``, ``RecursionError`` or ``UnicodeDecodeError``. Bodies
are read under a size cap without being held in memory whole.

The client talks to ``https://api.test`` through an ``httpx.MockTransport``: nothing leaves the
process.
"""

from __future__ import annotations

import contextlib
import json
import math
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptunnel_async import AsyncGPTunnel, GPTunnelError, RetryPolicy
from gptunnel_async._client import MAX_RESPONSE_BYTES
from gptunnel_async._errors import APIResponseValidationError, APIStatusError
from gptunnel_async._polling.policy import AdaptivePolicy
from gptunnel_async._response import body_failure, decode_json, error_from_response, parse_model
from gptunnel_async.types import (
    Balance,
    BGRemoverTask,
    FaceSwapTask,
    GeneratedImage,
    LLMModel,
    MediaTask,
    MidjourneyTask,
    ModelList,
    SunoTrack,
    Usage,
)

KEY = "sk-hostile-responses-0001"
BASE = "https://api.test"
TASK_ID = "65589df803761c00010775ae"
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: What must never escape a public call.
RAW = (KeyError, TypeError, AttributeError, IndexError, RecursionError, UnicodeError)

#: httpx's own stream generators are left to the GC when a read stops early (the size cap);
#: trio reports that as a ResourceWarning (encode/httpx#3686), which is not what is tested here.
IGNORE_HTTPX_AGEN = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

Handler = Callable[[httpx.Request], Any]


def make_client(handler: Handler, *, max_retries: int = 1) -> AsyncGPTunnel:
    return AsyncGPTunnel(
        KEY,
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        retry_policy=RetryPolicy(
            max_retries=max_retries, initial_delay=0.001, max_delay=0.002, retry_after_cap=0.002
        ),
        poll_policy=AdaptivePolicy(clock_scale=10_000.0),
        timeout=2.0,
    )


#: Every public call that reads a response, with the result type it promises.
CALLS: dict[str, tuple[Callable[[AsyncGPTunnel], Awaitable[Any]], Any]] = {
    "media.create": (lambda c: c.media.create(model="google-imagen-3", prompt="a fox"), MediaTask),
    "media.result": (lambda c: c.media.result(TASK_ID), MediaTask),
    "media.wait": (lambda c: c.media.wait(TASK_ID, timeout=0.03), MediaTask),
    "midjourney.imagine": (lambda c: c.midjourney.imagine("a fox"), MidjourneyTask),
    "midjourney.result": (lambda c: c.midjourney.result(TASK_ID), MidjourneyTask),
    "faceswap.result": (lambda c: c.faceswap.result(TASK_ID), FaceSwapTask),
    "bgremover.result": (lambda c: c.bgremover.result(TASK_ID), BGRemoverTask),
    "balance": (lambda c: c.balance(), Balance),
    "models": (lambda c: c.models(), list),
}


def touch(result: Any) -> None:
    """Read every derived property: a parsed model must not crash later either."""
    items = result if isinstance(result, list) else [result]
    for item in items:
        repr(item)
        for name in (
            "state", "is_done", "is_failed", "is_finished", "failure_reason", "urls", "url",
            "expires_at", "cost", "preview_url", "can_upsample", "can_vary", "variation_modes",
            "can_outpaint", "can_upscale", "can_pan", "can_reroll", "can_inpaint",
            "canonical_actions", "available", "model",
        ):  # fmt: skip
            getattr(item, name, None)
        allows = getattr(item, "allows", None)
        if allows is not None:
            allows("upsample")
            allows("upsamle_2")


async def call_all(handler: Handler, *, max_retries: int = 1) -> dict[str, Any]:
    """Run every public call against ``handler``; returns each outcome (value or error)."""
    outcomes: dict[str, Any] = {}
    async with make_client(handler, max_retries=max_retries) as client:
        for name, (call, expected) in CALLS.items():
            try:
                result = await call(client)
            except GPTunnelError as exc:
                str(exc)
                repr(exc)
                outcomes[name] = exc
            except BaseException as exc:  # pragma: no cover - the failure being tested for
                raise AssertionError(f"{name} raised a raw {type(exc).__name__}: {exc!r}") from exc
            else:
                assert isinstance(result, expected), (name, result)
                touch(result)
                outcomes[name] = result
    return outcomes


def fixed(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=dict(headers or {}))

    return handler


# -- strategies -------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["done", "failed", "idle", "processing", "", "1e999", "NaN", "-1", "50%"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KNOWN_KEYS = [
    "id", "code", "status", "url", "result", "error", "message", "issues", "created_at",
    "percent", "actions", "usage", "type", "parentId", "input", "model", "balance",
    "creditLimit", "orgId", "data", "object", "created", "cost", "title", "max_capacity",
]  # fmt: skip
#: Dicts that look like the real thing, with any type in any known field.
shaped = st.fixed_dictionaries(
    {}, optional={k: json_values | st.just(TASK_ID) for k in KNOWN_KEYS}
) | st.fixed_dictionaries(
    {"id": st.just(TASK_ID)},
    optional={k: json_values for k in KNOWN_KEYS if k != "id"},
)
documents = shaped | json_values | st.builds(lambda d: {"data": [d]}, shaped)


def encode(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """JSON (possibly truncated or with trailing commas), raw bytes, or text in odd encodings."""
    kind = draw(st.sampled_from(["json", "truncated", "bytes", "text", "utf16", "comma"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    raw = encode(draw(documents))
    if kind == "truncated":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if kind == "utf16":
        return raw.decode().encode("utf-16")
    if kind == "comma":
        return raw.replace(b"}", b",}").replace(b"]", b",]")
    return raw


statuses = st.sampled_from(
    [200, 201, 202, 204, 206, 299, 301, 302, 304, 400, 401, 402, 403, 404, 408, 409, 410, 418,
     422, 425, 429, 451, 500, 502, 503, 504, 599]
) | st.integers(min_value=100, max_value=599)  # fmt: skip
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/html",
        "text/plain; charset=utf-16",
        "application/octet-stream",
        "application/xml",
        "",
        "\x7f; garbage",
    ]
)
extra_headers = st.dictionaries(
    st.sampled_from(["retry-after", "retry-after-ms", "x-request-id", "content-language"]),
    st.sampled_from(
        [
            "1",
            "-5",
            "0.001",
            "1e308",
            "inf",
            "nan",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "soon",
            "",
        ]
    ),
    max_size=2,
)


# -- the pure parsers -------------------------------------------------------------------------

MODELS_UNDER_TEST: list[type[pydantic.BaseModel]] = [
    MediaTask,
    MidjourneyTask,
    FaceSwapTask,
    BGRemoverTask,
    Balance,
    LLMModel,
    ModelList,
    GeneratedImage,
    SunoTrack,
    Usage,
]


@pytest.mark.parametrize("model", MODELS_UNDER_TEST, ids=lambda m: m.__name__)
@FAST
@given(doc=documents)
def test_parse_model_gives_a_model_or_a_typed_error(
    model: type[pydantic.BaseModel], doc: Any
) -> None:
    try:
        parsed = parse_model(model, doc, method="GET", path="/v1/x")
    except APIResponseValidationError as exc:
        message = str(exc)
    else:
        assert isinstance(parsed, model)
        touch(parsed)
        return
    assert "unexpected response shape" in message


@FAST
@given(raw=bodies() | st.binary(max_size=300))
def test_decode_json_returns_a_value_or_raises_value_error(raw: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_json(raw)


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_decode_json_on_deep_nesting_raises_value_error_not_recursion_error(
    opener: bytes, depth: int
) -> None:
    with pytest.raises(ValueError, match="JSON") as info:
        decode_json(opener * depth)
    assert not isinstance(info.value, RecursionError)
    closer = b"]" if opener == b"[" else b"}"
    with pytest.raises(ValueError, match="JSON"):
        decode_json(opener * depth + closer * depth)


@FAST
@given(status=statuses, raw=bodies(), headers=extra_headers, task=st.none() | st.just(TASK_ID))
def test_error_from_response_always_builds_a_bounded_typed_error(
    status: int, raw: bytes, headers: dict[str, str], task: str | None
) -> None:
    error = error_from_response(
        status_code=status,
        headers=headers,
        content=raw,
        method="GET",
        path="/v1/media/result",
        task_id=task,
        secret=KEY,
    )
    assert isinstance(error, APIStatusError)
    assert error.status_code == status
    assert error.task_id == task
    text = str(error)
    assert text.startswith(f"GET /v1/media/result → HTTP {status}")
    assert len(text) < 2_000  # a huge body is summarised, not pasted
    retry_after = getattr(error, "retry_after", None)
    assert retry_after is None or (math.isfinite(retry_after) and retry_after >= 0)


@FAST
@given(doc=documents)
def test_body_failure_is_a_plain_bool(doc: Any) -> None:
    assert body_failure(doc) in (True, False)


def test_error_from_response_on_a_100k_deep_body() -> None:
    error = error_from_response(
        status_code=500,
        headers={},
        content=b'{"error": {"message": ' + b"[" * 100_000,
        method="GET",
        path="/v1/balance",
    )
    assert error.status_code == 500
    assert len(str(error)) < 2_000


# -- every public call ------------------------------------------------------------------------


@FAST
@given(
    status=statuses,
    raw=bodies(),
    content_type=content_types,
    headers=extra_headers,
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_every_public_call_returns_its_type_or_raises_a_typed_error(
    status: int, raw: bytes, content_type: str, headers: dict[str, str], backend: str
) -> None:
    all_headers = {**headers, "content-type": content_type}
    anyio.run(call_all, fixed(status, raw, all_headers), backend=backend)


@FAST
@given(doc=documents, backend=st.sampled_from(["asyncio", "trio"]))
def test_wrong_typed_fields_under_200_never_escape_raw(doc: Any, backend: str) -> None:
    outcomes = anyio.run(call_all, fixed(200, encode(doc)), backend=backend)
    for outcome in outcomes.values():
        assert not isinstance(outcome, RAW)


@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"id": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"error": {"message": ' + b"{}" * 10 + b"[" * 100_000,
    ],
    ids=["open", "closed-in-a-field", "in-the-error"],
)
@pytest.mark.anyio
async def test_deeply_nested_json_is_a_typed_error_not_a_recursion_error(
    status: int, body: bytes
) -> None:
    outcomes = await call_all(fixed(status, body), max_retries=0)
    for name, outcome in outcomes.items():
        if name == "media.wait" and status == 500:
            assert isinstance(outcome, GPTunnelError)  # polled through, then timed out
            continue
        assert isinstance(outcome, GPTunnelError), (name, outcome)


@pytest.mark.anyio
async def test_nesting_just_under_the_stack_limit_parses_or_fails_typed() -> None:
    """Valid JSON nested ~900 deep in an unknown field: kept or refused, never a crash."""
    depth = 900
    body = b'{"id": "%s", "status": "idle", "extra": ' % TASK_ID.encode()
    body += b"[" * depth + b"]" * depth + b"}"
    await call_all(fixed(200, body))


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (502, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (200, b"", "application/json"),
        (204, b"", ""),
        (200, b"\xff\xfe\xfa\x00\x01", "application/json"),
        (200, '{"id": "é"}'.encode("latin-1"), "application/json; charset=latin-1"),
        (200, b'{"id": null}', "application/json"),
        (200, b'{"id": 5, "status": {"x": 1}, "percent": "lots"}', "application/json"),
        (200, b"NaN", "application/json"),
        (200, b'"a string"', "application/json"),
        (200, b'{"code": 3, "issues": "not a list"}', "application/json"),
        (200, b'{"code": 1e400}', "application/json"),
        (200, b'{"error": {"message": {"nested": 1}, "type": ["x"]}}', "application/json"),
        (400, b'{"issues": [{"path": {"a": 1}, "message": [1], "expected": {}}]}', ""),
        (429, b"slow down", "text/plain"),
        (304, b"", ""),
        (101, b"", ""),
        (599, b"\x00" * 1000, "application/octet-stream"),
    ],
)
@pytest.mark.anyio
async def test_odd_bodies_and_statuses(status: int, body: bytes, content_type: str) -> None:
    await call_all(fixed(status, body, {"content-type": content_type}))


@pytest.mark.anyio
async def test_a_garbage_200_is_a_response_validation_error_naming_the_content_type() -> None:
    async with make_client(fixed(200, b"<html>", {"content-type": "text/html"})) as client:
        with pytest.raises(APIResponseValidationError, match="not JSON") as info:
            await client.media.create(model="google-imagen-3", prompt="a fox")
    assert "text/html" in str(info.value)
    assert info.value.may_have_been_created  # the create did reach the server


# -- memory stays bounded ---------------------------------------------------------------------

HUGE = 100 * 1024 * 1024
CHUNK = 64 * 1024


class Streamed:
    """A ``HUGE`` body streamed in ``CHUNK`` pieces of one shared buffer (so the server side
    allocates nothing); counts what the client pulled."""

    def __init__(self, declare_length: bool) -> None:
        self.declare_length = declare_length
        self.pulled = 0
        self._piece = b"[" + b"1," * (CHUNK // 2 - 1) + b"1"

    async def chunks(self) -> AsyncIterator[bytes]:
        while self.pulled < HUGE:
            self.pulled += len(self._piece)
            yield self._piece

    def handler(self, request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if self.declare_length:
            headers["content-length"] = str(HUGE)
        return httpx.Response(200, headers=headers, content=self.chunks())


@IGNORE_HTTPX_AGEN
@pytest.mark.parametrize("declare_length", [False, True], ids=["chunked", "content-length"])
@pytest.mark.anyio
async def test_a_100mb_body_is_refused_without_being_held_in_memory(declare_length: bool) -> None:
    body = Streamed(declare_length)
    async with make_client(body.handler, max_retries=0) as client:
        tracemalloc.start()
        try:
            with pytest.raises(APIResponseValidationError, match="limit"):
                await client.media.result(TASK_ID)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert body.pulled <= MAX_RESPONSE_BYTES + CHUNK  # stopped reading at the cap
    if declare_length:
        assert body.pulled == 0  # refused from the header alone
    assert peak < 2 * MAX_RESPONSE_BYTES, f"peak {peak / 1e6:.1f} MB"


def gzip_bomb_chunks(size: int = HUGE) -> list[bytes]:
    """``size`` zero bytes, gzip-compressed, cut into socket-sized 64 KiB pieces."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1024 * 1024)
    data = b"".join(compressor.compress(block) for _ in range(size // len(block)))
    data += compressor.flush()
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


@IGNORE_HTTPX_AGEN
@pytest.mark.anyio
async def test_a_gzip_bomb_is_refused_within_the_memory_cap() -> None:
    pieces = gzip_bomb_chunks()

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=stream())

    async with make_client(handler, max_retries=0) as client:
        tracemalloc.start()
        try:
            with pytest.raises(APIResponseValidationError, match="limit"):
                await client.media.result(TASK_ID)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2 * MAX_RESPONSE_BYTES, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.anyio
async def test_a_body_that_does_not_match_its_content_encoding_is_a_typed_error() -> None:
    handler = fixed(200, b"this is not gzip", {"content-encoding": "gzip"})
    async with make_client(handler, max_retries=0) as client:
        with pytest.raises(GPTunnelError):
            await client.media.result(TASK_ID)
