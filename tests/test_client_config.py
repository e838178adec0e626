"""Client configuration: key and base URL (arguments and environment), lifecycle."""

from __future__ import annotations

import httpx
import pytest
from client_helpers import KEY, make_client, make_emulator

from gptunnel_async import AsyncGPTunnel, ConfigurationError, GPTunnelError, RetryPolicy
from gptunnel_async.testing import serve


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key_names_the_environment_variable(key: str | None) -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncGPTunnel(key, base_url="http://127.0.0.1:9")
    assert "GPTUNNEL_API_KEY" in str(info.value)
    assert isinstance(info.value, GPTunnelError)
    assert isinstance(info.value, ValueError)


def test_key_with_a_line_break_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        AsyncGPTunnel("abc\r\nX-Evil: 1", base_url="http://127.0.0.1:9")


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        AsyncGPTunnel(KEY, base_url="http://127.0.0.1:9", max_connections=0)


@pytest.mark.anyio
async def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    emu = make_emulator(api_keys={"env-key-123"})
    async with serve(emu) as server:
        monkeypatch.setenv("GPTUNNEL_API_KEY", "env-key-123")
        monkeypatch.setenv("GPTUNNEL_BASE_URL", server.url + "/v1/")
        async with AsyncGPTunnel() as client:
            assert client.base_url == server.url
            task = await client.media.create(model="yandex-art", prompt="from env")
    assert task.status == "idle"
    assert emu.counters.creates_total == 1


@pytest.mark.anyio
async def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTUNNEL_API_KEY", "env-key")
    monkeypatch.setenv("GPTUNNEL_BASE_URL", "http://127.0.0.1:1")
    emu = make_emulator(api_keys={"arg-key"})
    async with serve(emu) as server, AsyncGPTunnel("arg-key", base_url=server.url) as client:
        assert client.base_url == server.url
        await client.media.create(model="yandex-art", prompt="from args")
    assert emu.counters.creates_total == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
        ("http://127.0.0.1:8787/", "http://127.0.0.1:8787"),
        ("http://127.0.0.1:8787/v1", "http://127.0.0.1:8787"),
        ("http://127.0.0.1:8787/v1/", "http://127.0.0.1:8787"),
        ("  http://localhost:8787/v1  ", "http://localhost:8787"),
        ("http://[::1]:8787/v1", "http://[::1]:8787"),
        ("http://emu.localhost/v1", "http://emu.localhost"),
        ("https://localhost/v1", "https://localhost"),
        ("http://127.0.0.1:8787/proxy/v1", "http://127.0.0.1:8787/proxy"),
    ],
)
async def test_base_url_is_normalised(raw: str, expected: str) -> None:
    async with AsyncGPTunnel(KEY, base_url=raw) as client:
        assert client.base_url == expected


@pytest.mark.anyio
async def test_trailing_v1_base_url_reaches_the_emulator() -> None:
    emu = make_emulator()
    async with serve(emu) as server, make_client(server.url + "/v1/") as client:
        await client.media.create(model="yandex-art", prompt="normalised")
    assert emu.counters.requests_by_route["POST /v1/media/create"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        "http://gptunnel.ru",
        "http://example.com/v1",
        "http://10.0.0.1:8787",
        "http://192.168.1.10",
        "http://[2001:db8::1]:80",
        "http://127.0.0.1.example.com",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncGPTunnel(KEY, base_url=raw)
    assert "https" in str(info.value)


@pytest.mark.parametrize("raw", ["gptunnel.ru", "ftp://127.0.0.1", "http://", "/v1", "file:///x"])
def test_malformed_base_url_is_refused(raw: str) -> None:
    with pytest.raises(ConfigurationError):
        AsyncGPTunnel(KEY, base_url=raw)


def test_insecure_base_url_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPTUNNEL_BASE_URL", "http://example.com")
    with pytest.raises(ConfigurationError):
        AsyncGPTunnel(KEY)


@pytest.mark.anyio
async def test_async_with_closes_the_http_client_it_created() -> None:
    emu = make_emulator()
    async with serve(emu) as server, make_client(server) as client:
        await client.media.create(model="yandex-art", prompt="owned")
        http = client.http_client
        assert not http.is_closed
        assert not client.is_closed
    assert http.is_closed
    assert client.is_closed


@pytest.mark.anyio
async def test_async_with_leaves_a_passed_http_client_open() -> None:
    emu = make_emulator()
    async with serve(emu) as server:
        async with httpx.AsyncClient(timeout=5.0) as http:
            async with make_client(server, http_client=http) as client:
                assert client.http_client is http
                await client.media.create(model="yandex-art", prompt="borrowed")
            assert client.is_closed
            assert not http.is_closed
            # The caller's client still works after the SDK client is gone.
            response = await http.get(server.url + "/v1/balance", headers={"Authorization": KEY})
            assert response.status_code == 200
        assert http.is_closed


@pytest.mark.anyio
async def test_a_closed_client_raises() -> None:
    emu = make_emulator()
    async with serve(emu) as server:
        client = make_client(server)
        task = await client.media.create(model="yandex-art", prompt="before close")
        await client.aclose()
        await client.aclose()  # idempotent
        assert client.is_closed
        with pytest.raises(GPTunnelError, match="closed"):
            await client.media.create(model="yandex-art", prompt="after close")
        with pytest.raises(GPTunnelError, match="closed"):
            await client.media.result(task.id)
        with pytest.raises(GPTunnelError, match="closed"):
            await client.media.wait(task.id, timeout=1)
    assert emu.counters.creates_total == 1
    assert emu.counters.api_requests_total == 1


@pytest.mark.anyio
async def test_settings_are_kept() -> None:
    policy = RetryPolicy(max_retries=5)
    async with AsyncGPTunnel(
        KEY, base_url="http://127.0.0.1:9", timeout=3.5, retry_policy=policy, max_connections=3
    ) as client:
        assert client.retry_policy is policy
        assert client.max_connections == 3
        assert client.timeout == httpx.Timeout(3.5)
    async with AsyncGPTunnel(KEY, base_url="http://127.0.0.1:9", max_retries=7) as client:
        assert client.retry_policy.max_retries == 7
