"""The API key goes to the server as-is and nowhere else: not in logs, reprs or errors."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from client_helpers import CREATE_ROUTE, RESULT_ROUTE, closed_port, make_client, make_emulator

import gptunnel_async
from gptunnel_async import (
    APIConnectionError,
    AsyncGPTunnel,
    AuthenticationError,
    GPTunnelError,
    InvalidRequestError,
)
from gptunnel_async.testing import Emulator, EmulatorTransport, serve
from gptunnel_async.testing._http import Request, Response, error_response

SECRET = "sk-SECRET-abc123XYZ"


def _texts_of_error(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), *(repr(a) for a in exc.args), *(str(a) for a in exc.args)]
    if exc.__cause__ is not None:
        texts += [str(exc.__cause__), repr(exc.__cause__)]
    return texts


def _assert_clean(texts: list[str]) -> None:
    for text in texts:
        assert SECRET not in text


def _record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts: list[str] = []
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(str(record.msg))
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts += _texts_of_error(record.exc_info[1])
    texts.append(caplog.text)
    return texts


def _capture_headers(emu: Emulator) -> list[dict[str, str]]:
    """Record the headers of every request the emulator receives (server side)."""
    seen: list[dict[str, str]] = []
    original = emu.handle

    async def handle(request: Request) -> Any:
        seen.append(dict(request.headers))
        return await original(request)

    emu.handle = handle  # type: ignore[method-assign]
    return seen


@pytest.mark.anyio
async def test_the_key_is_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    emu = make_emulator(api_keys={SECRET})
    errors: list[BaseException] = []
    async with serve(emu) as server:
        async with make_client(server, SECRET, timeout=0.3) as client:
            _assert_clean([repr(client), str(client), repr(vars(client).get("base_url"))])
            # A normal create and wait, through retried 503s and a 429.
            task = await client.media.create(model="yandex-art", prompt="secret-free")
            emu.faults.script(RESULT_ROUTE, [503, (429, {"Retry-After": "0.01"}), "drop"])
            done = await client.media.wait(task, timeout=10)
            assert done.is_done
            # Errors of several kinds.
            emu.faults.script(CREATE_ROUTE, ["drop_after", 503, ("delay", 2.0)])
            for _ in range(3):
                with pytest.raises(GPTunnelError) as info:
                    await client.media.create(model="yandex-art", prompt="lost")
                errors.append(info.value)
            with pytest.raises(GPTunnelError) as info:
                await client.media.create(model="nope-model", prompt="invalid")
            errors.append(info.value)
            with pytest.raises(GPTunnelError) as info:
                await client.media.result("0123456789abcdef01234567")
            errors.append(info.value)
            with pytest.raises(GPTunnelError) as info:
                await client.media.create(model="yandex-art", prompt="x", ar="1:1")
            errors.append(info.value)
            _assert_clean([repr(client), str(client)])
        async with make_client(server, "wrong-" + SECRET) as wrong:
            with pytest.raises(AuthenticationError) as info:
                await wrong.media.create(model="yandex-art", prompt="nope")
            errors.append(info.value)
            _assert_clean([repr(wrong), str(wrong)])
    async with make_client(f"http://127.0.0.1:{closed_port()}", SECRET) as refused:
        with pytest.raises(APIConnectionError) as info:
            await refused.media.result("0123456789abcdef01234567")
        errors.append(info.value)
    assert len(errors) == 8
    assert {type(e).__name__ for e in errors} >= {
        "APIConnectionError",
        "APITimeoutError",
        "InternalServerError",
        "InvalidRequestError",
        "NotFoundError",
        "InvalidInputError",
        "AuthenticationError",
    }
    for err in errors:
        _assert_clean(_texts_of_error(err))
    assert any(r.name.startswith("gptunnel_async") for r in caplog.records)
    assert any("retrying" in r.getMessage() for r in caplog.records)
    _assert_clean(_record_texts(caplog))


@pytest.mark.anyio
async def test_the_raw_key_and_user_agent_are_sent() -> None:
    emu = make_emulator(api_keys={SECRET})
    server_seen = _capture_headers(emu)
    client_seen: list[httpx.Headers] = []

    async def hook(request: httpx.Request) -> None:
        client_seen.append(request.headers)

    async with (
        serve(emu) as server,
        httpx.AsyncClient(event_hooks={"request": [hook]}) as http,
        make_client(server, SECRET, http_client=http) as client,
    ):
        task = await client.media.create(model="yandex-art", prompt="headers")
        await client.media.result(task.id)
    assert len(client_seen) == 2
    assert len(server_seen) == 2
    for headers in [*client_seen, *server_seen]:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert lowered["authorization"] == SECRET
        assert "bearer" not in lowered["authorization"].lower()
        ua = lowered["user-agent"]
        assert f"gptunnel-async/{gptunnel_async.__version__}" in ua
        assert "python/" in ua
        assert "httpx/" in ua
        assert lowered["accept"] == "application/json"


@pytest.mark.anyio
async def test_headers_via_in_process_transport() -> None:
    emu = make_emulator(api_keys={SECRET})
    seen = _capture_headers(emu)
    async with AsyncGPTunnel(
        SECRET, base_url="http://emulator.localhost", transport=EmulatorTransport(emu)
    ) as client:
        await client.media.create(model="yandex-art", prompt="in process")
    assert seen[0]["authorization"] == SECRET
    assert seen[0]["user-agent"].startswith("gptunnel-async/")


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 500])
async def test_a_server_echoing_the_key_is_redacted(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    emu = make_emulator()

    async def echo(request: Request) -> Response:
        key = request.headers.get("authorization", "")
        return error_response(status, f"API key '{key}' is not valid for {key[:3]}…")

    emu.handle = echo  # type: ignore[method-assign]
    async with (
        serve(emu) as server,
        make_client(server, SECRET, max_retries=0, retry_policy=None) as client,
    ):
        with pytest.raises(GPTunnelError) as info:
            await client.media.create(model="yandex-art", prompt="echo")
    err = info.value
    assert err.status_code == status
    assert "<redacted>" in err.message
    assert "is not valid" in err.message
    _assert_clean(_texts_of_error(err))
    _assert_clean(_record_texts(caplog))


@pytest.mark.anyio
async def test_an_echoed_key_in_code_3_issues_is_redacted_from_the_message() -> None:
    emu = make_emulator()

    async def echo(request: Request) -> Response:
        from gptunnel_async.testing._http import issue, validation_error

        key = request.headers.get("authorization", "")
        return validation_error([issue("model", "string", f"bad key {key}")])

    emu.handle = echo  # type: ignore[method-assign]
    async with serve(emu) as server, make_client(server, SECRET) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.media.create(model="yandex-art", prompt="echo issues")
    _assert_clean(_texts_of_error(info.value))
    assert "<redacted>" in str(info.value)


@pytest.mark.anyio
async def test_an_echoed_key_is_not_kept_in_the_error_body() -> None:
    emu = make_emulator()

    async def echo(request: Request) -> Response:
        return error_response(401, f"API key '{request.headers.get('authorization')}' invalid")

    emu.handle = echo  # type: ignore[method-assign]
    async with serve(emu) as server, make_client(server, SECRET) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.media.create(model="yandex-art", prompt="echo body")
    assert SECRET not in repr(info.value.body)


def test_logger_filter_redacts_a_registered_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gptunnel_async")
    client = AsyncGPTunnel(SECRET, base_url="http://127.0.0.1:9")
    try:
        logger = logging.getLogger("gptunnel_async")
        logger.debug("user code logged %s and %r", SECRET, {"k": SECRET})
        logger.info(f"inline {SECRET}")
    finally:
        import anyio

        anyio.run(client.aclose)
    _assert_clean(_record_texts(caplog))
    assert caplog.text.count("<redacted>") == 3


def test_repr_hides_the_key() -> None:
    import anyio

    client = AsyncGPTunnel(SECRET, base_url="http://127.0.0.1:9")
    try:
        assert SECRET not in repr(client)
        assert SECRET not in str(client)
        assert "<redacted>" in repr(client)
        assert "127.0.0.1:9" in repr(client)
    finally:
        anyio.run(client.aclose)
