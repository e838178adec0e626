"""Runtime fault knobs and the per-request decision they lead to.

All randomness comes from one seeded ``random.Random``, and it is drawn only when a knob is
non-zero, so a run is reproducible for a given seed and request order. Fault timings
(latency, delays, Retry-After, bursts) are in *real* seconds: they act on the client.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Union

Outcome = Union[
    int,
    tuple[int, dict[str, str]],
    Literal["drop", "drop_after", "pass"],
    tuple[Literal["delay"], float],
]
RetryAfterFormat = Literal["seconds", "http-date", "ms", "seconds+ms"]
DecisionKind = Literal["pass", "status", "drop", "drop_after"]
Fate = Literal["done", "failed", "never"]

DEFAULT_REASONS = (
    "Generation failed: the provider returned an error",
    "Content policy violation: the prompt was rejected",
    "Generation timed out",
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request: answer normally, answer ``status``, or drop; after ``delay``."""

    kind: DecisionKind = "pass"
    delay: float = 0.0
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()


PASS = Decision()


@dataclass(slots=True)
class _Script:
    method: str | None
    path: str
    prefix: bool
    queue: deque[Outcome]

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return path.startswith(self.path) if self.prefix else path == self.path


class Faults:
    """Mutable fault knobs; change any attribute while the emulator runs.

    Order of precedence per request: a scripted outcome, an active ``burst_429``, the
    ``rate_limit_rps`` token bucket, then the random ``drop_rate``/``drop_after_rate``/
    ``error_rate``/``slow_rate``. ``latency`` is added to every API response.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.rng: random.Random = random.Random(seed)
        self._scripts: list[_Script] = []
        self.reset()

    def reset(self) -> None:
        """Back to a fault-free emulator (scripts and bursts cleared)."""
        self.task_failure_rate: float = 0.0
        self.never_finish_rate: float = 0.0
        self.failure_reasons: tuple[str, ...] = DEFAULT_REASONS
        # rename statuses in answers, e.g. {"processing": "running", "failed": "error"}
        self.status_names: dict[str, str] = {}
        self.error_rate: float = 0.0
        self.error_statuses: tuple[int, ...] = (500, 502, 503)
        self.include_files = False
        self.drop_rate: float = 0.0
        self.drop_after_rate: float = 0.0
        self.slow_rate: float = 0.0
        self.slow_delay: float = 30.0
        self.latency: float | tuple[float, float] = 0.0
        self.rate_limit_rps: float | None = None
        self.rate_limit_burst: float | None = None
        self.rate_limit_retry_after: float | None = None
        self.retry_after_format: RetryAfterFormat = "seconds"
        self._tokens = -1.0
        self._tokens_at = 0.0
        self._burst_until = 0.0
        self._burst_retry_after = 1.0
        self._scripts.clear()

    # -- scripted outcomes ---------------------------------------------------------------

    def script(self, route: str, outcomes: Iterable[Outcome]) -> None:
        """Queue outcomes for the next requests matching ``route``.

        ``route`` is ``"POST /v1/media/create"``, or a bare path (any method); a trailing ``*``
        matches a prefix (``"GET /files/*"``). Outcomes: an int status, ``(status, headers)``,
        ``"drop"``, ``"drop_after"`` (process, then drop), ``("delay", seconds)``, ``"pass"``.
        """
        method, _, path = route.strip().rpartition(" ")
        prefix = path.endswith("*")
        entry = _Script(method.upper() or None, path.rstrip("*"), prefix, deque(outcomes))
        self._scripts.append(entry)

    def pending_script(self, route: str | None = None) -> int:
        """How many scripted outcomes are still queued (for one route, or all)."""
        return sum(
            len(s.queue)
            for s in self._scripts
            if route is None or f"{s.method or ''} {s.path}".strip() == route.rstrip("*")
        )

    def _scripted(self, method: str, path: str) -> Outcome | None:
        for s in self._scripts:
            if s.queue and s.matches(method, path):
                return s.queue.popleft()
        return None

    # -- 429 bursts and rate limit ------------------------------------------------------

    def burst_429(self, duration_s: float, retry_after: float = 1.0) -> None:
        """Answer every API request 429 (with Retry-After) for the next ``duration_s`` seconds."""
        self._burst_until = time.monotonic() + duration_s
        self._burst_retry_after = retry_after

    def retry_after_headers(self, seconds: float) -> tuple[tuple[str, str], ...]:
        """Retry-After in the configured form (seconds: an int when whole, else decimals)."""
        secs = f"{seconds:.3f}".rstrip("0").rstrip(".") if seconds % 1 else str(int(seconds))
        if self.retry_after_format == "http-date":
            return (("retry-after", email.utils.formatdate(time.time() + seconds, usegmt=True)),)
        if self.retry_after_format == "ms":
            return (("retry-after-ms", str(round(seconds * 1000))),)
        if self.retry_after_format == "seconds+ms":
            return (("retry-after", secs), ("retry-after-ms", str(round(seconds * 1000))))
        return (("retry-after", secs),)

    def _rate_limited(self, now: float) -> float | None:
        rps = self.rate_limit_rps
        if not rps:
            return None
        cap = self.rate_limit_burst or max(1.0, rps)
        if self._tokens < 0:
            self._tokens, self._tokens_at = cap, now
        self._tokens = min(cap, self._tokens + (now - self._tokens_at) * rps)
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        wait = (1.0 - self._tokens) / rps
        if self.rate_limit_retry_after is not None:
            return self.rate_limit_retry_after
        return float(max(1, math.ceil(wait)))

    # -- the decision -------------------------------------------------------------------

    def _latency(self) -> float:
        lat = self.latency
        if isinstance(lat, tuple):
            return self.rng.uniform(*lat)
        return lat

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def decide(self, method: str, path: str, now: float, *, is_file: bool = False) -> Decision:
        """The fault (if any) for one request arriving at monotonic time ``now``."""
        if self._scripts:
            outcome = self._scripted(method, path)
            if outcome is not None:
                return self._from_outcome(outcome, 0.0 if is_file else self._latency())
        if is_file and not self.include_files:
            return PASS
        delay = self._latency() if not is_file else 0.0
        if not is_file:
            if now < self._burst_until:
                ra = self._burst_retry_after
                return Decision("status", delay, 429, self.retry_after_headers(ra))
            ra_limit = self._rate_limited(now)
            if ra_limit is not None:
                return Decision("status", delay, 429, self.retry_after_headers(ra_limit))
        if self._chance(self.drop_rate):
            return Decision("drop", delay)
        if self._chance(self.error_rate):
            return Decision("status", delay, self.rng.choice(self.error_statuses))
        if self._chance(self.slow_rate):
            delay += self.slow_delay
        if self._chance(self.drop_after_rate):
            return Decision("drop_after", delay)
        return Decision("pass", delay) if delay else PASS

    def _from_outcome(self, outcome: Outcome, delay: float) -> Decision:
        if isinstance(outcome, int):
            return Decision("status", delay, outcome)
        if outcome == "drop":
            return Decision("drop", delay)
        if outcome == "drop_after":
            return Decision("drop_after", delay)
        if outcome == "pass":
            return Decision("pass", delay)
        first, second = outcome
        if first == "delay" and isinstance(second, (int, float)):
            return Decision("pass", delay + float(second))
        if isinstance(first, int) and isinstance(second, dict):
            headers = tuple((k.lower(), str(v)) for k, v in second.items())
            return Decision("status", delay, first, headers)
        raise ValueError(f"unknown scripted outcome {outcome!r}")

    # -- per-task decisions -------------------------------------------------------------

    def task_fate(self) -> tuple[Fate, str | None]:
        """Decide at create: ``("done", None)``, ``("failed", reason)`` or ``("never", None)``."""
        if self._chance(self.never_finish_rate):
            return "never", None
        if self._chance(self.task_failure_rate):
            return "failed", self.rng.choice(self.failure_reasons)
        return "done", None
