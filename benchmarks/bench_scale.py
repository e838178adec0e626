"""Scale: 10,000 tasks in flight in one process.

1. Scheduler memory: ``tracemalloc`` around adding 10k task objects (created beforehand, so
   they are the caller's memory) to a running ``Poller`` whose first poll is an hour away, so
   all 10k sit in its heap. Target ≤ 1 KiB per in-flight task.
2. A live run: 10k never-finishing tasks on the emulator (own process), each polled every
   ``interval`` s (first polls spread evenly), while a ticker task sleeping 1 ms measures its
   oversleep (event-loop lag, target p99 ≤ 10 ms). SDK CPU per poll (process time / polls) is
   compared with raw httpx GETs of the same endpoint at the same concurrency.
3. The default ``AdaptivePolicy``'s own CPU, no I/O: per poll (``observe_running`` +
   ``next_delay``) and per schedule rebuild (every 16 finishes per model; it runs on the event
   loop, so its longest rebuild is a floor for loop lag), after learning 1000 tasks.
4. 1 and 2 again with the client's limits shared through PostgreSQL (``SharedLimits``: every
   poll takes a lease and a start from the coordinator), beside the local gate, same run.

    python benchmarks/bench_scale.py [--quick] [--dsn postgresql://...] [--no-shared]

The DSN defaults to ``GPTUNNEL_BENCH_POSTGRES_DSN`` or ``postgresql://postgres@127.0.0.1:5432/
postgres``; the shared runs use a schema of their own and drop it.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import time
import tracemalloc
from typing import Any

import anyio
import httpx
from common import (
    API_KEY,
    IMAGE_MODEL,
    VIDEO_MODEL,
    WIDE,
    EmulatorProcess,
    create_tasks,
    ctl,
    machine_note,
    mark,
    md_table,
    percentile,
)

from gptunnel_async import (
    AdaptivePolicy,
    AsyncGPTunnel,
    CoordinatorUnavailableError,
    Poller,
    PollerOptions,
    SharedLimits,
)
from gptunnel_async.poller import FixedIntervalPolicy, TaskHint
from gptunnel_async.types.media import MediaTask

N = 10_000
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class SpreadPolicy:
    """Every ``interval`` s, first polls spread uniformly over one interval (steady load)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.rng = random.Random(0)

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        return self.rng.uniform(0.05, self.interval)

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        return self.interval

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        return None


def make_tasks(ids: list[str]) -> list[MediaTask]:
    now = anyio.current_time()
    tasks = []
    for tid in ids:
        t = MediaTask(id=tid, model=IMAGE_MODEL, status="processing", prompt="p")
        t.mark_created(now)
        tasks.append(t)
    return tasks


async def memory_per_task(limits: SharedLimits | None = None) -> dict[str, float]:
    ids = [f"{0x65F000000000000000000000 + i:024x}" for i in range(N)]
    tasks = make_tasks(ids)
    out = {}
    # loopback URL that nothing listens on: no request is sent (first poll is an hour away)
    client = AsyncGPTunnel(API_KEY, base_url="http://127.0.0.1:9", limits=limits)
    async with client, Poller(client, PollerOptions(policy=FixedIntervalPolicy(3600.0))) as poller:
        await anyio.sleep(0.01)
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        t0 = time.perf_counter()
        for t in tasks:
            poller.add(t)
        add_us = (time.perf_counter() - t0) / N * 1e6
        await anyio.sleep(0.05)  # let the scheduler loop run with the full heap
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        diff = sum(s.size_diff for s in after.compare_to(before, "filename"))
        out["objects"] = diff / N
        out["add_us"] = add_us
        out["pending"] = poller.pending
        poller.close()
        # task objects themselves (the caller's), for scale
    tracemalloc.start()
    b = tracemalloc.take_snapshot()
    extra = make_tasks([f"{0x66F000000000000000000000 + i:024x}" for i in range(1000)])
    a = tracemalloc.take_snapshot()
    tracemalloc.stop()
    out["task_object"] = sum(s.size_diff for s in a.compare_to(b, "filename")) / len(extra)
    return out


