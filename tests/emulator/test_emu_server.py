"""The socket server: loopback only, keep-alive, concurrency, thread runner, command line."""

from __future__ import annotations

import os
import sys

import anyio
import httpx
import pytest

from gptunnel_async.testing import (
    Emulator,
    EmulatorProcess,
    EmulatorServer,
    run_in_thread,
    serve,
)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "", "::"])
def test_refuses_non_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"), run_in_thread(Emulator(), host=host):
        pass


@pytest.mark.anyio
async def test_serve_refuses_non_loopback(anyio_backend: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        async with serve(Emulator(), host="0.0.0.0"):
            pass


@pytest.mark.anyio
async def test_many_concurrent_keepalive_connections(server: EmulatorServer) -> None:
    limits = httpx.Limits(max_connections=16)
    headers = {"Authorization": "k"}
    async with httpx.AsyncClient(base_url=server.url, limits=limits, headers=headers) as c:

        async def worker() -> None:
            for _ in range(15):
                assert (await c.get("/v1/balance")).status_code == 200

        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(worker)
    assert server.emulator.counters.requests_total == 240
    assert server.emulator.counters.max_in_flight <= 16


def test_run_in_thread_sync() -> None:
    emu = Emulator()
    with run_in_thread(emu) as url, httpx.Client(base_url=url) as c:
        assert url.startswith("http://127.0.0.1:")
        r = c.post(
            "/v1/media/create",
            json={"model": "yandex-art", "prompt": "t"},
            headers={"Authorization": "k"},
        )
        assert r.json()["status"] == "idle"
    assert emu.counters.creates_by_prompt["t"] == 1


@pytest.mark.anyio
async def test_ipv6_loopback_url(anyio_backend: str) -> None:
    try:
        cm = serve(Emulator(), host="::1")
        async with cm as srv:
            assert srv.url.startswith("http://[::1]:")
            async with httpx.AsyncClient(base_url=srv.url) as c:
                assert (
                    await c.get("/v1/models", headers={"Authorization": "k"})
                ).status_code == 200
    except OSError:
        pytest.skip("no IPv6 loopback here")


def test_command_line_serves_in_a_child_process_and_stops_with_it() -> None:
    with EmulatorProcess(["--time-scale", "100"]) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=emu.url) as c:
            r = c.get("/v1/balance", headers={"Authorization": "k"})
        assert r.status_code == 200
        assert r.json()["object"] == "balance"
        pid = emu.pid
        assert pid is not None and emu.cpu_seconds() >= 0
    assert emu.pid is None
    with pytest.raises(ProcessLookupError):  # terminated and reaped, not left behind
        os.kill(pid, 0)


def test_a_child_that_prints_no_loopback_url_is_a_clear_error() -> None:
    command = [sys.executable, "-c", "print('http://192.168.1.10:8787')"]
    with pytest.raises(RuntimeError, match="did not start"), EmulatorProcess(command=command):
        pass
