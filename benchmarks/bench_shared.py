"""Limits shared by several processes through PostgreSQL, checked by the emulator's counters.

Four worker processes poll never-finishing tasks every 0.2 s (demand far above the budget) with
one key against one emulator (its own process); mid-run the emulator answers everything 429
with a Retry-After twice. For each budget R:

- **shared**: every worker uses ``AsyncGPTunnel(limits=SharedLimits(dsn, requests_per_second=R,
  max_concurrency=C))``. The emulator must see at most 1.05·R requests in any 1 s, no request
  inside an announced Retry-After window, at most C in flight.
- **local (baseline)**: the same workers with their own ``requests_per_second=R`` each, as
  before shared limits: what N processes did to one key (≈ N·R per second, and requests inside
  the other workers' pauses).

It also reports the coordinator's cost: PostgreSQL round trips per request and their latency
(p50/p99), and the requests each run achieved (shared vs. a local gate of R/N per worker, which
needs no coordinator but cannot share a pause or lend unused budget).

    python benchmarks/bench_shared.py [--quick] [--rates 20,100,250] [--dsn postgresql://...]

The DSN defaults to ``GPTUNNEL_BENCH_POSTGRES_DSN`` or ``postgresql://postgres@127.0.0.1:5432/
postgres``; each run uses a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from common import (
    API_KEY,
    EmulatorProcess,
    create_tasks,
    ctl,
    machine_note,
    mark,
    md_table,
    percentile,
)

HERE = Path(__file__).resolve().parent
WORKERS = 4
PER_WORKER = 8  # each worker's own bound (its poller's workers and connections)
CONCURRENCY = WORKERS * PER_WORKER  # the shared bound: what the four had together before
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------------------------
# one worker process
# --------------------------------------------------------------------------------------------


async def worker_main(args: argparse.Namespace) -> None:
    from gptunnel_async import AsyncGPTunnel, SharedLimits
    from gptunnel_async.poller import FixedIntervalPolicy, Poller, PollerOptions

    ids = json.loads(await anyio.Path(args.ids).read_text())
    limits = None
    local_rps: float | None = args.rps  # "local" and "split": each worker's own budget
    if args.mode == "shared":
        limits = SharedLimits(
            args.dsn,
            schema=args.schema,
            requests_per_second=args.rps,
            max_concurrency=CONCURRENCY,
        )
        local_rps = None
    client = AsyncGPTunnel(
        API_KEY, base_url=args.url, limits=limits, max_connections=PER_WORKER, max_retries=0
    )
    poller = Poller(
        client,
        PollerOptions(
            max_concurrency=PER_WORKER,
            requests_per_second=local_rps,
            policy=FixedIntervalPolicy(0.2),
            max_poll_failures=10_000,
        ),
    )
    async with client, poller:
        for task_id in ids:
            poller.add(task_id)
        print("ready", flush=True)
        await anyio.sleep(args.seconds)
        gate: Any = poller.gate
        out: dict[str, Any] = {"polls": poller.stats.polls, "gate": vars(gate.stats)}
        coordinator = getattr(gate, "coordinator", None)
        if coordinator is not None:
            lat = list(coordinator.latencies)
            out["round_trips"] = coordinator.round_trips
            out["late_grants"] = coordinator.late_grants
            out["rt_p50_ms"] = percentile(lat, 50) * 1000
            out["rt_p99_ms"] = percentile(lat, 99) * 1000
        print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


def _spawn(mode: str, rps: float, url: str, dsn: str, schema: str, ids: Path, seconds: float):  # type: ignore[no-untyped-def]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--mode", mode]
    cmd += ["--rps", str(rps), "--url", url, "--dsn", dsn, "--schema", schema]
    cmd += ["--ids", str(ids), "--seconds", str(seconds)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent, env=env)


async def run_case(
    emu: EmulatorProcess, mode: str, rps: float, dsn: str, seconds: float, tmp: Path
) -> dict[str, Any]:
    url = emu.url
    schema = f"bench_{secrets.token_hex(4)}"
    n = int(max(200, 2 * WORKERS * rps))  # demand n / 0.2 s: far above any budget here
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as http:
        await ctl(http, url, "reset", seed=5)
        await ctl(http, url, "faults", never_finish_rate=1.0)
        ids = await create_tasks(http, url, n, prefix=f"s{rps:g}")
        files = []
        for w in range(WORKERS):
            f = tmp / f"ids-{w}.json"
            f.write_text(json.dumps(ids[w::WORKERS]))
            files.append(f)
        await ctl(http, url, "faults", latency=0.02)
        await ctl(http, url, "reset_counters")
        procs = [_spawn(mode, rps, url, dsn, schema, f, seconds) for f in files]
        try:
            for p in procs:  # every worker polling before the clock starts
                assert p.stdout is not None
                line = await anyio.to_thread.run_sync(p.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"a worker failed to start: {line!r}")
            t0 = time.monotonic()
            for at, duration, retry_after in [(0.35, 0.4, 1.0), (0.7, 0.3, 1.5)]:
                await anyio.sleep(max(0.0, t0 + at * seconds - time.monotonic()))
                await ctl(http, url, "faults", burst_429=[duration, retry_after])
            outs = []
            for p in procs:
                stdout, _ = await anyio.to_thread.run_sync(p.communicate)
                outs.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        counters = await ctl(http, url, "counters")
    if mode == "shared":
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    requests = sum(o["gate"]["requests"] for o in outs)
    result: dict[str, Any] = {
        "requests": counters["api_requests_total"],
        "busiest_second": counters["max_requests_in_window_1s"],
        "violations": counters["retry_after_violations"],
        "max_in_flight": counters["max_in_flight"],
        "sent_429": counters["sent_429"],
        "gate_requests": requests,
    }
    if mode == "shared":
        trips = sum(o["round_trips"] for o in outs)
        result["trips_per_request"] = trips / max(requests, 1)
        result["late_grants"] = sum(o["late_grants"] for o in outs)
        result["rt_p50_ms"] = max(o["rt_p50_ms"] for o in outs)
        result["rt_p99_ms"] = max(o["rt_p99_ms"] for o in outs)
    return result


async def main_async(args: argparse.Namespace) -> str:
    seconds = 5.0 if args.quick else 12.0
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    checks = []
    ok_all = True
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_shared_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    with EmulatorProcess(time_scale=1.0) as emu:
        for rps in rates:
            for mode, label in [
                ("shared", "shared R"),
                ("split", f"local R/{WORKERS} each (no coordinator)"),
                ("local", "local R each (before)"),
            ]:
                if mode != "shared" and args.quick and rps != rates[0]:
                    continue
                worker_rps = rps / WORKERS if mode == "split" else rps
                r = await run_case(emu, mode, worker_rps, args.dsn, seconds, tmp)
                busiest = r["busiest_second"]
                ok_r = busiest <= 1.05 * rps
                ok_v = r["violations"] == 0
                ok_c = r["max_in_flight"] <= CONCURRENCY
                ok = ok_r and ok_v and ok_c
                if mode == "shared":
                    ok_all = ok_all and ok
                rows.append(
                    [
                        f"{rps:g}",
                        label,
                        r["requests"],
                        f"{r['requests'] / seconds:.0f}",
                        busiest,
                        f"{1.05 * rps:g}",
                        r["violations"],
                        r["max_in_flight"],
                        r["sent_429"],
                        f"{r['trips_per_request']:.2f}" if mode == "shared" else "-",
                        f"{r['rt_p50_ms']:.1f} / {r['rt_p99_ms']:.1f}" if mode == "shared" else "-",
                        mark(ok)
                        if mode == "shared"
                        else ("(expected to fail)" if not ok else mark(ok)),
                    ]
                )
                checks.append(
                    f"- R={rps:g} {label}: busiest second {busiest} (≤ {1.05 * rps:g} "
                    f"{mark(ok_r)}), Retry-After violations {r['violations']} {mark(ok_v)}, "
                    f"max in flight {r['max_in_flight']} ≤ {CONCURRENCY} {mark(ok_c)}"
                    + (f"; grants re-timed (late) {r['late_grants']}" if mode == "shared" else "")
                )
                print(checks[-1], flush=True)
    table = md_table(
        [
            "R",
            "limits",
            "API requests",
            "req/s",
            "busiest 1 s (emulator)",
            "≤ 1.05 R",
            "Retry-After violations",
            "max in flight",
            "429s sent",
            "PG round trips / request",
            "round trip p50 / p99 ms",
            "result",
        ],
        rows,
    )
    head = (
        f"### Shared limits: {WORKERS} processes, one key, C={CONCURRENCY} "
        f"({seconds:g} s per case, two 429 bursts)\n"
    )
    verdict = "every shared case held its bounds" if ok_all else "a shared case broke a bound"
    return "\n".join([head, machine_note() + "\n", table, "", *checks, "", f"**{verdict}**"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rates", default="20,100,250")
    p.add_argument("--dsn", default=os.environ.get("GPTUNNEL_BENCH_POSTGRES_DSN", DEFAULT_DSN))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="shared", help=argparse.SUPPRESS)
    p.add_argument("--rps", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--schema", help=argparse.SUPPRESS)
    p.add_argument("--ids", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        anyio.run(worker_main, args)
        return
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