async def live_run(
    emu: EmulatorProcess,
    n: int,
    interval: float,
    seconds: float,
    conc: int,
    limits: SharedLimits | None = None,
) -> dict[str, Any]:
    url = emu.url
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as http:
        await ctl(http, url, "reset", seed=7)
        await ctl(http, url, "faults", never_finish_rate=1.0)
        ids = await create_tasks(http, url, n, prefix="s")
        await ctl(http, url, "reset_counters")

    lags: list[float] = []
    client = AsyncGPTunnel(API_KEY, base_url=url, max_connections=conc, limits=limits)
    async with (
        client,
        Poller(client, PollerOptions(policy=SpreadPolicy(interval), max_concurrency=conc)) as p,
    ):
        for t in make_tasks(ids):
            p.add(t)
        stop = anyio.current_time() + seconds
        cpu0, w0, polls0 = time.process_time(), time.perf_counter(), p.stats.polls
        while anyio.current_time() < stop:
            t = time.perf_counter()
            await anyio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1000)
        cpu1, w1 = time.process_time(), time.perf_counter()
        polls = p.stats.polls - polls0
        failed = p.stats.failed_polls
        pending = p.pending
        coordinator = getattr(p.gate, "coordinator", None)
        trips = coordinator.round_trips if coordinator else 0
        rt = list(coordinator.latencies) if coordinator else []
    result = {
        "polls": polls,
        "rps": polls / (w1 - w0),
        "cpu_us": (cpu1 - cpu0) / max(polls, 1) * 1e6,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags),
        "failed": failed,
        "pending": pending,
        "trips_per_poll": trips / max(p.stats.polls, 1),
        "rt_p50": percentile(rt, 50) * 1e3 if rt else 0.0,
        "rt_p99": percentile(rt, 99) * 1e3 if rt else 0.0,
    }
    if limits is not None:
        return result
    # raw httpx at the same concurrency, same endpoint
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=conc)) as raw:
        count = 0
        stop_t = time.perf_counter() + min(seconds, 5.0)

        async def worker(k: int) -> None:
            nonlocal count
            i = k
            while time.perf_counter() < stop_t:
                r = await raw.get(
                    f"{url}/v1/media/result",
                    params={"task_id": ids[i % n]},
                    headers={"Authorization": API_KEY},
                )
                r.json()
                count += 1
                i += conc

        rc0 = time.process_time()
        async with anyio.create_task_group() as tg:
            for k in range(conc):
                tg.start_soon(worker, k)
        result["raw_cpu_us"] = (time.process_time() - rc0) / max(count, 1) * 1e6
    return result


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def shared_rows(
    mem: dict[str, float], live: dict[str, Any], smem: dict[str, float], shared: dict[str, Any]
) -> list[list[str]]:
    """The shared runs' rows, each beside the local gate's figure of the same run."""
    kib = smem["objects"] / 1024
    return [
        [
            "**with SharedLimits (PostgreSQL)**: scheduler memory per in-flight task",
            f"{smem['objects']:.0f} B (local gate: {mem['objects']:.0f} B)",
            "≤ 1 KiB",
            mark(kib <= 1.0),
        ],
        [
            "  live, same load: polls / failed / pending",
            f"{shared['rps']:.0f} polls/s, {shared['polls']} polls, {shared['failed']} failed, "
            f"{shared['pending']} pending",
            "",
            "",
        ],
        [
            "  SDK CPU per poll, shared / local gate",
            f"{shared['cpu_us']:.0f} µs / {live['cpu_us']:.0f} µs = "
            f"{shared['cpu_us'] / live['cpu_us']:.2f}×",
            "",
            "",
        ],
        [
            "  coordinator round trips per poll, round trip p50 / p99",
            f"{shared['trips_per_poll']:.2f}, {shared['rt_p50']:.1f} / {shared['rt_p99']:.1f} ms",
            "",
            "",
        ],
        [
            "  event-loop lag p50 / p99 / max",
            f"{shared['lag_p50']:.2f} / {shared['lag_p99']:.2f} / {shared['lag_max']:.1f} ms",
            "p99 ≤ 10 ms",
            mark(shared["lag_p99"] <= 10.0),
        ],
    ]


