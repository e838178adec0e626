"""The floor: the fewest polls any schedule can make for a given mean delay, distribution known.

For durations log-uniform on ``[a, b]`` (the issue's wide spreads) and poll times
``t1 < t2 < ...``, a task costs ``Σ S(t_{i-1})`` polls (``S(t0) = 1``) and waits ``t_i - T`` when
it finishes in ``(t_{i-1}, t_i]``. Minimising polls + λ·delay over the times gives the recurrence
``t_{i+1} = t_i + (F(t_i) - F(t_{i-1})) / f(t_i) - 1/λ``; shooting over ``t1`` and ``λ`` finds the
optimum for each delay. No online learner can beat it; the SDK's ratio in ``bench_requests.py``
is read against it. Pure arithmetic, no I/O, a few seconds.

    python benchmarks/bound.py
"""

from __future__ import annotations

import math

SPREADS = {"image": (5.0, 60.0, (0.8, 0.9, 0.93, 1.0)), "video": (60.0, 300.0, (2.7, 2.85, 3.0))}


class LogUniform:
    def __init__(self, a: float, b: float) -> None:
        self.a, self.b, self.span = a, b, math.log(b / a)

    def cdf(self, t: float) -> float:
        return min(max(math.log(max(t, self.a) / self.a) / self.span, 0.0), 1.0)

    def pdf(self, t: float) -> float:
        return 1.0 / (t * self.span) if self.a <= t <= self.b else 0.0

    def partial_mean(self, t: float) -> float:
        """∫ s f(s) ds from a to t."""
        return (min(max(t, self.a), self.b) - self.a) / self.span

    def naive_polls(self, n: int = 100_000) -> float:
        """A drift-free ``sleep(1); poll`` loop: ceil(T) polls (midpoint rule in log space)."""
        total = sum(math.ceil(self.a * math.exp(self.span * (i + 0.5) / n)) for i in range(n))
        return total / n


def cost(d: LogUniform, times: list[float]) -> tuple[float, float]:
    """(mean polls, mean delay) of a task polled at ``times`` (the last one at or past b)."""
    polls = delay = prev = 0.0
    for t in times:
        polls += 1.0 - d.cdf(prev) if prev > 0 else 1.0
        delay += t * (d.cdf(t) - d.cdf(prev)) - (d.partial_mean(t) - d.partial_mean(prev))
        prev = t
    return polls, delay


def schedule(d: LogUniform, first: float, lam: float) -> list[float]:
    times, prev = [first], 0.0
    while times[-1] < d.b and len(times) < 5000:
        t = times[-1]
        gap = (d.cdf(t) - d.cdf(prev)) / d.pdf(t) - 1.0 / lam
        if gap <= 1e-3:  # the recurrence has run dry: one last poll at b catches the rest
            times.append(d.b)
            break
        prev = t
        times.append(min(t + gap, d.b))
    return times


def frontier(d: LogUniform) -> list[tuple[float, float]]:
    """(mean delay, mean polls) of the best schedule found, for a grid of λ and first polls."""
    points = []
    for k in range(-120, 200):
        lam = math.exp(k / 40)
        for j in range(400):
            first = d.a + j * (d.b - d.a) / 2000
            points.append(cost(d, schedule(d, first, lam))[::-1])
    points.sort()
    best, out = math.inf, []
    for delay, polls in points:  # keep only points no other point beats on both counts
        if polls < best:
            best = polls
            out.append((delay, polls))
    return out


def main() -> None:
    print("### The floor: best schedule with the distribution known exactly\n")
    print("| durations | mean delay ≤ | polls/task | × fewer vs ideal naive |")
    print("|---|---|---|---|")
    for kind, (a, b, delays) in SPREADS.items():
        d = LogUniform(a, b)
        naive = d.naive_polls()
        front = frontier(d)
        for limit in delays:
            polls = min(p for delay, p in front if delay <= limit)
            print(f"| {kind} {a:g}-{b:g} s | {limit:.2f} | {polls:.2f} | {naive / polls:.2f} |")


if __name__ == "__main__":
    main()
