"""Does the policy learn *any* model's durations? Simulated, no I/O, beside the naive 1 s loop.

The catalogue's priors are guesses; a real model may be 10x faster or slower than its kind's
prior, and may drift. For each cell of a grid (kind image/video; true durations log-uniform
on ``[lo, lo*ratio]`` with ``lo`` from 1 s to 600 s and ``ratio`` from 2 to 10), a fresh
``AdaptivePolicy`` (the kind's default prior only) runs batches of 100 tasks, all in flight,
exactly as the poller drives it (``sim_policy.simulate``), and each batch is compared with the
ideal naive loop on the same tasks (``ceil(T)`` polls, ~0.5 s delay):

- ``spreads``: by the third batch, the mean detection delay must be within 1.25x of the kind's
  target and the requests at most the naive loop's.
- ``drift``: after three batches the model becomes 3x faster or slower; by 200 tasks after the
  change (the third batch after it) the same must hold. Prints the recovery curve per batch.
- ``cost``: on the right prior (the kind's own spread), requests per task with exploration
  (the default) and without it (``explore=0``), and the mean delay of each.

    python benchmarks/sim_learning.py [--quick] [--only spreads,drift,cost]
    python benchmarks/sim_learning.py --cell image:2:3 [--cell video:10:2:0.333] [--seeds 5]
    python benchmarks/sim_learning.py --cell image:1:2 --seeds 6 --batches 8   # does it stay?
    python benchmarks/sim_learning.py --only spreads,drift --draw 1   # the grid on other seeds

``--cell kind:lo:ratio[:factor]`` runs single cells (with ``factor``, the drift run) on the
grid's own seeds, and with ``--seeds N`` on N-1 more, to tell a real miss from one draw's luck.
Exit status: 0 when every cell meets its target, 3 when one misses, 1 on a crash.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import IMAGE_MODEL, VIDEO_MODEL, WIDE  # noqa: E402
from sim_policy import simulate  # noqa: E402

from gptunnel_async import AdaptivePolicy  # noqa: E402

MODELS = {"image": IMAGE_MODEL, "video": VIDEO_MODEL}
SEED_STEP = 1_000_003  # another draw of a cell: its seed plus this many times the draw's number
BATCH = 100  # tasks per batch, all in flight
SLACK = 1.25  # mean delay within this factor of the kind's target


def durations(rng: random.Random, lo: float, hi: float, n: int = BATCH) -> list[float]:
    return [math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(n)]


class Batch:
    """One batch's figures against the ideal naive loop on the same tasks."""

    def __init__(self, polls: int, delays: list[float], durs: list[float], target: float) -> None:
        self.polls = polls / len(durs)
        self.naive = statistics.fmean(max(1, math.ceil(d)) for d in durs)
        self.delay = statistics.fmean(delays)
        self.target = target

    @property
    def ok(self) -> bool:
        return self.delay <= SLACK * self.target and self.polls <= self.naive

    def cell(self) -> str:
        flag = "" if self.ok else " ✗"
        return f"{self.delay / self.target:.2f} / {self.naive / self.polls:.1f}x{flag}"


def run_batches(
    policy: AdaptivePolicy, kind: str, spans: list[tuple[float, float]], seed: int
) -> list[Batch]:
    rng = random.Random(seed)
    model = MODELS[kind]
    target = policy.target_delay[kind]  # type: ignore[index]
    out = []
    for lo, hi in spans:
        durs = durations(rng, lo, hi)
        polls, delays = simulate(policy, model, durs, BATCH)
        out.append(Batch(polls, delays, durs, target))
    return out


def grid(quick: bool) -> tuple[list[float], list[float]]:
    if quick:
        return [1.0, 20.0, 600.0], [2.0, 10.0]
    return [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 600.0], [2.0, 3.0, 5.0, 10.0]


def spread_seed(kind: str, lo: float, ratio: float) -> int:
    return int(lo * 100 + ratio * 7) + (0 if kind == "image" else 50_000)


def drift_seed(lo: float, ratio: float, factor: float) -> int:
    return int(lo * 100 + ratio * 7 + factor * 1000) + 90_000


def spread_cell(kind: str, lo: float, ratio: float, seed: int, batches: int = 3) -> list[Batch]:
    policy = AdaptivePolicy(rng=random.Random(seed))
    return run_batches(policy, kind, [(lo, lo * ratio)] * batches, seed)


def drift_cell(kind: str, lo: float, ratio: float, factor: float, seed: int) -> list[Batch]:
    policy = AdaptivePolicy(rng=random.Random(seed))
    hi = lo * ratio
    return run_batches(policy, kind, [(lo, hi)] * 3 + [(lo * factor, hi * factor)] * 4, seed)


def cells(specs: list[str], seeds: int, longer: int = 3) -> bool:
    """Single cells, on the grid's seed and ``seeds - 1`` more (the pass figure is batch 3 of
    the spread run, or batch 3 after the change of the drift run). ``longer`` > 3 runs a spread
    that many batches and judges every one from the third: does it stay there?"""
    ok = True
    judged_n = missed_n = 0
    for spec in specs:
        kind, *nums = spec.split(":")
        lo, ratio, *factor = (float(x) for x in nums)
        factor = [1 / round(1 / f) if f < 1 else f for f in factor]  # 0.333 is the grid's 1/3
        for k in range(seeds):
            if factor:
                seed = drift_seed(lo, ratio, factor[0]) + SEED_STEP * k
                batches = drift_cell(kind, lo, ratio, factor[0], seed)
                shown, verdicts = batches[2:], [batches[5].ok]
            else:
                seed = spread_seed(kind, lo, ratio) + SEED_STEP * k
                batches = spread_cell(kind, lo, ratio, seed, max(longer, 3))
                shown, verdicts = batches, [b.ok for b in batches[2:]]
            ok &= all(verdicts)
            judged_n += len(verdicts)
            missed_n += verdicts.count(False)
            print(f"{spec} seed {seed}: " + " | ".join(b.cell() for b in shown), flush=True)
    print(f"\njudged batches: {judged_n}, missed: {missed_n}")
    return ok


