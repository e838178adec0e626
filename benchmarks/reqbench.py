"""The engine of bench_requests.py / bench_sweep.py: one closed-loop batch against the emulator.

A batch creates ``n`` tasks of one model one at a time (so the emulator's seeded RNG gives task
*i* the same duration in every batch with the same seed) while keeping at most ``in_flight``
tasks running (closed loop: a new create when a task is yielded), so the request rate stays far
below what loopback + the emulator can serve and HTTP latency stays ~1-3 ms. Every task is either
polled by the SDK's ``Poller`` (with the policy under test) or by the naive per-task loop.

Per task it records, from the emulator: creation and finish time (``time.monotonic()``) and the
number of ``/v1/media/result`` requests; from the SDK side: when the task was yielded. Delays and
durations are reported in real-time terms (measured seconds × time_scale).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from common import API_KEY, ctl, delay_stats, naive_wait

from gptunnel_async import AsyncGPTunnel, Poller, PollerOptions
from gptunnel_async.poller import AdaptivePolicy, PollPolicy


@dataclass
class BatchResult:
    label: str
    n: int
    polls: list[int]  # result requests per task (emulator's count)
    delays: list[float]  # real-time seconds
    durations: list[float]  # real-time seconds
    wall: float
    failed: int
    #: real-time seconds from each finish to the server having the poll that found it done:
    #: the schedule's part of the delay (plus the way there); the rest is the way back
    seen: list[float] = field(default_factory=list)

    @property
    def req_per_task(self) -> float:
        return statistics.fmean(self.polls)

    @property
    def stats(self) -> dict[str, float]:
        return delay_stats(self.delays)

    def ideal_naive(self) -> tuple[float, float]:
        """What a drift-free 1 s loop would cost on these very durations: polls, mean delay."""
        polls = [max(1, math.ceil(d)) for d in self.durations]
        return statistics.fmean(polls), statistics.fmean(
            p - d for p, d in zip(polls, self.durations, strict=True)
        )


async def run_batch(
    url: str,
    *,
    label: str,
    model: str,
    n: int,
    seed: int,
    time_scale: float,
    policy: PollPolicy | None,
    in_flight: int,
    max_concurrency: int = 16,
    transport: httpx.AsyncBaseTransport | None = None,
) -> BatchResult:
    """``policy=None`` runs the naive baseline (each task its own sleep(1/scale)+poll loop)."""
    async with httpx.AsyncClient() as ctl_http:
        await ctl(ctl_http, url, "reset", seed=seed)
        client = AsyncGPTunnel(API_KEY, base_url=url, transport=transport, max_connections=64)
        yielded: dict[str, float] = {}
        ids: list[str] = []
        failed = 0
        slots = anyio.Semaphore(in_flight)
        t0 = anyio.current_time()
        async with client:
            if policy is None:

                async def naive_one(tid: str) -> None:
                    nonlocal failed
                    try:
                        await naive_wait(client, tid, 1.0 / time_scale)
                    except Exception:
                        failed += 1
                    yielded[tid] = anyio.current_time()
                    slots.release()

                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        await slots.acquire()
                        task = await client.media.create(model=model, prompt=f"{label} {i}")
                        ids.append(task.id)
                        tg.start_soon(naive_one, task.id)
            else:
                async with Poller(
                    client,
                    PollerOptions(policy=policy, keep_open=True, max_concurrency=max_concurrency),
                ) as poller:

                    async def produce() -> None:
                        for i in range(n):
                            await slots.acquire()
                            task = await client.media.create(model=model, prompt=f"{label} {i}")
                            ids.append(task.id)
                            poller.add(task)
                        poller.close()

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(produce)
                        async for result in poller:
                            yielded[result.id] = anyio.current_time()
                            if not result.ok:
                                failed += 1
                            slots.release()
        wall = anyio.current_time() - t0
        info = await ctl(ctl_http, url, "tasks", ids=ids)
    polls, delays, durations, seen = [], [], [], []
    for tid in ids:
        rec = info[tid]
        polls.append(rec["requests"])
        delays.append((yielded[tid] - rec["t_end"]) * time_scale)
        durations.append((rec["t_end"] - rec["t_created"]) * time_scale)
        if rec.get("t_last_poll") is not None:
            seen.append((rec["t_last_poll"] - rec["t_end"]) * time_scale)
    return BatchResult(label, n, polls, delays, durations, wall, failed, seen)


def sdk_policy(time_scale: float, **kw: Any) -> AdaptivePolicy:
    return AdaptivePolicy(clock_scale=time_scale, **kw)
