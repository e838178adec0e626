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

import bisect
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from .._logs import logger
from ..catalog import PRIORS, DurationPrior, ModelKind, get_model, kind_of

_BINS_PER_DECADE = 40
_MIN_SECONDS = 0.05
_MAX_SECONDS = 4 * 3600.0
_N_BINS = math.ceil(math.log10(_MAX_SECONDS / _MIN_SECONDS) * _BINS_PER_DECADE)
_UNSEEN = 0.5  # share of each finish spread over its bracket regardless of the estimate
_REACH = 4.0  # ... over the bracket's top factor 4 (also how far below its first poll a probe goes)
_FIRST_LOOK_MEMORY = 32.0  # tasks over which the share done at their first look is tracked
_DRIFT_MEMORY = 0.97  # the drift test's sums age by this per finish (~30 tasks)
_DRIFT_ALARM = 4.0  # ... and call a drift this many standard deviations off
_DRIFT_MIN = 8.0  # ... and at least this many finishes off (a handful proves nothing)
_DRIFT_SETTLE = 100  # ... only after this many finishes (from the start, and after each drift)
_DRIFT_KEEP = 0.1  # ... on which the old records keep this weight
_SURVIVAL_FLOOR = 0.01  # the test ignores looks past what the estimate has seen
_FIRST_DONE_UNRESOLVED = 0.1  # this share more done at first look than expected: the start
# may only fall
_EXPECTED_DONE_CAP = 0.1  # a schedule expecting more done at its first poll echoes those tasks
_DONE_CALM, _DONE_ALARM = 0.15, 0.5  # the excess: probes at the base rate below, at most above
_EDGE_STEPS = 3  # the start: this many steps from q₁ to q₂ below q₁ (see ``schedule``)


def _bin_of(seconds: float) -> int:
    seconds = min(max(seconds, _MIN_SECONDS), _MAX_SECONDS * 0.999)
    return int(math.log10(seconds / _MIN_SECONDS) * _BINS_PER_DECADE)


def _bin_edge(index: int) -> float:
    return float(_MIN_SECONDS * 10 ** (index / _BINS_PER_DECADE))