def policy_cost() -> dict[str, float]:
    """The default policy's CPU per poll and per rebuild (µs, ms), learned on 1000 tasks each."""
    import math

    from sim_policy import run

    policy = AdaptivePolicy(rng=random.Random(0))
    out: dict[str, float] = {}
    for kind, model in (("image", IMAGE_MODEL), ("video", VIDEO_MODEL)):
        lo, hi = WIDE[kind]
        rng = random.Random(1)
        durations = [math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(1000)]
        run(policy, model, durations, 100)
        stats, hint = policy.model_stats(model), TaskHint()
        t0 = time.process_time()
        for k in range(20_000):  # a still-running task's bookkeeping, at spread-out ages
            elapsed = lo + (hi - lo) * (k % 997) / 997
            policy.observe_running(model, elapsed - 5, elapsed)
            policy.next_delay(model, elapsed, 3, hint)
        out[f"{kind}_poll_us"] = (time.process_time() - t0) / 20_000 * 1e6
        rebuilds = []
        for _ in range(50):
            stats._dirty = 1 << 30  # force the next schedule_for() to rebuild
            t0 = time.perf_counter()
            policy.schedule_for(model)
            rebuilds.append((time.perf_counter() - t0) * 1e3)
        out[f"{kind}_rebuild_ms"] = sorted(rebuilds)[len(rebuilds) // 2]
        out[f"{kind}_rebuild_max_ms"] = max(rebuilds)
    return out


async def main_async(args: argparse.Namespace) -> str:
    cost = policy_cost()
    mem = await memory_per_task()
    interval = 40.0
    seconds = 20.0 if not args.quick else 8.0
    conc = 16
    schema = f"bench_scale_{secrets.token_hex(4)}"
    # a budget and a bound that hold nothing back here: every poll still asks the coordinator
    limits = SharedLimits(args.dsn, schema=schema, max_concurrency=64, requests_per_second=2000)
    unshared = "--no-shared" if args.no_shared else ""
    with EmulatorProcess(time_scale=1.0) as emu:
        live = await live_run(emu, N, interval, seconds, conc)
        if not args.no_shared:
            try:
                smem = await memory_per_task(limits)
                shared = await live_run(emu, N, interval, seconds, conc, limits)
            except CoordinatorUnavailableError as exc:  # said, not hidden
                unshared = str(exc)
            else:
                await anyio.to_thread.run_sync(drop_schema, args.dsn, schema)
    kib = mem["objects"] / 1024
    rows = [
        [
            "scheduler memory per in-flight task (10k added, tracemalloc)",
            f"{mem['objects']:.0f} B ({kib:.2f} KiB)",
            "≤ 1 KiB",
            mark(kib <= 1.0),
        ],
        [
            "  (the caller's MediaTask object, not counted above)",
            f"{mem['task_object']:.0f} B",
            "",
            "",
        ],
        ["Poller.add() time per task", f"{mem['add_us']:.1f} µs", "", ""],
        [
            f"live: 10k tasks in flight, each polled every {interval:g} s, {conc} workers",
            f"{live['rps']:.0f} polls/s, {live['polls']} polls, {live['failed']} failed, "
            f"{live['pending']} pending",
            "",
            "",
        ],
        [
            "SDK CPU per poll (process time / polls, incl. scheduler + ticker)",
            f"{live['cpu_us']:.0f} µs",
            "",
            "",
        ],
        [
            "raw httpx CPU per GET, same endpoint, same concurrency",
            f"{live['raw_cpu_us']:.0f} µs",
            "",
            "",
        ],
        ["SDK / raw CPU per request", f"{live['cpu_us'] / live['raw_cpu_us']:.2f}×", "", ""],
        *(
            [
                f"default AdaptivePolicy, {kind}: CPU per poll / schedule rebuild median (max)",
                f"{cost[f'{kind}_poll_us']:.1f} µs / {cost[f'{kind}_rebuild_ms']:.1f} ms "
                f"({cost[f'{kind}_rebuild_max_ms']:.1f} ms)",
                "",
                "",
            ]
            for kind in ("image", "video")
        ),
        [
            "event-loop lag (1 ms ticker oversleep) p50 / p99 / max",
            f"{live['lag_p50']:.2f} / {live['lag_p99']:.2f} / {live['lag_max']:.1f} ms",
            "p99 ≤ 10 ms",
            mark(live["lag_p99"] <= 10.0),
        ],
    ]
    if not unshared:
        rows += shared_rows(mem, live, smem, shared)
    else:
        rows.append(["with SharedLimits (PostgreSQL)", f"not run: {unshared}", "", ""])
    return "\n".join(
        [
            f"### Scale: {N:,} tasks in flight in one process\n",
            machine_note() + "\n",
            md_table(["measure", "value", "target", "result"], rows),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dsn", default=os.environ.get("GPTUNNEL_BENCH_POSTGRES_DSN", DEFAULT_DSN))
    p.add_argument("--no-shared", action="store_true", help="only the local gate")
    args = p.parse_args()
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
