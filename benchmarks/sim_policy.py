"""The poll policy alone, simulated: no emulator, no I/O, thousands of tasks in seconds.

Keeps ``K`` tasks in flight (a new one starts when one finishes, as ``reqbench`` does), draws
durations log-uniform on the issue's wide spreads, and drives ``AdaptivePolicy`` exactly as the
poller does (``first_delay``, ``next_delay``, ``observe_running``, ``observe``). Reports requests
per task against the ideal naive loop (ceil(T)) and the mean detection delay, for a cold policy
and the same policy warm (after one batch), averaged over seeds. ``--frozen`` pins the model to
its prior (which for these spreads *is* the true distribution), separating the schedule's own
cost from the cost of learning. Used to find where the ratio was lost; see README.md.

    python benchmarks/sim_policy.py [--kind video] [--tasks 1000] [--seeds 6] [--frozen]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import IMAGE_MODEL, VIDEO_MODEL, WIDE  # noqa: E402

from gptunnel_async import AdaptivePolicy  # noqa: E402
from gptunnel_async._polling.policy import PollPolicy, TaskHint, report_running  # noqa: E402


def simulate(
    policy: PollPolicy, model: str, durations: list[float], k: int
) -> tuple[int, list[float]]:
    """(polls, detection delays) of one closed-loop batch driven through ``policy``'s protocol.

    At most ``k`` tasks in flight; a new one starts when one is seen done, as the poller's
    users do. Exactly what the poller calls, in the same order: ``first_delay``, then per poll
    ``observe_running`` + ``next_delay`` or ``observe``.
    """
    hint = TaskHint()
    heap: list[tuple[float, int, float, float, int]] = []  # (due, task, start, last seen, polls)
    started = polls = 0
    delays: list[float] = []

    def start(now: float) -> None:
        nonlocal started
        heapq.heappush(heap, (now + policy.first_delay(model, hint), started, now, 0.0, 1))
        started += 1

    for _ in range(min(k, len(durations))):
        start(0.0)
    while heap:
        now, i, t0, last, n = heapq.heappop(heap)
        polls += 1
        elapsed = now - t0
        if elapsed >= durations[i]:
            policy.observe(model, last, elapsed)
            delays.append(elapsed - durations[i])
            if started < len(durations):
                start(now)
        else:
            report_running(policy, model, last, elapsed)
            due = now + policy.next_delay(model, elapsed, n, hint)
            heapq.heappush(heap, (due, i, t0, elapsed, n + 1))
    return polls, delays


def run(policy: AdaptivePolicy, model: str, durations: list[float], k: int) -> tuple[float, float]:
    """(ideal naive polls / policy polls, mean delay) for one closed-loop batch."""
    polls, delays = simulate(policy, model, durations, k)
    return sum(math.ceil(d) for d in durations) / polls, statistics.fmean(delays)


def p95(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.95 * len(values)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=("image", "video"), default="video")
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--in-flight", type=int, default=100)
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--frozen", action="store_true", help="never learn: the prior only")
    args = p.parse_args()
    model = IMAGE_MODEL if args.kind == "image" else VIDEO_MODEL
    lo, hi = WIDE[args.kind]
    rows: dict[str, list[tuple[float, float, float]]] = {"cold": [], "warm": []}
    n = args.tasks
    for seed in range(args.seeds):
        policy = AdaptivePolicy(rng=random.Random(seed), prior_weight=1e9 if args.frozen else 8.0)
        rng = random.Random(1000 + seed)
        for phase in ("cold", "warm"):
            durations = [math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(n)]
            polls, delays = simulate(policy, model, durations, args.in_flight)
            naive = sum(math.ceil(d) for d in durations)
            rows[phase].append((naive / polls, statistics.fmean(delays), p95(delays)))
    print(
        f"{args.kind} {lo:g}-{hi:g} s, {args.tasks} tasks x {args.seeds} seeds, "
        f"{'frozen prior' if args.frozen else 'learning'}"
    )
    for phase, results in rows.items():
        ratios = [r for r, _, _ in results]
        delays = [d for _, d, _ in results]
        tails = [t for _, _, t in results]
        print(
            f"  {phase}: {statistics.fmean(ratios):.2f}x fewer requests than ideal naive "
            f"(min {min(ratios):.2f}), mean delay {statistics.fmean(delays):.2f} s "
            f"(max {max(delays):.2f}), p95 {statistics.fmean(tails):.2f} s (max {max(tails):.2f})"
        )


if __name__ == "__main__":
    main()