class DurationModel:
    """A model's duration distribution, learned as a survival curve (censoring-aware).

    Finished tasks alone are a biased sample while many are in flight — the short ones finish
    first — so every poll that finds a task *still running* counts too. Per log-spaced bin,
    ``exposure`` is the time tasks were seen at risk in it (in bin widths) and ``events`` how
    many finished in it; their ratio is the bin's finishing rate (piecewise-constant hazard).
    A prior per model kind (log-uniform over ``[low, high]``) contributes pseudo-counts worth
    ``prior_weight`` tasks at first and ``W²/(W + n)`` after ``n`` finishes. Each finish makes
    earlier records count ``decay`` times less (memory of ~1/(1-decay) tasks), so a model that
    drifts is followed. Schedules derived from it are cached and rebuilt every
    ``rebuild_every`` finishes.
    """

    __slots__ = (
        "_density",
        "_dirty",
        "_drift",
        "_events",
        "_exposure",
        "_inc",
        "_known_until",
        "_live",
        "_prior",
        "_prior_kept",
        "_prior_survival",
        "_relearn_until",
        "_schedule",
        "_settled_at",
        "_split_by",
        "_survival",
        "decay",
        "drifts",
        "first_done",
        "forget_on_drift",
        "observed",
        "prior_weight",
        "probe_credit",
        "rebuild_every",
        "smoothing",
        "unseen",
    )

    def __init__(
        self,
        prior: DurationPrior,
        *,
        prior_weight: float = 8.0,
        decay: float = 0.998,
        smoothing: float = 2.0,
        rebuild_every: int = 16,
        unseen: float = _UNSEEN,
        forget_on_drift: bool = True,
    ) -> None:
        self._prior = _log_uniform(prior.low, prior.high)
        survival, self._prior_survival = 1.0, []
        for p in self._prior:
            self._prior_survival.append(survival)
            survival = max(survival - p, 0.0)
        self._events = [0.0] * _N_BINS
        self._exposure = [0.0] * _N_BINS
        self._live = _Live()  # the last finishes, shared again at every rebuild
        self._inc = 1.0  # weight of the newest record, in the arrays' units
        self.prior_weight: float = prior_weight
        self.decay: float = decay
        self.smoothing: float = smoothing
        self.observed: int = 0
        self.first_done: float = 0.0  # share of recent first looks that found the task done
        self.probe_credit: float = 0.0  # explore_rate summed over new tasks; a probe per whole unit
        self.rebuild_every: int = rebuild_every
        self.unseen: float = unseen
        self._schedule: _Schedule | None = None
        self._density: list[float] | None = None  # the estimate the schedule was built from
        self._split_by: list[float] | None = None  # ... raw, as the live finishes are shared
        self._survival = _survival_at_edges(self._prior)  # ... as S at each bin edge
        self._known_until = _support_end(self._prior)  # ... and where it ends
        self._drift = [0.0, 0.0, 0.0]  # drift test: observed, expected finishes, variance
        self.forget_on_drift: bool = forget_on_drift
        self.drifts: int = 0  # how often a drift was detected (and old records forgotten)
        self._prior_kept = 1.0  # the prior's weight left after drifts
        self._settled_at = _DRIFT_SETTLE  # finishes seen before the drift test may fire
        self._relearn_until = 0  # ... and until which old records are distrusted after one
        self._dirty = 0

    def _expose(self, since: float, until: float, weight: float = 1.0) -> None:
        """Add ``weight`` tasks' time at risk over ``(since, until]``, per bin, in bin widths.

        Time at risk, not "reached the bin": a task seen running halfway into a bin has
        been at risk for half of it. Counting it whole would make the bins at the frontier of
        what has been seen — where every task is only partway in — look as if nothing finishes
        there, and stretch the gaps exactly where the next finishes are.
        """
        for i in range(_bin_of(since), _bin_of(until) + 1):
            lo, hi = _EDGES[i], _EDGES[i + 1]
            overlap = (min(until, hi) - max(since, lo)) / (hi - lo)
            if overlap > 0:
                self._exposure[i] += self._inc * weight * overlap

    def running(self, since: float, elapsed: float) -> None:
        """A task last seen running at ``since`` s is still running at ``elapsed`` s."""
        if math.isfinite(elapsed) and elapsed > since:
            if since <= 0:
                self._first_look(done=False)
            self._test(since, elapsed, 0.0)
            self._expose(max(since, 0.0), elapsed)

    def _test(self, since: float, until: float, finished: float) -> None:
        """Score one look against the estimate: did the task finish in ``(since, until]``
        as often as the estimate says? (A one-sample log-rank test, censoring-aware.)

        Observed minus expected finishes, summed over recent looks, is a zero-mean walk while
        the estimate is right, however many tasks are in flight and whichever finish first.
        Far off zero, the model has drifted (faster if positive, slower if negative): the old
        records then say the wrong thing — hours of "nothing finishes before 60 s" would
        drown the first few finishes at 20 s — so most of them are forgotten at once.
        """
        if self.observed < self._settled_at:
            return  # only the settled estimate is scored (see _follow_drift)
        survival = self._survival
        s0 = _interpolate(survival, since)
        if s0 < _SURVIVAL_FLOOR or until > self._known_until:
            return  # past the last finish the estimate has seen, it predicts nothing
        q = min(max(1.0 - _interpolate(survival, until) / s0, 0.0), 1.0)
        o, e, v = self._drift
        self._drift = [o + finished, e + q, v + q * (1.0 - q)]

    def _follow_drift(self) -> None:
        """After each finish: age the test's sums, and forget most records on an alarm."""
        o, e, v = (x * _DRIFT_MEMORY for x in self._drift)
        self._drift = [o, e, v]
        off = abs(o - e)
        # not while the estimate is still being learned (cold, or just after a drift): it
        # lags the finishes at its frontier then, and the test would cry drift at every step
        settled = self.observed >= self._settled_at
        if self.forget_on_drift and settled and off > max(_DRIFT_MIN, _DRIFT_ALARM * math.sqrt(v)):
            self._settled_at = self.observed + _DRIFT_SETTLE
            self._relearn_until = self.observed + 2 * _DRIFT_SETTLE
            self._inc /= _DRIFT_KEEP  # the new records count 1/_DRIFT_KEEP times the old
            self._prior_kept *= _DRIFT_KEEP
            self._drift = [0.0, 0.0, 0.0]
            self._dirty = self.rebuild_every
            self.drifts += 1

    def _excess_done(self) -> float:
        """How much larger the share of first looks finding the task done is than the
        schedule expects (a first poll a little after the earliest finish finds a few done).

        What it expects counts up to ``_EXPECTED_DONE_CAP`` only: tasks done at their first
        look are shared by the estimate just below that look (it knows nothing lower), so an
        estimate that expects a quarter done there mostly echoes those very tasks, and a model
        whose lower edge sits below its prior's (50 s videos, prior from 60 s) would never be
        probed: its first polls found a quarter done, 5 s late each, batch after batch.
        """
        sched = self._schedule
        expected = sched.first_done if sched is not None else 0.0
        return self.first_done - min(expected, _EXPECTED_DONE_CAP)

    @property
    def surprise(self) -> float:
        """0 while first looks find about as many tasks done as the schedule expects,
        rising to 1 when far more are (the schedule starts too late)."""
        excess = self._excess_done()
        return min(max((excess - _DONE_CALM) / (_DONE_ALARM - _DONE_CALM), 0.0), 1.0)

    @property
    def reach(self) -> float:
        """How far below a first poll to look: a factor 4, up to 4³ when first looks are
        far too late (a model 10x faster than its prior is found in two steps, not five)."""
        return float(_REACH ** (1 + 2 * self.surprise))

    def _first_look(self, *, done: bool) -> None:
        """Track the share of first looks (probes included) that found the task done."""
        self.first_done += ((1.0 if done else 0.0) - self.first_done) / _FIRST_LOOK_MEMORY

    def finished(self, lower: float, upper: float) -> None:
        """A task last seen running at ``lower`` s was seen done at ``upper`` s.

        When in ``(lower, upper]`` it finished is unknown, so its one event is shared among the
        bins of that bracket in proportion to the current estimate (the self-consistency step
        of Turnbull's estimator), and so is its exposure to each bin. Putting it at the bracket's
        middle instead would pile events at the middles of the poll gaps, and a task seen done
        at its *first* poll — bracket ``(0, first]`` — would land far below anything possible.

        The share is not fixed once and for all: the last ``_LIVE`` finishes are shared again
        by the newest estimate at every rebuild (Turnbull's iteration, one step per rebuild),
        and only then committed. A bracket ``(0, 7 s]`` from a batch polled late first, split
        when the estimate knew nothing better, would otherwise keep its mass far below 2 s for
        good, however many later tasks were seen running there — and that phantom mass, which
        the schedule believes is detected early, widens every gap after it.
        """
        if not (math.isfinite(upper) and upper > 0):
            return
        lower = min(max(lower, 0.0), upper)
        if lower <= 0:
            self._first_look(done=True)
        self._test(lower, upper, 1.0)
        self._follow_drift()
        self._inc /= self.decay
        if self._inc > 1e12:  # rescale now and then; the ratios are what matter
            self._rescale(1.0 / self._inc)
        first, last = _bin_of(lower), _bin_of(upper)
        if first == last:  # all in one bin: nothing to share
            self._events[first] += self._inc
            overlap = (upper - max(lower, _EDGES[first])) / (_EDGES[first + 1] - _EDGES[first])
            self._exposure[first] += self._inc * overlap / 2
        else:
            self._live.add(_Finish.make(lower, upper, self._inc, self.reach))
            while len(self._live.finishes) > _LIVE:
                self._commit(self._live.pop())
        self.observed += 1
        self._dirty += 1

    def _rescale(self, factor: float) -> None:
        self._events = [c * factor for c in self._events]
        self._exposure = [c * factor for c in self._exposure]
        self._live.rescale(factor)
        self._inc *= factor

    def _unseen(self) -> tuple[float, float]:
        """The share of a finish spread over its bracket's top instead of by the estimate:
        (done at its first look, between two looks).

        Without it an estimate could never grow mass where it has none: a model faster than
        its prior, whose tasks are all done at their first poll, would pile every finish just
        below that poll, and the first poll would never move earlier. It is ``unseen`` while
        far more first looks find the task done than the schedule expects (``surprise``),
        none once they find it running (then the estimate, which by then has seen where the
        finishes are, shares them all again), and none either once the first poll comes
        within one target of creation: a task done by then waited less than the target,
        there is nothing left to seek below, and the guess would only put phantom mass far
        below anything seen, which the schedule believes is detected early and pays for with
        wider gaps after it.
        """
        sched = self._schedule
        seek = sched is None or sched.first_poll > sched.key[0]
        first = self.unseen * self.surprise if seek else 0.0
        if self.observed < self._relearn_until and self.unseen > 0:
            # after a drift, a bracket between two looks is not shared by the estimate at
            # all: a wide one (polled sparsely because the old estimate put little there)
            # would only ever confirm the old shape, at every rebuild again
            return first, 1.0
        return first, first

    def _commit(self, finish: _Finish) -> None:
        """A finish leaving the live window: its current share goes into the records."""
        density = self._split_by if self._split_by is not None else self._prior
        first_u, between_u = self._unseen()
        events, exposure = finish.split(density, between_u if finish.between else first_u)
        for k, (e, x) in enumerate(zip(events, exposure, strict=True)):
            self._events[finish.first + k] += e
            self._exposure[finish.first + k] += x

    def _refresh(self) -> None:
        """Share the live finishes again by the current estimate (a Turnbull step).

        By the raw estimate, not the smoothed one the schedule is built from: smoothing at
        every step would leak mass across a sharp edge a little further each time (a model
        whose tasks all take 2 s or more would come to "finish" at 1.5 s).
        """
        self._split_by = self.counts(smoothed=False, fresh=False)[0]
        self._live.share(self._split_by, *self._unseen())

    def export(self) -> dict[str, Any]:
        """What was learned, as plain JSON-able values (records in units of one task)."""
        scale = 1.0 / self._inc
        events, exposure = self._records()
        bins = [
            [i, _sig(e * scale), _sig(x * scale)]
            for i, (e, x) in enumerate(zip(events, exposure, strict=True))
            if e * scale > 1e-9 or x * scale > 1e-9
        ]
        return {
            "observed": self.observed,
            "first_done": _sig(self.first_done),
            "prior_kept": _sig(self._prior_kept),
            "bins": bins,
        }

    def restore(self, learned: _Learned) -> None:
        """Take over a checked export (see ``_check_model``); the schedule is rebuilt."""
        self._events, self._exposure = list(learned.events), list(learned.exposure)
        self._live = _Live()
        self._inc = 1.0
        self.observed = learned.observed
        self.first_done = learned.first_done
        self._prior_kept = learned.prior_kept
        self._settled_at = self.observed + _DRIFT_SETTLE
        self._drift = [0.0, 0.0, 0.0]
        self._schedule = self._density = self._split_by = None
        self._dirty = 0

    def counts(self, *, smoothed: bool = True, fresh: bool = True) -> tuple[list[float], float]:
        """The duration density per bin (summing to ≤ 1) implied by the learned rates.

        ``smoothed``: events and exposure go through a Gaussian kernel in log-duration
        (``smoothing`` bins wide, confined to the bins holding events), since a few hundred
        tasks are too few to take a rate from raw. Quantiles use the raw estimate.
        ``fresh``: finishes seen since the last rebuild are shared first (else left out).
        """
        scale = 1.0 / self._inc
        # the prior fades with every finish ever seen, not with the records kept: what was
        # forgotten on a drift was this model's own history, and the kind's guess is no better
        # (and a drift ages it like any old record: else the forgotten evidence against it —
        # hours of "nothing finished here" — would hand the kind's guess back its full weight)
        w = self.prior_weight**2 / (self.prior_weight + self.observed) * self._prior_kept
        events, exposure = self._records(fresh=fresh)
        if smoothed and self.smoothing > 0:
            support = _support(events)
            events = _smooth(events, self.smoothing, support)
            exposure = _smooth(exposure, self.smoothing, support)
        density: list[float] = []
        survival = 1.0
        for e, x, p, ps in zip(events, exposure, self._prior, self._prior_survival, strict=True):
            at_risk = x * scale + w * ps
            rate = (e * scale + w * p) / at_risk if at_risk > 1e-12 else 0.0
            mass = survival * -math.expm1(-rate)
            density.append(mass)
            survival -= mass
        return density, 1.0

    def _records(self, *, fresh: bool = True) -> tuple[list[float], list[float]]:
        """(events, exposure) per bin: the committed records and the live finishes' shares."""
        live = self._live
        if fresh and live.stale:
            self._refresh()
        return (
            [a + b for a, b in zip(self._events, live.events, strict=True)],
            [a + b for a, b in zip(self._exposure, live.exposure, strict=True)],
        )

    def quantile(self, q: float) -> float:
        """The ``q``-quantile of the current distribution (seconds)."""
        return _quantile(*self.counts(smoothed=False), q)

    def schedule(
        self,
        target_delay: float,
        *,
        first_quantile: float,
        min_gap: float,
        max_gap: float,
        naive_gap: float = 1.0,
    ) -> _Schedule:
        """The poll times for this distribution, cached until enough new data arrived.

        Never more polls (by the estimate) than a naive loop polling every ``naive_gap``.
        """
        sched = self._schedule
        if (
            sched is None
            or sched.key != (target_delay, min_gap, max_gap, naive_gap)
            or self._dirty >= min(self.rebuild_every, max(self.observed, 1))
        ):
            self._refresh()
            counts, _ = self.counts()
            self._density = counts
            self._survival = _survival_at_edges(counts)
            self._known_until = _support_end(counts)
            # the earliest plausible finish: the first_quantile q₁, extrapolated along the tail
            # by _EDGE_STEPS steps from q₁ to q₂ (the quantile twice as far in). A few hundred
            # tasks do not show where the lower edge is, only how fast the tail thins near
            # it: one step is where the edge lies on average, the others a margin for how
            # loosely so few tasks place it. The costs are lopsided: starting a step early
            # costs at most a request per task (the empty bins before the first finishes are
            # polled at the pace of those finishes), a step late makes every task below the
            # start wait all of it (200-1000 s images: 6 tasks of 100 waiting 7 s each)
            raw = self.counts(smoothed=False)
            low = _quantile(*raw, first_quantile)
            start = low * min(low / _quantile(*raw, 2 * first_quantile), 1) ** _EDGE_STEPS
            if sched is not None and self._excess_done() > _FIRST_DONE_UNRESOLVED:
                # Some tasks are done at their first look, and where below it they finished
                # is unknown: the estimate piles them just under it, so its low quantile sits
                # inside that pile and would ratchet the first poll later at every rebuild.
                # Only a first look that finds nothing done lets the start move up.
                start = min(start, sched.start)
            guess = sched.scale if sched is not None else 1.0
            sched = _Schedule.build(counts, target_delay, start, min_gap, max_gap, guess, naive_gap)
            self._schedule = sched
            self._dirty = 0
        return sched


