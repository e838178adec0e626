"""Live on the emulator: the default policy learns durations far from its prior, and a drift.

``sim_learning.py`` covers the whole grid without I/O; this checks the same behaviour end to
end — emulator in its own process, the SDK ``Poller`` with a fresh ``AdaptivePolicy`` (the
kind's catalogue prior only), batches of 100 tasks with 100 in flight (``reqbench.run_batch``).
Each batch is compared with the ideal naive 1 s loop on the very same tasks (``ceil(T)`` polls,
~0.5 s delay), as in ``bench_requests.py``. Cells:

- image model, true 1-4 s (prior 5-60 s: 1.5-5x faster than its low end);
- video model, true 10-30 s (prior 60-300 s: 6x faster);
- image model, true 20-200 s (prior 5-60 s: slower);
- video model, 60-300 s for 3 batches, then 3x faster (20-100 s) for 3 batches.

Pass: by the third batch (and the third after the drift) the mean delay is within 1.25x of
the kind's target and the requests are at most the naive loop's. Time is compressed per cell
(``time_scale``) so that ~100 tasks in flight stay at a few hundred requests per second.

    python benchmarks/bench_learning.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import anyio
import httpx
from common import IMAGE_MODEL, VIDEO_MODEL, EmulatorProcess, ctl, machine_note
from reqbench import BatchResult, run_batch, sdk_policy

BATCH = 100
SLACK = 1.25
# (kind, time scale, durations per batch)
CELLS: list[tuple[str, float, list[tuple[float, float]]]] = [
    ("image", 2.0, [(1.0, 4.0)] * 3),
    ("video", 5.0, [(10.0, 30.0)] * 3),
    ("image", 5.0, [(20.0, 200.0)] * 3),
    ("video", 20.0, [(60.0, 300.0)] * 3 + [(20.0, 100.0)] * 3),
]


def verdict(result: BatchResult, target: float) -> tuple[str, bool]:
    naive_polls, _ = result.ideal_naive()
    mean = result.stats["mean"]
    ok = mean <= SLACK * target and result.req_per_task <= naive_polls
    cell = f"{mean / target:.2f} / {naive_polls / result.req_per_task:.1f}x{'' if ok else ' ✗'}"
    return cell, ok


async def run_cell(kind: str, scale: float, spans: list[tuple[float, float]]) -> tuple[str, bool]:
    model = IMAGE_MODEL if kind == "image" else VIDEO_MODEL
    policy = sdk_policy(scale)
    target = policy.target_delay[kind]  # type: ignore[index]
    cells, oks = [], []
    with EmulatorProcess(time_scale=scale, durations={model: spans[0]}) as emu:
        for b, span in enumerate(spans):
            async with httpx.AsyncClient() as http:
                await ctl(http, emu.url, "reset", durations={model: list(span)})
            result = await run_batch(
                emu.url,
                label=f"b{b}",
                model=model,
                n=BATCH,
                seed=100 + b,
                time_scale=scale,
                policy=policy,
                in_flight=BATCH,
                max_concurrency=32,
            )
            cell, ok = verdict(result, target)
            cells.append(cell)
            oks.append(ok)
    spread = " → ".join(dict.fromkeys(f"{lo:g}-{hi:g} s" for lo, hi in spans))
    checked = [2] if len(spans) == 3 else [2, 5]  # the third batch, and the third after a drift
    passed = all(oks[i] for i in checked)
    return f"| {kind} | {spread} | {scale:g} | {' | '.join(cells)} |", passed


async def main_async(quick: bool) -> bool:
    print("### Live on the emulator: batches of 100, all in flight, fresh default policy\n")
    print(machine_note())
    print("\nEach cell: mean delay ÷ the kind's target / × fewer requests than the ideal naive")
    print(f"1 s loop on the same tasks (✗: delay above {SLACK}x target or more requests).\n")
    print("| kind | true durations | time scale | batch 1 | 2 | 3 | 4 | 5 | 6 |")
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for kind, scale, spans in CELLS[:2] if quick else CELLS:
        line, passed = await run_cell(kind, scale, spans)
        ok &= passed
        print(line + (" | | |" if len(spans) == 3 else ""), flush=True)
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the two faster-than-prior cells (~1 min)")
    args = p.parse_args()
    started = time.perf_counter()
    ok = anyio.run(main_async, args.quick)
    print(f"\n_{'PASS' if ok else 'FAIL'} (took {time.perf_counter() - started:.0f} s)_")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
