"""When to poll a task next: as rarely as possible for a target detection delay.

For a task whose duration ``T`` follows a distribution with density ``f`` and survival ``S``, a
poll at time ``t`` costs one request with probability ``S(t)`` (the task is still running), and
spacing ``Δ`` around ``t`` adds ``Δ/2`` of delay to the tasks finishing there. Minimising
``Σ S(tᵢ) + λ·E[delay]`` point by point gives ``Δ(t) ∝ 1/√h(t)`` with ``h = f/S`` the hazard
rate: poll densely where tasks are likely to finish *now*, sparsely elsewhere, and never before
the earliest plausible finish. The constant is set so the expected mean delay equals
``target_delay``.

Each model's distribution is learned online (``DurationModel``): a log-spaced histogram seeded
with a prior per model kind, fed with each finished task's duration as bracketed by its last
"still running" poll and its "done" poll. Everything here is pure and clock-free; callers pass
times in seconds since the task was created.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol

from ..catalog import PRIORS, DurationPrior, ModelKind, get_model, kind_of

_BINS_PER_DECADE = 40
_MIN_SECONDS = 0.05
_MAX_SECONDS = 4 * 3600.0
_N_BINS = math.ceil(math.log10(_MAX_SECONDS / _MIN_SECONDS) * _BINS_PER_DECADE)


def _bin_of(seconds: float) -> int:
    seconds = min(max(seconds, _MIN_SECONDS), _MAX_SECONDS * 0.999)
    return int(math.log10(seconds / _MIN_SECONDS) * _BINS_PER_DECADE)


def _bin_edge(index: int) -> float:
    return float(_MIN_SECONDS * 10 ** (index / _BINS_PER_DECADE))


class DurationModel:
    """A model's duration distribution: log-histogram of prior pseudo-counts plus observations.

    The prior is log-uniform over ``[low, high]`` of the kind's ``DurationPrior`` with weight
    ``prior_weight`` observations; with each real observation the data take over. Schedules
    derived from it are cached and rebuilt after every ``rebuild_every`` observations.
    """

    __slots__ = ("_counts", "_dirty", "_schedule", "_total", "observed", "rebuild_every")

    def __init__(
        self, prior: DurationPrior, *, prior_weight: float = 8.0, rebuild_every: int = 16
    ) -> None:
        self._counts = [0.0] * _N_BINS
        lo, hi = _bin_of(prior.low), _bin_of(prior.high)
        per_bin = prior_weight / (hi - lo + 1)
        for i in range(lo, hi + 1):
            self._counts[i] += per_bin
        self._total = prior_weight
        self.observed = 0
        self.rebuild_every = rebuild_every
        self._schedule: _Schedule | None = None
        self._dirty = 0

    def observe(self, seconds: float) -> None:
        """Record one task's (estimated) duration."""
        if not math.isfinite(seconds) or seconds <= 0:
            return
        self._counts[_bin_of(seconds)] += 1.0
        self._total += 1.0
        self.observed += 1
        self._dirty += 1

    def quantile(self, q: float) -> float:
        """The ``q``-quantile of the current distribution (seconds)."""
        return _quantile(self._counts, self._total, q)

    def schedule(self, target_delay: float, *, first_quantile: float) -> _Schedule:
        """The spacing table for this distribution, cached until enough new data arrived."""
        sched = self._schedule
        if (
            sched is None
            or sched.target_delay != target_delay
            or sched.first_quantile != first_quantile
            or self._dirty >= self.rebuild_every
        ):
            sched = _Schedule.build(self._counts, self._total, target_delay, first_quantile)
            self._schedule = sched
            self._dirty = 0
        return sched


@dataclass(frozen=True)
class _Schedule:
    """Per-bin poll spacing ``Δ = c/√h``, with ``c`` calibrated to the target mean delay."""

    target_delay: float
    first_quantile: float
    first_poll: float
    last_edge: float
    spacing: tuple[float, ...]

    @staticmethod
    def build(
        counts: list[float], total: float, target_delay: float, first_quantile: float
    ) -> _Schedule:
        # Smooth a little so a single observation doesn't make an isolated spike of hazard.
        smoothed = counts[:]
        for i in range(1, len(counts) - 1):
            smoothed[i] = 0.25 * counts[i - 1] + 0.5 * counts[i] + 0.25 * counts[i + 1]
        norm = sum(smoothed) or 1.0
        inv_sqrt_h: list[float] = []
        weights: list[float] = []
        survival = 1.0
        last_edge = _MIN_SECONDS
        for i, c in enumerate(smoothed):
            p = c / norm
            width = _bin_edge(i + 1) - _bin_edge(i)
            if p > 0 and survival > 1e-9:
                # hazard over the bin, using the survival at its middle
                h = p / (width * max(survival - p / 2, 1e-12))
                inv_sqrt_h.append(1 / math.sqrt(h))
                weights.append(p)
                last_edge = _bin_edge(i + 1)
            else:
                inv_sqrt_h.append(0.0)
                weights.append(0.0)
            survival -= p
        # E[delay] ≈ Σ p_i Δ_i / 2 = (c/2) Σ p_i /√h_i  →  c = 2·target / Σ p_i/√h_i
        denom = sum(w * s for w, s in zip(weights, inv_sqrt_h, strict=True))
        scale = (2 * target_delay / denom) if denom > 0 else 0.0
        spacing = tuple(scale * s for s in inv_sqrt_h)
        first = _quantile(counts, total, first_quantile)
        return _Schedule(target_delay, first_quantile, first, last_edge, spacing)

    def next_interval(self, elapsed: float, fallback: float) -> float:
        if elapsed >= self.last_edge:
            return fallback
        gap = self.spacing[_bin_of(elapsed)]
        return gap if gap > 0 else fallback