_EDGES = tuple(_bin_edge(i) for i in range(_N_BINS + 1))
_LIVE = 256  # finishes shared again by the estimate at every rebuild before being committed


@dataclass(slots=True)
class _Finish:
    """One finish in ``(lower, upper]`` (spanning bins ``first..last``), as recorded.

    ``floor_*``: its share spread log-uniformly over the bracket's top factor ``reach`` (set
    when it arrived) and the exposure that goes with it, per bin from ``first``, unweighted.
    """

    lower: float
    upper: float
    weight: float  # the records' scale when it arrived (newer finishes weigh more)
    first: int
    last: int
    overlaps: tuple[float, float]  # of the bracket with its first and its last bin
    floor_events: list[float]
    floor_exposure: list[float]

    @property
    def between(self) -> bool:
        """Seen running before (else: done at its first look)."""
        return self.lower > 0

    @staticmethod
    def make(lower: float, upper: float, weight: float, reach: float) -> _Finish:
        first, last = _bin_of(lower), _bin_of(upper)
        floor_low = max(lower, upper / reach, _EDGES[first])  # (no bin below the first edge)
        log_span = math.log(upper / floor_low) if upper > floor_low else 0.0
        overlaps, floor = [], []
        for i in range(first, last + 1):
            lo, hi = _EDGES[i], _EDGES[i + 1]
            overlaps.append(max((min(upper, hi) - max(lower, lo)) / (hi - lo), 0.0))
            a, b = max(lo, floor_low), min(hi, upper)
            floor.append(math.log(b / a) / log_span if log_span > 0 and b > a else 0.0)
        if log_span <= 0:
            floor[-1] = 1.0
        exposure = _bracket_exposure(overlaps, floor)
        ends = (overlaps[0], overlaps[-1])
        return _Finish(lower, upper, weight, first, last, ends, floor, exposure)

    def split(self, density: list[float], unseen: float) -> tuple[list[float], list[float]]:
        """(events, exposure) per bin from ``first``, weighted: a share ``unseen`` by the
        floor, the rest in proportion to ``density`` (all by the floor where it has none)."""
        n = self.last - self.first + 1  # > 1: a bracket within one bin is never kept live
        overlaps = [self.overlaps[0], *([1.0] * (n - 2)), self.overlaps[1]]
        estimate = [density[self.first + k] * ov for k, ov in enumerate(overlaps)]
        total = sum(estimate)
        if total <= 0:
            shares = self.floor_events
        else:
            shares = [
                (1 - unseen) * e / total + unseen * f
                for e, f in zip(estimate, self.floor_events, strict=True)
            ]
        exposure = _bracket_exposure(overlaps, shares)
        return [self.weight * e for e in shares], [self.weight * x for x in exposure]


