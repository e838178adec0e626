"""Throughput: polls/s the SDK sustains on loopback against the emulator, beside raw httpx.

For each concurrency C, C workers hammer ``GET /v1/media/result`` for a fixed time through:

- ``raw httpx``: ``httpx.AsyncClient.get`` + ``.json()`` (the bare transport),
- ``SDK media.result``: ``client.media.result(id)`` (auth, gate, capped read, JSON, pydantic),
- ``SDK Poller``: a ``Poller(max_concurrency=C)`` polling never-finishing tasks with a ~0 interval
  (so scheduling, the heap, the gate and the worker hand-off are included),

each with httpx's default transport and with ``httpx_aiohttp.AiohttpTransport``. The emulator
runs in its own process; client CPU per request is ``time.process_time()`` of this process.

    python benchmarks/bench_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import httpx
from common import API_KEY, IMAGE_MODEL, EmulatorProcess, ctl, machine_note, md_table

from gptunnel_async import AsyncGPTunnel, Poller, PollerOptions
from gptunnel_async.poller import FixedIntervalPolicy


def make_transport(kind: str, conns: int) -> httpx.AsyncBaseTransport | None:
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    if kind == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


async def run_workers(conc: int, seconds: float, one: Any) -> int:
    count = 0
    stop_at = anyio.current_time() + seconds

    async def worker() -> None:
        nonlocal count
        while anyio.current_time() < stop_at:
            await one()
            count += 1

    async with anyio.create_task_group() as tg:
        for _ in range(conc):
            tg.start_soon(worker)
    return count


async def measure(
    emu: EmulatorProcess,
    mode: str,
    transport_kind: str,
    conc: int,
    seconds: float,
    task_ids: list[str],
) -> dict[str, Any]:
    url = emu.url
    n = len(task_ids)
    i = 0

    def next_id() -> str:
        nonlocal i
        i += 1
        return task_ids[i % n]

    transport = make_transport(transport_kind, conc)
    if mode == "raw httpx":
        http = httpx.AsyncClient(transport=transport)
        headers = {"Authorization": API_KEY, "Accept": "application/json"}

        async def one() -> None:
            r = await http.get(
                f"{url}/v1/media/result", params={"task_id": next_id()}, headers=headers
            )
            r.json()

        async with http:
            await run_workers(conc, 0.5, one)  # warm up connections
            cpu0, t0 = time.process_time(), time.perf_counter()
            e0 = emu.cpu_seconds()
            count = await run_workers(conc, seconds, one)
            cpu1, t1 = time.process_time(), time.perf_counter()
            e1 = emu.cpu_seconds()
    else:
        client = AsyncGPTunnel(API_KEY, base_url=url, transport=transport, max_connections=conc)
        async with client:
            if mode == "SDK media.result":

                async def one() -> None:
                    await client.media.result(next_id())

                await run_workers(conc, 0.5, one)
                cpu0, t0 = time.process_time(), time.perf_counter()
                e0 = emu.cpu_seconds()
                count = await run_workers(conc, seconds, one)
                cpu1, t1 = time.process_time(), time.perf_counter()
                e1 = emu.cpu_seconds()
            else:  # SDK Poller: never-finishing tasks, ~zero interval
                policy = FixedIntervalPolicy(1e-6)
                async with Poller(
                    client, PollerOptions(max_concurrency=conc, policy=policy)
                ) as poller:
                    for tid in task_ids:
                        poller.add(tid)
                    await anyio.sleep(0.5)
                    p0 = poller.stats.polls
                    cpu0, t0 = time.process_time(), time.perf_counter()
                    e0 = emu.cpu_seconds()
                    await anyio.sleep(seconds)
                    count = poller.stats.polls - p0
                    cpu1, t1 = time.process_time(), time.perf_counter()
                    e1 = emu.cpu_seconds()
                    errors = poller.stats.failed_polls
                    if errors:
                        print(f"  ({errors} failed polls)")
    wall = t1 - t0
    return {
        "rps": count / wall,
        "cpu_us": (cpu1 - cpu0) / max(count, 1) * 1e6,
        "client_cpu": (cpu1 - cpu0) / wall,
        "emu_cpu": (e1 - e0) / wall,
    }


async def main_async(args: argparse.Namespace) -> str:
    concs = [8, 32, 64] if not args.quick else [8, 64]
    seconds = 4.0 if not args.quick else 1.5
    out = []
    with EmulatorProcess(time_scale=1.0) as emu:
        async with httpx.AsyncClient() as http:
            await ctl(http, emu.url, "faults", never_finish_rate=1.0)
            ids = []
            for k in range(512):
                r = await http.post(
                    f"{emu.url}/v1/media/create",
                    json={"model": IMAGE_MODEL, "prompt": f"p{k}"},
                    headers={"Authorization": API_KEY},
                )
                ids.append(r.json()["id"])
            rows = []
            results: dict[tuple[str, str, int], dict[str, Any]] = {}
            for conc in concs:
                for tk in ("httpx", "aiohttp"):
                    for mode in ("raw httpx", "SDK media.result", "SDK Poller"):
                        res = await measure(emu, mode, tk, conc, seconds, ids)
                        results[(mode, tk, conc)] = res
                        base = results[("raw httpx", tk, conc)]
                        rows.append(
                            [
                                conc,
                                tk,
                                mode,
                                f"{res['rps']:.0f}",
                                f"{res['rps'] / base['rps']:.2f}",
                                f"{res['cpu_us']:.0f}",
                                f"{res['cpu_us'] - base['cpu_us']:+.0f}",
                                f"{res['client_cpu']:.2f}",
                                f"{res['emu_cpu']:.2f}",
                            ]
                        )
                        print(
                            f"  C={conc} {tk:8s} {mode:18s} {res['rps']:7.0f} req/s "
                            f"{res['cpu_us']:5.0f} us/req",
                            flush=True,
                        )
            c = await ctl(http, emu.url, "counters", window=False)
    out.append(
        f"### Throughput (loopback, emulator in its own process, {seconds:.0f} s per cell)\n"
    )
    out.append(machine_note() + "\n")
    out.append(
        md_table(
            [
                "C",
                "transport",
                "client",
                "req/s",
                "vs raw",
                "client CPU µs/req",
                "Δ vs raw µs",
                "client cores",
                "emulator cores",
            ],
            rows,
        )
    )
    out.append(
        f"\nEmulator: {c['api_requests_total']} API requests, statuses {c['responses_by_status']},"
        f" internal errors {len(c['internal_errors'])}. When `emulator cores` is near 1.0 the"
        " emulator (single-threaded) is the bottleneck and req/s understates the client; "
        "`client CPU µs/req` is the figure that compares clients."
    )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
