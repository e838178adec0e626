"""What the emulator saw: request counts, concurrency, arrival times, Retry-After discipline.

Tests and benchmarks read these to check client behaviour (e.g. that a lost create was not
re-sent, or that a client waited out a 429). Work per request is O(1) and memory is bounded.
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._state import Task, TaskStore


class Counters:
    """Request and task statistics of one emulator; ``reset()`` zeroes them (tasks are kept).

    API requests are those under ``/v1``; file downloads count only in ``requests_total`` and
    ``requests_by_route`` (``"GET /files"``).
    """

    def __init__(self, store: TaskStore, *, grace: float = 0.05, max_arrivals: int = 2_000_000):
        self._store = store
        self.grace = grace
        self._max_arrivals = max_arrivals
        self.reset()

    def reset(self) -> None:
        self.requests_total: int = 0
        self.api_requests_total: int = 0
        self.requests_by_route: Counter[str] = Counter()
        self.requests_by_task: Counter[str] = Counter()
        self.responses_by_status: Counter[int] = Counter()
        self.creates_total: int = 0
        self.creates_by_prompt: Counter[str] = Counter()
        self.creates_by_route: Counter[str] = Counter()
        self.drops = 0
        self.in_flight: int = 0
        self.max_in_flight: int = 0
        self.retry_after_violations: int = 0
        self.sent_429: deque[tuple[float, float | None]] = deque(maxlen=100_000)
        self._arrivals = array("d")
        self._pending_429: deque[tuple[float, float]] = deque()
        self._banned_until = 0.0

    # -- recording (called by the emulator) ---------------------------------------------

    def on_request(self, route: str, now: float, *, api: bool) -> None:
        self.requests_total += 1
        self.requests_by_route[route] += 1
        if not api:
            return
        self.api_requests_total += 1
        if len(self._arrivals) < self._max_arrivals:
            self._arrivals.append(now)
        pending = self._pending_429
        while pending and pending[0][0] + self.grace <= now:
            _, end = pending.popleft()
            self._banned_until = max(self._banned_until, end)
        if now < self._banned_until:
            self.retry_after_violations += 1

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def on_response(self, status: int, now: float, retry_after: float | None) -> None:
        self.responses_by_status[status] += 1
        if status == 429:
            self.sent_429.append((now, retry_after))
            if retry_after is not None:
                self._pending_429.append((now, now + retry_after))

    def on_create(self, route: str, prompt: str | None) -> None:
        self.creates_total += 1
        self.creates_by_route[route] += 1
        if prompt is not None:
            self.creates_by_prompt[prompt] += 1

    # -- queries -------------------------------------------------------------------------

    @property
    def arrivals(self) -> array[float]:
        """Monotonic arrival times of API requests (capped at ``max_arrivals``)."""
        return self._arrivals

    def max_requests_in_window(self, window: float = 1.0) -> int:
        """The most API requests that arrived within any ``window`` seconds."""
        return max_in_window(sorted(self._arrivals), window)

    def finished_at(self, task_id: str) -> float | None:
        """``time.monotonic()`` at which the task became done/failed, or None if not yet."""
        task = self._store.get(task_id)
        return None if task is None else task.finished_at()

    def task(self, task_id: str) -> Task | None:
        """The emulator's record of a task, for inspection."""
        return self._store.get(task_id)


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of the (sorted) ``times`` that fall within any ``window`` seconds."""
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