def _bracket_exposure(overlaps: list[float], shares: list[float]) -> list[float]:
    """Time at risk per bin of one finish shared so over its bracket: through the bracket's
    part of each bin, less half the part for those finishing in it (uniform within a bin)."""
    out, alive = [], 1.0  # P(still running where the bracket enters this bin | the bracket)
    for overlap, share in zip(overlaps, shares, strict=True):
        out.append(overlap * (alive - share / 2))
        alive -= share
    return out


class _Live:
    """The last finishes of a model, shared again by the newest estimate at every rebuild.

    ``share`` is ``_Finish.split`` summed over all of them, in one pass over the finishes and
    one over the bins (prefix sums of the density and difference arrays, not a loop over
    every bin of every bracket: a bracket ``(0, 600 s]`` spans 165 bins), so a rebuild stays
    cheap. The floor parts do not depend on the estimate: they are kept summed per kind of
    bracket (done at the first look, between two looks) as finishes come and go.
    """

    __slots__ = ("events", "exposure", "finishes", "floor", "stale")

    def __init__(self) -> None:
        self.finishes: deque[_Finish] = deque()
        # per kind of bracket (between two looks?): Σ weight × floor events, exposure
        self.floor = {b: ([0.0] * _N_BINS, [0.0] * _N_BINS) for b in (False, True)}
        self.events = [0.0] * _N_BINS  # the shares at the last ``share``
        self.exposure = [0.0] * _N_BINS
        self.stale = False  # finishes came or went since

    def add(self, finish: _Finish) -> None:
        self.finishes.append(finish)
        self._floor(finish, finish.weight)
        self.stale = True

    def pop(self) -> _Finish:
        finish = self.finishes.popleft()
        self._floor(finish, -finish.weight)
        self.stale = True
        return finish

    def _floor(self, finish: _Finish, weight: float) -> None:
        events, exposure = self.floor[finish.between]
        for k, (e, x) in enumerate(zip(finish.floor_events, finish.floor_exposure, strict=True)):
            events[finish.first + k] += weight * e
            exposure[finish.first + k] += weight * x

    def rescale(self, factor: float) -> None:
        for finish in self.finishes:
            finish.weight *= factor
        self.floor = {b: ([0.0] * _N_BINS, [0.0] * _N_BINS) for b in (False, True)}
        for finish in self.finishes:  # summed afresh: no rounding left over from the pops
            self._floor(finish, finish.weight)
        self.events = [c * factor for c in self.events]
        self.exposure = [c * factor for c in self.exposure]

    def share(self, density: list[float], unseen_first: float, unseen_between: float) -> None:
        """``events``, ``exposure`` := Σ ``finish.split(density, unseen)`` over the finishes.

        For a finish over bins ``f < t`` with ``Z`` the density over its bracket and ``P``
        the density's prefix sums, the estimate's part puts ``d_i/Z`` in an inner bin ``i``
        and ``1 - e_f - (P_i - P_{f+1})/Z - d_i/2Z`` of exposure there: per inner bin, two
        sums over the finishes spanning it (of ``1/Z`` and of ``1 - e_f + P_{f+1}/Z``), which
        difference arrays collect in one pass.
        """
        n = _N_BINS
        prefix = [0.0]
        for d in density:
            prefix.append(prefix[-1] + d)
        events, exposure = [0.0] * n, [0.0] * n
        d_a, d_b = [0.0] * (n + 1), [0.0] * (n + 1)
        for finish in self.finishes:
            unseen = unseen_between if finish.between else unseen_first
            weight = finish.weight * (1.0 - unseen)
            if weight <= 0:
                continue
            f, t = finish.first, finish.last
            ov_f, ov_l = finish.overlaps
            a_f, a_l = density[f] * ov_f, density[t] * ov_l
            total = a_f + a_l + prefix[t] - prefix[f + 1]
            if total <= 0:  # the estimate gives the bracket no chance: all by the floor
                floor = zip(finish.floor_events, finish.floor_exposure, strict=True)
                for k, (e, x) in enumerate(floor):
                    events[f + k] += weight * e
                    exposure[f + k] += weight * x
                continue
            e_f, e_l = a_f / total, a_l / total
            events[f] += weight * e_f
            events[t] += weight * e_l
            exposure[f] += weight * ov_f * (1.0 - e_f / 2)
            exposure[t] += weight * ov_l * e_l / 2
            if t > f + 1:
                c = weight / total
                b = weight * (1.0 - e_f) + c * prefix[f + 1]
                d_a[f + 1] += c
                d_a[t] -= c
                d_b[f + 1] += b
                d_b[t] -= b
        a = b = 0.0
        for i in range(n):
            a += d_a[i]
            b += d_b[i]
            if a or b:
                d = density[i]
                events[i] += d * a
                exposure[i] += b - (prefix[i] + d / 2) * a
        for between, unseen in ((False, unseen_first), (True, unseen_between)):
            if unseen > 0:
                floor_events, floor_exposure = self.floor[between]
                for i in range(n):
                    events[i] += unseen * floor_events[i]
                    exposure[i] += unseen * floor_exposure[i]
        self.events, self.exposure = events, exposure
        self.stale = False