def _quantile(counts: list[float], total: float, q: float) -> float:
    target = q * total
    acc = 0.0
    for i, c in enumerate(counts):
        if c and acc + c >= target:
            lo, hi = _bin_edge(i), _bin_edge(i + 1)
            return float(lo * (hi / lo) ** ((target - acc) / c))
        acc += c
    return _MAX_SECONDS


class PollPolicy(Protocol):
    """What the poller asks of a schedule. Replace it to poll your own way."""

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        """Seconds after creation of the first poll."""
        ...

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        """Seconds until the next poll of a task still running ``elapsed`` s after creation."""
        ...

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        """A task finished somewhere in ``(lower, upper]`` seconds after creation."""
        ...


@dataclass(frozen=True)
class TaskHint:
    """Server-side progress, when the task reports it (Midjourney's ``percent``)."""

    percent: float | None = None
    percent_elapsed: float | None = None  # seconds after creation at which percent was seen


@dataclass
class AdaptivePolicy:
    """The default schedule: learned per-model distributions, hazard-shaped spacing.

    ``target_delay`` (seconds, per kind) is the main knob: the expected mean time between a task
    finishing and the poll that sees it. Halving it roughly multiplies polls by √2 to 2.
    ``min_interval``/``max_interval`` bound every gap; ``jitter`` spreads polls (fraction of the
    gap) so many tasks created together do not poll in lockstep.
    """

    target_delay: dict[ModelKind, float] = field(
        default_factory=lambda: {"image": 0.9, "video": 2.8, "audio": 2.0}
    )
    first_quantile: float = 0.01
    min_interval: float = 0.25
    max_interval: float = 30.0
    tail_growth: float = 0.1
    jitter: float = 0.05
    prior_weight: float = 8.0
    priors: dict[ModelKind, DurationPrior] = field(default_factory=lambda: dict(PRIORS))
    rng: random.Random = field(default_factory=random.Random, repr=False)
    clock_scale: float = 1.0
    _models: dict[str, DurationModel] = field(default_factory=dict, init=False, repr=False)

    def model_stats(self, model: str | None) -> DurationModel:
        key = model or "?"
        stats = self._models.get(key)
        if stats is None:
            spec = get_model(key)
            kind = spec.kind if spec else kind_of(key)
            prior = self.priors[kind]
            scaled = DurationPrior(
                prior.low / self.clock_scale,
                prior.median / self.clock_scale,
                prior.high / self.clock_scale,
            )
            stats = DurationModel(scaled, prior_weight=self.prior_weight)
            self._models[key] = stats
        return stats

    def _target(self, model: str | None) -> float:
        return self.target_delay.get(kind_of(model or "?"), 1.0) / self.clock_scale

    def _jittered(self, value: float) -> float:
        if self.jitter <= 0:
            return value
        return value * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def _schedule(self, model: str | None) -> _Schedule:
        return self.model_stats(model).schedule(
            self._target(model), first_quantile=self.first_quantile
        )

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        first = self._schedule(model).first_poll
        return max(self._jittered(first), self.min_interval / self.clock_scale)

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        lo = self.min_interval / self.clock_scale
        hi = self.max_interval / self.clock_scale
        fallback = max(self._target(model) * 2, elapsed * self.tail_growth)
        gap = self._schedule(model).next_interval(elapsed, fallback)
        eta = _eta_from_percent(hint, elapsed)
        if eta is not None:
            # Aim the next poll at the projected finish, but never slower than the schedule's
            # own spacing near the end, and never poll in a busy loop.
            gap = max(min(eta, hi), self._target(model) * 2) if eta > gap else gap
        return min(max(self._jittered(gap), lo), hi)

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        if upper <= 0:
            return
        lower = max(lower, 0.0)
        # A task seen done at its first poll finished anywhere in (0, upper]: lean low so a late
        # first poll corrects itself; otherwise the bracket's middle.
        estimate = upper * 0.7 if lower <= 0 else (lower + upper) / 2
        self.model_stats(model).observe(estimate)


def _eta_from_percent(hint: TaskHint, elapsed: float) -> float | None:
    """Seconds until 100 %, extrapolating linearly from the last reported percent."""
    if hint.percent is None or hint.percent_elapsed is None or not 0 < hint.percent < 100:
        return None
    rate = hint.percent / max(hint.percent_elapsed, 1e-6)
    remaining = (100 - hint.percent) / rate - (elapsed - hint.percent_elapsed)
    return max(remaining, 0.0)


class FixedIntervalPolicy:
    """Poll every ``interval`` seconds, the first after ``interval`` (what public clients do)."""

    def __init__(self, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        return self.interval

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        return self.interval

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        return None
