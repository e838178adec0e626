"""Correctness under load: the emulator's counters check the poller's limits.

Scenario A: 2,000 never-finishing tasks polled every 0.2 s (demand ~10,000 req/s) through a
``Poller(max_concurrency=C, requests_per_second=R)``; mid-run the emulator answers everything 429
(``Retry-After``) for two bursts. The emulator (own process) must see
``max_in_flight ≤ C``, ``max_requests_in_window(1.0) ≤ R`` and ``retry_after_violations == 0``.

Scenario B: same, with no ``requests_per_second`` on the SDK but the emulator's own token-bucket
rate limit (429 + Retry-After when exceeded): the SDK must never send inside a Retry-After
window.

    python benchmarks/bench_limits.py [--quick]
"""

from __future__ import annotations

import argparse
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
)

from gptunnel_async import AsyncGPTunnel, Poller, PollerOptions
from gptunnel_async.poller import FixedIntervalPolicy
from gptunnel_async.testing._counters import max_in_window


async def scenario(
    emu: EmulatorProcess,
    *,
    conc: int,
    rps: float | None,
    seconds: float,
    bursts: list[tuple[float, float, float]],
    server_rps: float | None,
    n: int = 2000,
) -> dict[str, Any]:
    url = emu.url
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as http:
        await ctl(http, url, "reset", seed=3)
        await ctl(http, url, "faults", never_finish_rate=1.0)
        ids = await create_tasks(http, url, n, prefix="l")
        await ctl(http, url, "reset_counters")
        # 20 ms per answer so that concurrent requests overlap inside the emulator and its
        # max_in_flight really measures the client's concurrency
        await ctl(http, url, "faults", latency=0.02)
        if server_rps:
            await ctl(http, url, "faults", rate_limit_rps=server_rps)

        client = AsyncGPTunnel(API_KEY, base_url=url, max_connections=conc)
        async with (
            client,
            Poller(
                client,
                PollerOptions(
                    max_concurrency=conc, requests_per_second=rps, policy=FixedIntervalPolicy(0.2)
                ),
            ) as poller,
        ):
            gate = poller.gate
            assert gate is not None
            starts: list[float] = []
            record = gate._record_start  # observe (not change) the SDK's own start times

            def spy(now: float) -> None:
                starts.append(now)
                record(now)

            gate._record_start = spy  # type: ignore[method-assign]
            for tid in ids:
                poller.add(tid)
            t0 = anyio.current_time()
            for at, duration, retry_after in bursts:
                await anyio.sleep(max(0.0, t0 + at - anyio.current_time()))
                await ctl(http, url, "faults", burst_429=[duration, retry_after])
            await anyio.sleep(max(0.0, t0 + seconds - anyio.current_time()))
            stats = poller.stats
            sdk = {
                "sdk_window": max_in_window(starts, 1.0),
                "polls": stats.polls,
                "rate_limited": stats.rate_limited,
                "failed_polls": stats.failed_polls,
                "gate_pauses": gate.stats.pauses,
                "gate_max_in_flight": gate.stats.max_in_flight,
            }
        c = await ctl(http, url, "counters")
    return {**sdk, **c}


async def main_async(args: argparse.Namespace) -> str:
    seconds = 12.0 if not args.quick else 6.0
    rows = []
    checks = []
    with EmulatorProcess(time_scale=1.0) as emu:
        cases = [
            (
                "A: SDK limits C=8, R=100/s, two 429 bursts",
                8,
                100.0,
                None,
                [(seconds * 0.3, 1.0, 1.0), (seconds * 0.6, 0.5, 2.0)],
            ),
            (
                "A': SDK limits C=32, R=250/s, one 429 burst",
                32,
                250.0,
                None,
                [(seconds * 0.5, 1.0, 1.5)],
            ),
            ("B: no SDK rate, server rate limit 80/s", 16, None, 80.0, []),
        ]
        for name, conc, rps, server_rps, bursts in cases:
            r = await scenario(
                emu, conc=conc, rps=rps, seconds=seconds, bursts=bursts, server_rps=server_rps
            )
            win = r["max_requests_in_window_1s"]
            ok_c = r["max_in_flight"] <= conc
            ok_r = rps is None or win <= rps
            ok_v = r["retry_after_violations"] == 0
            rows.append(
                [
                    name,
                    r["api_requests_total"],
                    r["max_in_flight"],
                    conc,
                    win,
                    r["sdk_window"],
                    rps if rps else "-",
                    r["sent_429"],
                    r["retry_after_violations"],
                    r["gate_pauses"],
                    r["failed_polls"],
                    mark(ok_c and ok_r and ok_v),
                ]
            )
            checks.append(
                f"- {name}: max_in_flight {r['max_in_flight']} ≤ {conc} "
                f"{mark(ok_c)}; max requests in any 1 s {win}"
                f"{f' ≤ {rps:g} ' + mark(ok_r) if rps else ''} (SDK-side starts: "
                f"{r['sdk_window']}); "
                f"retry_after_violations {r['retry_after_violations']} {mark(ok_v)}; "
                f"statuses {r['responses_by_status']}"
            )
            print(checks[-1], flush=True)
    return "\n".join(
        [
            f"### Correctness under load ({seconds:g} s per scenario, "
            "emulator in its own process)\n",
            machine_note() + "\n",
            md_table(
                [
                    "scenario",
                    "API requests",
                    "max in flight",
                    "C",
                    "max req in 1 s (emulator arrivals)",
                    "max starts in 1 s (SDK gate log)",
                    "R",
                    "429s sent",
                    "Retry-After violations",
                    "SDK gate pauses",
                    "failed polls",
                    "result",
                ],
                rows,
            ),
            "",
            *checks,
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