_MAX_POLLS_PER_SCHEDULE = 2000
_LEADS = (0.0, 0.5, 1.0)  # first poll this many gaps after the earliest plausible finish


@dataclass(frozen=True)
class _Schedule:
    """Poll times (seconds after creation) for one distribution and delay target.

    Gaps follow ``c/√h(t)`` clamped to ``[min_gap, max_gap]``, counted from ``start``, the
    earliest plausible finish. That a task is still running at ``start`` is known without
    asking, so the first real poll comes one *lead* later: ``lead`` × the gap there, chosen
    among a few candidates for the fewest expected polls (a poll right at ``start`` would find
    almost nothing done — about one wasted request per task). For each lead, ``c`` is set by
    bisection so that the *exact* expected delay of the resulting poll times (from the
    histogram's CDF and first moment, density uniform within a bin) equals ``target_delay``.
    """

    key: tuple[float, float, float, float]  # (target_delay, min_gap, max_gap, naive_gap)
    times: tuple[float, ...]
    expected_delay: float
    expected_polls: float
    scale: float = 1.0  # the calibrated c, a good first guess for the next build
    open_gap: float | None = None  # a table cut short goes on every open_gap s
    start: float = 0.0  # the earliest plausible finish it was built for
    first_done: float = 0.0  # the share of tasks it expects done at their first poll

    @staticmethod
    def build(
        counts: list[float],
        target_delay: float,
        start: float,
        min_gap: float,
        max_gap: float,
        guess: float = 1.0,
        naive_gap: float = 1.0,
    ) -> _Schedule:
        norm = sum(counts) or 1.0
        probs = [c / norm for c in counts]
        cdf = [0.0]
        moment = [0.0]
        inv_sqrt_h: list[float] = []
        survival = 1.0
        last = 0
        for i, p in enumerate(probs):
            lo, hi = _EDGES[i], _EDGES[i + 1]
            cdf.append(cdf[-1] + p)
            moment.append(moment[-1] + p * (lo + hi) / 2)
            if p > 0 and survival > 1e-12:
                inv_sqrt_h.append(math.sqrt(max(survival - p / 2, 1e-12) * (hi - lo) / p))
                last = i + 1
            else:
                inv_sqrt_h.append(0.0)  # nothing finishes here: max_gap (but see below)
            survival -= p
        end = _EDGES[last]
        # before the first bin with mass (the start lies below the lowest finish seen, by a
        # margin for where the lower edge may really be), poll at the pace of where the
        # finishes begin: a step of max_gap from the start used to jump past them, and the
        # tasks finishing there waited it whole
        first_mass = next((k for k, g in enumerate(inv_sqrt_h) if g > 0), 0)
        inv_sqrt_h[:first_mass] = [inv_sqrt_h[first_mass]] * first_mass
        first_bin = _bin_of(start)
        lo_s, hi_s = _EDGES[first_bin], _EDGES[first_bin + 1]
        p_s = probs[first_bin]
        f_start = cdf[first_bin] + p_s * (start - lo_s) / (hi_s - lo_s)
        m_start = moment[first_bin] + p_s * (start * start - lo_s * lo_s) / (2 * (hi_s - lo_s))

        def walk(scale: float, lead: float, times: list[float] | None) -> tuple[float, float]:
            """(mean polls, mean delay) of a task polled at the times ``scale`` and ``lead``
            give (collected into ``times`` if given): one pass, F and ∫s·f(s)ds under a
            density uniform within each bin."""

            def gap_at(k: int) -> float:
                """Bin ``k``'s gap: ``c/√h`` clamped, ``max_gap`` where nothing finishes."""
                return min(max(scale * inv_sqrt_h[k] or max_gap, min_gap), max_gap)

            i = first_bin
            g = gap_at(i)
            t = max(start + lead * g, min_gap)
            first_poll = t
            # delay is counted for the tasks finishing after ``start`` only: what finishes
            # before it (a stale tail of the prior, at most ``first_quantile``) is not chased
            # here — that is the exploration's job — and would otherwise inflate the delay of
            # every table and squeeze its gaps to nothing
            prev_f, prev_m = f_start, m_start
            polls = f_start
            delay = 0.0
            for _ in range(_MAX_POLLS_PER_SCHEDULE):
                while i < last and t >= _EDGES[i + 1]:
                    i += 1
                if t >= end:
                    f, m = cdf[last], moment[last]
                else:
                    lo, hi = _EDGES[i], _EDGES[i + 1]
                    p = probs[i]
                    f = cdf[i] + p * (t - lo) / (hi - lo)
                    m = moment[i] + p * (t * t - lo * lo) / (2 * (hi - lo))
                polls += 1.0 - prev_f  # poll k happens iff the task outlived poll k-1
                delay += t * (f - prev_f) - (m - prev_m)
                prev_f, prev_m = f, m
                if times is not None:
                    times.append(t)
                if t >= end:
                    break
                g = gap_at(i)
                if t == first_poll:
                    # The gap after the first poll does not step over bins whose own gap is
                    # shorter: it ends where they begin, or is theirs. Every task running at
                    # the first look shares that one bracket, which the estimate splits as it
                    # already believes, so what lies inside it is never seen; a wide gap out
                    # of a thin bin just above the first poll jumped past the bulk for good
                    # (1-2 s images: polls at 1.0 s and 2.9 s, 1.5x the target late, while the
                    # estimate, seeing nothing to contradict it, kept a quarter at 2-3 s).
                    for j in range(i + 1, last):
                        if _EDGES[j] >= t + g:
                            break
                        if inv_sqrt_h[j] > 0:
                            g = min(g, max(_EDGES[j] - t, gap_at(j)))
                t += g
            else:  # table cut short: the rest is polled every g (``open_gap``), counted so
                # (leaving it out would make a tighter, longer table look cheaper than it is)
                rest = 1.0 - prev_f
                polls += ((moment[last] - prev_m) - t * rest) / g
                delay += rest * g / 2
                if times is not None:
                    times.append(-g)  # marks the open end: every g after the last time
            return polls, delay / max(1.0 - f_start, 1e-9)

        def calibrated(lead: float) -> tuple[float, float, float]:
            """(c, polls, delay) for the widest spacing whose delay is within the target."""
            lo_c = hi_c = guess
            while walk(lo_c, lead, None)[1] > target_delay and lo_c > 1e-9:
                lo_c, hi_c = lo_c / 2, lo_c
            while walk(hi_c, lead, None)[1] <= target_delay and hi_c < 1e9:
                lo_c, hi_c = hi_c, hi_c * 2
            for _ in range(16):  # a factor-2 bracket: ~1e-5 relative
                mid = math.sqrt(lo_c * hi_c)
                if walk(mid, lead, None)[1] <= target_delay:
                    lo_c = mid
                else:
                    hi_c = mid
            return (lo_c, *walk(lo_c, lead, None))

        # the fewest polls among the leads that meet the target (one whose first step no
        # spacing can shorten may not: it would win on polls alone, at any delay)
        (scale, polls, delay), lead = min(
            ((calibrated(lead), lead) for lead in _LEADS),
            key=lambda c: (c[0][2] > target_delay * (1 + 1e-6), c[0][1]),
        )
        times: list[float] = []
        walk(scale, lead, times)
        open_gap = -times.pop() if times[-1] < 0 else None
        naive = _naive_polls(probs, naive_gap)
        if polls > naive:  # the naive loop's grid is cheaper (and quicker) here: use it
            k0 = max(math.ceil(start / naive_gap), 1)  # (no grid point before the start)
            k1 = min(math.ceil(end / naive_gap), k0 + _MAX_POLLS_PER_SCHEDULE)
            times = [k * naive_gap for k in range(k0, k1 + 1)]
            open_gap = naive_gap if end > times[-1] else None
            polls, delay = naive, naive_gap / 2
        key = (target_delay, min_gap, max_gap, naive_gap)
        t = min(times[0], end)
        i = min(_bin_of(t), last)
        done = cdf[i] + probs[i] * max(min((t - _EDGES[i]) / (_EDGES[i + 1] - _EDGES[i]), 1), 0)
        return _Schedule(key, tuple(times), delay, polls, scale, open_gap, start, done)

    @property
    def first_poll(self) -> float:
        return self.times[0]

    @property
    def first_gap(self) -> float:
        """The gap after the first poll (the scale for jittering the first poll)."""
        return self.times[1] - self.times[0] if len(self.times) > 1 else self.times[0]

    def next_time(self, elapsed: float) -> float | None:
        """When to poll a task last polled at ``elapsed``; ``None`` past the end of the table.

        The next table time, unless it is less than half its gap away: then one table gap
        later. A task whose poll was jittered a little early, or that was polled on an older
        table (it is rebuilt as the model learns), is out of phase with this one; snapping
        straight to the next time would poll it again almost at once (about half a poll
        wasted each time), and skipping to the time after it would stretch this gap up to
        1.5x the table's, past ``max_gap`` (a model that drifts rebuilds often: 3-6 s images
        were seen 1.4x the target late). Its gaps stay the table's, a little out of phase.
        """
        times = self.times
        i = bisect.bisect_right(times, elapsed)
        if i < len(times):
            gap = times[i] - times[i - 1] if i > 0 else self.first_gap
            if times[i] - elapsed < gap / 2:
                if i + 1 < len(times):
                    return elapsed + (times[i + 1] - times[i])
                i += 1
        if i < len(times):
            return times[i]
        if self.open_gap is not None:
            return elapsed + self.open_gap
        return None