def spreads(quick: bool, draw: int = 0) -> bool:
    los, ratios = grid(quick)
    print("### Any true duration: batch 1 / 2 / 3 of 100 (all in flight), fresh policy\n")
    print("Each cell: mean delay ÷ the kind's target / × fewer requests than the naive 1 s loop")
    print(f"(✗: delay above {SLACK}x target or more requests than naive). Pass = batch 3 ✓.\n")
    print("| kind | durations | batch 1 | batch 2 | batch 3 |")
    print("|---|---|---|---|---|")
    ok = True
    for kind in MODELS:
        for lo in los:
            for ratio in ratios:
                seed = spread_seed(kind, lo, ratio) + SEED_STEP * draw
                batches = spread_cell(kind, lo, ratio, seed)
                ok &= batches[-1].ok
                cells = " | ".join(b.cell() for b in batches)
                print(f"| {kind} | {lo:g}-{lo * ratio:g} s | {cells} |")
    return ok


def drift(quick: bool, draw: int = 0) -> bool:
    los, ratios = grid(quick)
    print("\n### Drift: 3 batches, then the model becomes 3x faster or slower\n")
    print("Cells as above, for the batches *after* the change; pass = batch 3 after it ✓")
    print("(by 200 tasks after the change).\n")
    print("| kind | durations | change | before | after 1 | after 2 | after 3 | after 4 |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for kind in MODELS:
        for lo in los:
            for ratio in ratios:
                for factor in (1 / 3, 3.0):
                    hi = lo * ratio
                    seed = drift_seed(lo, ratio, factor) + SEED_STEP * draw
                    batches = drift_cell(kind, lo, ratio, factor, seed)
                    ok &= batches[5].ok
                    change = "3x faster" if factor < 1 else "3x slower"
                    cells = " | ".join(b.cell() for b in batches[2:])
                    print(f"| {kind} | {lo:g}-{hi:g} s | {change} | {cells} |")
    return ok


def cost(quick: bool, draw: int = 0) -> bool:
    seeds = 2 if quick else 6
    n = 300 if quick else 1000
    print("\n### Exploration's cost on the right prior (the kind's own spread)\n")
    print(f"{n} tasks, 100 in flight, {seeds} seeds; requests per task and mean delay.\n")
    print("| kind | durations | naive req/task | explore off | explore on (default) | cost |")
    print("|---|---|---|---|---|---|")
    for kind, (lo, hi) in WIDE.items():
        rows: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        naive = []
        for seed in range(seeds):
            durs = durations(random.Random(500 + seed), lo, hi, n)
            naive.append(statistics.fmean(math.ceil(d) for d in durs))
            for mode, make in _modes().items():
                polls, delays = simulate(make(seed), MODELS[kind], durs, BATCH)
                rows[mode].append((polls / n, statistics.fmean(delays)))
        off = statistics.fmean(p for p, _ in rows["off"])
        on = statistics.fmean(p for p, _ in rows["on"])
        d_off = statistics.fmean(d for _, d in rows["off"])
        d_on = statistics.fmean(d for _, d in rows["on"])
        cost_pct = 100 * (on / off - 1)
        print(
            f"| {kind} | {lo:g}-{hi:g} s | {statistics.fmean(naive):.2f} | "
            f"{off:.2f} at {d_off:.2f} s | {on:.2f} at {d_on:.2f} s | {cost_pct:+.1f} % |"
        )
    return True


def _modes() -> dict[str, Callable[[int], AdaptivePolicy]]:
    return {
        "off": lambda seed: AdaptivePolicy(rng=random.Random(seed), explore=0.0),
        "on": lambda seed: AdaptivePolicy(rng=random.Random(seed)),
    }


#: The exit status when a cell misses its target: apart from 1 (a crash, an uncaught error),
#: so a smoke run can accept a miss and still fail on a crash.
MISSED = 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a corner grid, fewer seeds (~1 min)")
    p.add_argument("--only", default="spreads,drift,cost")
    p.add_argument("--cell", action="append", default=[], help="kind:lo:ratio[:factor]")
    p.add_argument("--seeds", type=int, default=1, help="with --cell: seeds per cell")
    p.add_argument(
        "--batches", type=int, default=3, help="with --cell: batches per spread, all judged from 3"
    )
    p.add_argument(
        "--draw", type=int, default=0, help="the grid on other seeds: 1, 2, ... (cost: unchanged)"
    )
    args = p.parse_args()
    figures = {"spreads": spreads, "drift": drift, "cost": cost}
    started = time.perf_counter()
    if args.cell:
        ok = cells(args.cell, args.seeds, args.batches)
        print(f"\n_{'PASS' if ok else 'FAIL'} (took {time.perf_counter() - started:.0f} s)_")
        sys.exit(0 if ok else MISSED)
    ok = True
    for name in args.only.split(","):
        ok &= figures[name](args.quick, args.draw)
    print(f"\n_{'PASS' if ok else 'FAIL'} (took {time.perf_counter() - started:.0f} s)_")
    sys.exit(0 if ok else MISSED)


if __name__ == "__main__":
    main()
