"""The socket server: loopback only, keep-alive, concurrency, thread runner, command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

import gptunnel_async.testing
from gptunnel_async.testing import Emulator, EmulatorServer, run_in_thread, serve


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


def test_command_line_serves_and_stops() -> None:
    root = Path(gptunnel_async.testing.__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "gptunnel_async.testing", "--port", "0", "--time-scale", "100"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with httpx.Client(base_url=url) as c:
                r = c.get("/v1/balance", headers={"Authorization": "k"})
            assert r.status_code == 200
            assert r.json()["object"] == "balance"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