def _survival_at_edges(probs: list[float]) -> list[float]:
    out, survival = [1.0], 1.0
    for p in probs:
        survival = max(survival - p, 0.0)
        out.append(survival)
    return out


def _support_end(probs: list[float]) -> float:
    last = max((i for i, p in enumerate(probs) if p > 1e-12), default=len(probs) - 1)
    return _EDGES[last + 1]


def _interpolate(at_edges: list[float], seconds: float) -> float:
    """A per-edge curve at ``seconds`` (linear within a bin)."""
    if seconds <= _MIN_SECONDS:
        return at_edges[0]
    i = _bin_of(seconds)
    lo, hi = _EDGES[i], _EDGES[i + 1]
    return at_edges[i] + (at_edges[i + 1] - at_edges[i]) * min((seconds - lo) / (hi - lo), 1.0)


def _naive_polls(probs: list[float], gap: float) -> float:
    """E[ceil(T/gap)]: what a drift-free ``sleep(gap); poll`` loop costs per task."""
    total = 0.0
    for i, p in enumerate(probs):
        if p > 0:
            lo, hi = _EDGES[i], _EDGES[i + 1]
            total += p * max((lo + hi) / 2 / gap + 0.5, 1.0)  # ≈ E[T/gap] + ½ within a bin
    return total


def _log_uniform(low: float, high: float) -> list[float]:
    """Per-bin probabilities of a log-uniform distribution on ``[low, high]``, edges exact."""
    low, high = max(low, _MIN_SECONDS), min(max(high, low), _MAX_SECONDS)
    probs = [0.0] * _N_BINS
    if high <= low * 1.0001:  # a point
        probs[_bin_of(low)] = 1.0
        return probs
    for i in range(_bin_of(low), _bin_of(high) + 1):
        lo, hi = max(_EDGES[i], low), min(_EDGES[i + 1], high)
        probs[i] = max(math.log(hi / lo), 0.0) / math.log(high / low)
    return probs


