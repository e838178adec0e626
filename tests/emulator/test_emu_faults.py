"""Fault knobs, scripts and counters, over a real socket (and one via the transport)."""

from __future__ import annotations

import email.utils
import time

import anyio
import httpx
import pytest

from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, EmulatorTransport

pytestmark = pytest.mark.anyio
CREATE = {"model": "yandex-art", "prompt": "lost"}


async def test_error_rate_answers_5xx_envelope(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.error_rate = 1.0
    emu.faults.error_statuses = (503,)
    r = await client.get("/v1/balance")
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "server_error"
    emu.faults.error_rate = 0.0
    assert (await client.get("/v1/balance")).status_code == 200


async def test_drop_closes_without_response(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.drop_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/media/create", json=CREATE)
    assert emu.counters.creates_total == 0
    assert emu.counters.drops == 1


async def test_drop_after_creates_and_bills(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.drop_after_rate = 1.0
    before = emu.org_balance
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/media/create", json=CREATE)
    assert emu.counters.creates_by_prompt["lost"] == 1
    assert emu.counters.creates_total == 1
    assert emu.org_balance == before - 1.0
    assert len(emu.store.tasks) == 1


async def test_transport_drop_raises_like_httpx() -> None:
    emu = Emulator(EmulatorConfig(time_scale=1000.0))
    emu.faults.script("POST /v1/media/create", ["drop_after"])
    transport = EmulatorTransport(emu)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as c:
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
            await c.post("/v1/media/create", json=CREATE, headers={"Authorization": "k"})
        r = await c.post("/v1/media/create", json=CREATE, headers={"Authorization": "k"})
    assert r.status_code == 200
    assert emu.counters.creates_by_prompt["lost"] == 2


async def test_slow_exceeds_read_timeout(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.slow_rate = 1.0
    emu.faults.slow_delay = 0.5
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/media/create", json=CREATE, timeout=0.1)
    assert emu.counters.creates_by_prompt["lost"] == 1  # processed before the delay


async def test_latency_and_max_in_flight(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.latency = (0.05, 0.1)
    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(client.get, "/v1/balance")
    assert time.monotonic() - start >= 0.05
    assert emu.counters.max_in_flight == 8
    assert emu.counters.in_flight == 0


async def test_rate_limit_token_bucket(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.rate_limit_rps = 2.0
    emu.faults.rate_limit_burst = 5.0
    statuses = [(await client.get("/v1/balance")).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    r = await client.get("/v1/balance")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert emu.counters.max_requests_in_window(10.0) == 9
    assert 1 <= emu.counters.max_requests_in_window(0.000001) <= 2


@pytest.mark.parametrize("fmt", ["seconds", "http-date", "ms", "seconds+ms"])
async def test_burst_429_retry_after_formats(
    client: httpx.AsyncClient, emu: Emulator, fmt: str
) -> None:
    emu.faults.retry_after_format = fmt  # type: ignore[assignment]
    emu.faults.burst_429(0.3, retry_after=2.5)
    r = await client.get("/v1/media/result", params={"task_id": "x"})
    assert r.status_code == 429
    if fmt == "seconds":
        assert r.headers["retry-after"] == "2.5"
    elif fmt == "http-date":
        assert email.utils.parsedate_to_datetime(r.headers["retry-after"]).timestamp() > time.time()
    elif fmt == "ms":
        assert r.headers["retry-after-ms"] == "2500"
        assert "retry-after" not in r.headers
    else:
        assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("2.5", "2500")
    await anyio.sleep(0.35)
    assert (await client.get("/v1/balance")).status_code == 200


async def test_retry_after_violations(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.script("GET /v1/balance", [(429, {"Retry-After": "0.6"})])
    assert (await client.get("/v1/balance")).status_code == 429
    assert emu.counters.sent_429[-1][1] == pytest.approx(0.6)
    await anyio.sleep(0.1)
    await client.get("/v1/balance")  # too early: a violation
    assert emu.counters.retry_after_violations == 1
    await anyio.sleep(0.55)
    await client.get("/v1/balance")  # waited it out
    assert emu.counters.retry_after_violations == 1


async def test_in_flight_requests_within_grace_are_forgiven(
    client: httpx.AsyncClient, emu: Emulator
) -> None:
    emu.faults.script("GET /v1/balance", [(429, {"Retry-After": "5"})])
    await client.get("/v1/balance")
    await client.get("/v1/models")  # immediately: within the 50 ms grace
    assert emu.counters.retry_after_violations == 0


async def test_script_fifo_then_normal(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.error_rate = 1.0  # scripted outcomes take precedence over random faults
    emu.faults.script("GET /v1/balance", [503, 502, (429, {"Retry-After": "1"}), "pass"])
    got = [await client.get("/v1/balance") for _ in range(4)]
    assert [r.status_code for r in got] == [503, 502, 429, 200]
    assert got[2].headers["retry-after"] == "1"
    assert emu.faults.pending_script() == 0


async def test_script_any_method_delay_and_drop(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.script("/v1/media/result", [("delay", 0.2), "drop"])
    start = time.monotonic()
    r = await client.post("/v1/media/result", json={"task_id": "nope"})
    assert r.status_code == 404
    assert time.monotonic() - start >= 0.2
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get("/v1/media/result", params={"task_id": "nope"})
    assert (await client.get("/v1/balance")).status_code == 200


async def test_script_on_files(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.error_rate = 1.0  # files are exempt from random faults by default
    r = await client.get("/files/000000000000000000000000_result.webp")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/xml"
    emu.faults.script("GET /files/*", [500])
    assert (await client.get("/files/x_result.webp")).status_code == 500


async def test_faults_are_deterministic_given_seed() -> None:
    def run() -> list[str]:
        emu = Emulator(EmulatorConfig(seed=42))
        emu.faults.error_rate = 0.3
        emu.faults.drop_rate = 0.2
        emu.faults.task_failure_rate = 0.5
        out: list[str] = [emu.faults.decide("GET", "/v1/balance", 0.0).kind for _ in range(50)]
        out += [emu.faults.task_fate()[0] for _ in range(50)]
        return out

    first = run()
    assert first == run()
    assert {"pass", "status", "drop"} <= set(first)


async def test_counters_reset_and_window(client: httpx.AsyncClient, emu: Emulator) -> None:
    for _ in range(5):
        await client.get("/v1/balance")
    c = emu.counters
    assert c.requests_total == 5
    assert c.requests_by_route["GET /v1/balance"] == 5
    assert c.max_requests_in_window(10.0) == 5
    c.reset()
    assert (c.requests_total, c.max_requests_in_window(1.0)) == (0, 0)


async def test_status_names_and_instant_done(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.config.durations["flux-dev"] = DurationDist.fixed(0.0)
    r = await client.post("/v1/media/create", json={"model": "flux-dev", "prompt": "fast"})
    assert r.json()["status"] == "done"  # a fast model may be done at create
    assert r.json()["url"] is not None
    emu.faults.status_names = {"idle": "queued", "failed": "error"}
    emu.faults.task_failure_rate = 1.0
    r = await client.post("/v1/media/create", json={"model": "flux-dev", "prompt": "bad"})
    assert r.json()["status"] == "error"
    r = await client.post("/v1/midjourney/imagine", json={"prompt": "q"})
    assert r.json()["status"] == "queued"


async def test_never_finish_over_socket(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.never_finish_rate = 1.0
    tid = (
        await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "x"})
    ).json()["id"]
    await anyio.sleep(0.1)  # well past its 50 ms
    r = await client.get("/v1/media/result", params={"task_id": tid})
    assert r.json()["status"] == "processing"
    assert emu.counters.finished_at(tid) is None


async def test_include_files_in_random_faults(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.faults.error_rate = 1.0
    emu.faults.include_files = True
    r = await client.get("/files/x_result.webp")
    assert r.status_code in (500, 502, 503)