def _smooth(counts: list[float], sigma: float, support: tuple[int, int]) -> list[float]:
    """Gaussian-smooth ``counts`` (``sigma`` bins) inside ``support`` only.

    The kernel is renormalised to its part inside, and bins outside keep their raw value, so a
    sharp edge (nothing finishes before 60 s, or after 300 s) stays sharp instead of spilling
    mass — and wasted polls — onto both sides of it.
    """
    first, last = support
    radius = max(int(3 * sigma), 1)
    kernel = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)]
    out = list(counts)
    for j in range(first, last + 1):
        acc = weight = 0.0
        for i in range(max(j - radius, first), min(j + radius, last) + 1):
            k = kernel[i - j + radius]
            acc += counts[i] * k
            weight += k
        out[j] = acc / weight
    return out


def _support(events: list[float]) -> tuple[int, int]:
    """The first and last bins holding an event (all bins when there is none)."""
    held = [i for i, e in enumerate(events) if e > 0]
    return (held[0], held[-1]) if held else (0, len(events) - 1)


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
    """What the poller asks of a schedule. Replace it to poll your own way.

    Optionally, a policy may also have ``observe_running(model, since, elapsed)``: a task last
    seen running ``since`` s after creation still ran at ``elapsed`` s. It is called only if
    present (see ``report_running``), so a three-method policy is a complete one.
    """

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        """Seconds after creation of the first poll."""
        ...

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        """Seconds until the next poll of a task still running ``elapsed`` s after creation."""
        ...

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        """A task finished somewhere in ``(lower, upper]`` seconds after creation."""
        ...


def report_running(policy: PollPolicy, model: str | None, since: float, elapsed: float) -> None:
    """Tell ``policy`` that a task is still running, if it has ``observe_running``."""
    hook = getattr(policy, "observe_running", None)
    if hook is not None:
        hook(model, since, elapsed)


@dataclass(frozen=True)
class TaskHint:
    """Server-side progress, when the task reports it (Midjourney's ``percent``)."""

    percent: float | None = None
    percent_elapsed: float | None = None  # seconds after creation at which percent was seen


@dataclass
class AdaptivePolicy:
    """The default schedule: learned per-model distributions, hazard-shaped poll times.

    ``target_delay`` (seconds, per kind) is the main knob: the expected mean time between a task
    finishing and the poll that sees it. ``max_gap`` caps any gap while a task is likely to
    finish, and so bounds the worst delay (p95 ≲ ``max_gap``). ``min_interval``/
    ``max_interval`` bound every gap, the latter also for tasks running longer than anything
    seen (gaps then grow by ``tail_growth`` × the time since). ``jitter`` spreads polls (a fraction
    of the gap) so tasks created together do not poll in lockstep. ``clock_scale`` > 1
    compresses every duration and interval, for an emulator running faster than real time.
    """

    target_delay: dict[ModelKind, float] = field(
        default_factory=lambda: {"image": 0.93, "video": 2.85, "audio": 2.0}
    )
    max_gap: dict[ModelKind, float] = field(
        default_factory=lambda: {"image": 1.9, "video": 20.0, "audio": 10.0}
    )
    first_quantile: float = 0.01
    min_interval: float = 0.25
    max_interval: float = 30.0
    tail_growth: float = 0.1
    jitter: float = 0.02
    prior_weight: float = 8.0
    priors: dict[ModelKind, DurationPrior] = field(default_factory=lambda: dict(PRIORS))
    rng: random.Random = field(default_factory=random.Random, repr=False)
    clock_scale: float = 1.0
    explore: float = 0.03
    explore_max: float = 0.5
    _models: dict[str, DurationModel] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.clock_scale > 0:
            raise ValueError("clock_scale must be > 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if not 0 <= self.explore <= self.explore_max <= 1:
            raise ValueError("need 0 <= explore <= explore_max <= 1")

    def model_stats(self, model: str | None) -> DurationModel:
        """The learned distribution of one model id (created from its kind's prior)."""
        key = model or "?"
        stats = self._models.get(key)
        if stats is None:
            prior = self.priors[_kind(key)]
            scale = self.clock_scale
            scaled = DurationPrior(prior.low / scale, prior.median / scale, prior.high / scale)
            unseen = _UNSEEN if self.explore > 0 else 0.0
            stats = DurationModel(scaled, prior_weight=self.prior_weight, unseen=unseen)
            self._models[key] = stats
        return stats

    def _target(self, model: str | None) -> float:
        return self.target_delay.get(_kind(model or "?"), 1.0) / self.clock_scale

    def _wobble(self, scale: float) -> float:
        """A random offset within ±``jitter`` × ``scale``."""
        return scale * self.rng.uniform(-self.jitter, self.jitter) if self.jitter > 0 else 0.0

    def schedule_for(self, model: str | None) -> _Schedule:
        """The current poll-time table of a model (seconds after creation)."""
        kind = _kind(model or "?")
        return self.model_stats(model).schedule(
            self._target(model),
            first_quantile=self.first_quantile,
            min_gap=self.min_interval / self.clock_scale,
            max_gap=min(self.max_gap.get(kind, self.max_interval), self.max_interval)
            / self.clock_scale,
            naive_gap=1.0 / self.clock_scale,
        )

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        sched = self.schedule_for(model)
        # jitter in units of the first gap (not of the whole first delay): enough to spread
        # tasks created together, without moving the first poll off its optimum by seconds
        first = sched.first_poll + self._wobble(sched.first_gap)
        stats = self.model_stats(model)
        stats.probe_credit += self.explore_rate(model) if self.explore > 0 else 0.0
        if stats.probe_credit >= 1.0 - 1e-9:  # every 1/rate-th task, evenly (not by a coin toss)
            stats.probe_credit -= 1.0
            first /= stats.reach ** self.rng.random()  # log-uniformly earlier
        return max(first, self.min_interval / self.clock_scale)

    def explore_rate(self, model: str | None) -> float:
        """The share of new tasks whose first poll is a probe below the schedule's first poll.

        ``explore`` always: the cost of finding out, when the prior is right, that nothing
        finishes earlier (one request per probe). Up to ``explore_max`` when far more first
        looks find the task already done than the schedule expects: it starts too late, and
        the probes (which count as first looks too) find out how much; once they come back
        "running", the rate falls.
        """
        if self.schedule_for(model).first_poll <= 2 * self._target(model):
            return 0.0  # done by the first poll, a task waited ≲ the target anyway
        surprise = self.model_stats(model).surprise
        return self.explore + (self.explore_max - self.explore) * surprise

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        lo = self.min_interval / self.clock_scale
        hi = self.max_interval / self.clock_scale
        sched = self.schedule_for(model)
        scheduled = sched.next_time(elapsed)
        if scheduled is None:
            # older than anything seen: back off with the time since then, not with age (the
            # longest of a few hundred tasks is no bound: the next batch has one beyond it,
            # which a gap of 10 % of its age, tens of seconds, would see that much late)
            gap = max(self._target(model) * 2, (elapsed - sched.times[-1]) * self.tail_growth)
        else:
            gap = scheduled - elapsed
        eta = _eta_from_percent(hint, elapsed)
        if eta is not None and eta > gap:
            # The task says how far it is: aim at its projected finish instead.
            gap = max(min(eta, hi), gap)
        return min(max(gap + self._wobble(gap), lo), hi)

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        if upper <= 0:
            return
        self.model_stats(model).finished(lower, upper)

    def observe_running(self, model: str | None, since: float, elapsed: float) -> None:
        self.model_stats(model).running(since, elapsed)

    def export_state(self) -> dict[str, Any]:
        """What this policy learned, per model: small, versioned, plain JSON.

        A long-running service or a CLI batch saves it and hands it to ``restore_state`` on
        the next start, so a restart does not begin from the catalogue's guesses again.
        """
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "clock_scale": self.clock_scale,
            "bins": {"per_decade": _BINS_PER_DECADE, "min_seconds": _MIN_SECONDS, "n": _N_BINS},
            "models": {k: m.export() for k, m in sorted(self._models.items()) if m.observed},
        }

    def restore_state(self, state: object) -> bool:
        """Take over what ``export_state`` gave (another process's, or an earlier run's).

        Anything else — corrupt, another format or version, another ``clock_scale`` (an
        emulator's compressed seconds are not real ones) — is ignored with a warning: a
        policy that starts cold is a slower start, never a reason to fail. All or nothing:
        a state with one bad model restores none.
        """
        try:
            learned = _check_state(state, self.clock_scale)
        except _NotAState as exc:
            logger.warning("poll state ignored (%s): starting from the catalogue's priors", exc)
            return False
        for key, model in learned.items():
            self.model_stats(key).restore(model)
        return True


def follow_emulator_clock(policy: PollPolicy, announced: str) -> None:
    """Run an ``AdaptivePolicy`` at the clock an emulator announced (its time scale).

    A change restarts what it learnt: durations measured at another clock would mislead it.
    Anything but a finite positive number is ignored.
    """
    try:
        scale = float(announced)
    except ValueError:
        return
    if not isinstance(policy, AdaptivePolicy) or not 0 < scale < math.inf:
        return
    if scale != policy.clock_scale:
        policy.clock_scale = scale
        policy._models.clear()


def _kind(model_id: str) -> ModelKind:
    spec = get_model(model_id)
    return spec.kind if spec else kind_of(model_id)


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

    def observe_running(self, model: str | None, since: float, elapsed: float) -> None:
        return None


STATE_FORMAT = "gptunnel-async/poll-state"
STATE_VERSION = 1


class _NotAState(ValueError):
    """What ``restore_state`` was given is not a state it can take (the message says why)."""


@dataclass(frozen=True)
class _Learned:
    """One model's records from a state, checked."""

    observed: int
    first_done: float
    prior_kept: float
    events: tuple[float, ...]
    exposure: tuple[float, ...]


def _check_state(state: object, clock_scale: float) -> dict[str, _Learned]:
    """The models of an exported state, or ``_NotAState`` saying why it is not one."""
    if not isinstance(state, Mapping):
        raise _NotAState("not a JSON object")
    if state.get("format") != STATE_FORMAT:
        raise _NotAState(f"format is not {STATE_FORMAT!r}")
    if state.get("version") != STATE_VERSION:
        raise _NotAState(f"version {state.get('version')!r}, this SDK reads {STATE_VERSION}")
    layout = {"per_decade": _BINS_PER_DECADE, "min_seconds": _MIN_SECONDS, "n": _N_BINS}
    if state.get("bins") != layout:
        raise _NotAState("another histogram layout")
    scale = state.get("clock_scale")
    if not _number(scale) or not math.isclose(scale, clock_scale, rel_tol=1e-9):
        raise _NotAState(f"clock_scale {scale!r}, this policy runs at {clock_scale!r}")
    models = state.get("models")
    if not isinstance(models, Mapping):
        raise _NotAState("no models")
    out = {}
    for key, model in models.items():
        if not isinstance(key, str) or not key or len(key) > 200:
            raise _NotAState("a model id that is not a short string")
        out[key] = _check_model(key, model)
    return out


def _check_model(key: str, model: object) -> _Learned:
    if not isinstance(model, Mapping):
        raise _NotAState(f"model {key!r}: not an object")
    observed, first_done = model.get("observed"), model.get("first_done")
    prior_kept = model.get("prior_kept")
    if not (isinstance(observed, int) and not isinstance(observed, bool) and observed >= 0):
        raise _NotAState(f"model {key!r}: observed is not a count")
    if not (_number(first_done) and 0 <= first_done <= 1):
        raise _NotAState(f"model {key!r}: first_done is not a share")
    if not (_number(prior_kept) and 0 <= prior_kept <= 1):
        raise _NotAState(f"model {key!r}: prior_kept is not a share")
    events, exposure = [0.0] * _N_BINS, [0.0] * _N_BINS
    bins = model.get("bins")
    if not isinstance(bins, list):
        raise _NotAState(f"model {key!r}: bins is not a list")
    for row in bins:
        if not (isinstance(row, list) and len(row) == 3):
            raise _NotAState(f"model {key!r}: a bin is not [index, events, exposure]")
        i, e, x = row
        if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < _N_BINS):
            raise _NotAState(f"model {key!r}: bin index out of range")
        if not (_number(e) and _number(x) and 0 <= e <= 1e12 and 0 <= x <= 1e12):
            raise _NotAState(f"model {key!r}: bin {i} holds no finite count")
        events[i], exposure[i] = float(e), float(x)
    return _Learned(observed, float(first_done), float(prior_kept), tuple(events), tuple(exposure))


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _sig(value: float) -> float:
    """``value`` to 6 significant digits: the state stays small and its JSON readable."""
    return float(f"{value:.6g}")
