"""The one gate every request of a poller passes: concurrency, rate, and 429 pauses.

aiometer's lesson applies: limits that gate *task starts* do not bound the requests made inside
tasks. So the gate wraps each HTTP request itself, polls and creates alike:

- ``max_concurrency``: simultaneous requests, a hard bound.
- ``requests_per_second``: at most that many request *starts* in any sliding window of 1.05 s
  — an exact log of recent starts, not a token bucket (a bucket lets 2× through across a window
  edge) — and starts paced evenly over it (at most 3 back to back, to catch up after a late
  wake-up). The 5 % is for the server's clock: it counts arrivals, and the way there can bunch
  requests by tens of ms. The window is also widened by the recent worst delay between passing
  the gate and the request actually leaving (httpcore's trace events), so a busy client that
  sends requests bunched up cannot push more than the budget through any 1 s window on the wire.
- a 429 pauses every request until its ``Retry-After`` has passed; afterwards the rate starts at
  half of what was flowing before the 429 (at least ``min_recovery_rate``) and doubles every
  second until it is unthrottled again (slow start), so one rate limit does not turn into a
  stampede of them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, cast

import anyio

from .._retry import RequestKind

_WINDOW = 1.0
# A server counts *arrivals* by its own clock, and the way there (our loop, the kernel, its
# loop) can bunch requests up by tens of ms even on loopback under load. So the budget is kept
# over a window this much wider than 1 s, and starts are paced over it too.
_WINDOW_MARGIN = 0.05
# How many starts pacing lets go early (right behind one on time), to catch up after a late
# wake-up.
_PACE_BURST = 2


class Gate(Protocol):
    """What the request path and the poller need of a gate: this process's ``RequestGate``, or
    one shared by many processes (``SharedGate``, on PostgreSQL) behind the same five calls."""

    @property
    def paused_until(self) -> float:
        """Event-loop time until which every request waits (a 429's Retry-After)."""
        ...

    def slot(self, kind: RequestKind = RequestKind.READ) -> AbstractAsyncContextManager[None]:
        """Held around each request attempt (``kind``: a gate may treat creates apart)."""
        ...

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429 came: pause every request behind this gate."""
        ...

    async def wait_out_pause(self) -> None:
        """For a request that passed the gate before a 429 came: sleep until the pause is
        over, then until its new turn in the rate budget (at once if no pause is in force)."""
        ...

    def note_send_lag(self, lag: float) -> None:
        """How long a request took from passing the gate to leaving."""
        ...

    async def before_send(self, started: float) -> float:
        """Just before the first byte of a request that passed the gate at ``started``: raise
        ``PausedBeforeSend`` if a pause began since, else return its (maybe new) start."""
        ...


class PausedBeforeSend(Exception):
    """Internal: a 429 pause began after this request passed its gate and before its first byte
    left, so it was not sent (the client takes it through the gate again)."""


class _Slot:
    """One held slot; learns when its request really leaves (httpcore's ``trace`` events)."""

    __slots__ = ("gate", "reported", "started")

    def __init__(self, gate: Gate, started: float) -> None:
        self.gate = gate
        self.started = started
        self.reported = False

    async def trace(self, event: str, info: object) -> None:
        if not event.endswith("send_request_headers.started"):
            return
        if not self.reported:
            self.reported = True
            self.gate.note_send_lag(anyio.current_time() - self.started)
        # The last look before the first byte: a pause that began since the gate let this
        # request through (another process's 429 is known here as soon as it is announced).
        # Raising here, before httpcore writes anything, closes the unused connection; waiting
        # out a pause here instead could send on a connection the server closed meanwhile.
        self.started = await self.gate.before_send(self.started)


_CURRENT_SLOT: ContextVar[_Slot | None] = ContextVar("gptunnel_gate_slot", default=None)


def current_slot() -> _Slot | None:
    """The gate slot the running request holds, if any (read by the client's request path)."""
    return _CURRENT_SLOT.get()


@dataclass
class GateStats:
    requests: int = 0
    max_in_flight: int = 0
    pauses: int = 0
    paused_seconds: float = 0.0
    max_send_lag: float = 0.0


class SlotBookkeeping:
    """What every gate keeps the same way: its counters, the requests holding a slot, the
    429 pause in force, and the slot a running request can find (``current_slot``).

    Gates differ in how a slot is granted (a local semaphore and budget, or a shared lease);
    what holding one means is written here once.
    """

    def __init__(self) -> None:
        self.stats: GateStats = GateStats()
        self._in_flight = 0
        self._paused_until = -math.inf

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @contextmanager
    def _holding(self, gate: Gate, started: float) -> Iterator[None]:
        """Count one request as holding a slot of ``gate`` (this object) from ``started``."""
        self._in_flight += 1
        self.stats.requests += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
        token = _CURRENT_SLOT.set(_Slot(gate, started))
        try:
            yield
        finally:
            _CURRENT_SLOT.reset(token)
            self._in_flight -= 1

    async def before_send(self, started: float) -> float:
        """Just before the first byte (the slot's trace hook): ``PausedBeforeSend`` if a
        pause began after the request passed the gate; a gate may also re-time a stale start."""
        if self.paused_until > anyio.current_time():
            raise PausedBeforeSend
        return started

    async def wait_out_pause(self) -> None:
        """For a request that passed the gate before a 429 came: sleep until the pause is
        over, then until its new turn in the rate budget (so that the requests caught this way
        do not all go at once when it ends). Returns at once if no pause is in force."""
        if self.paused_until <= anyio.current_time():
            return
        await self._sleep_out_pause()
        await self._new_start()
        slot = _CURRENT_SLOT.get()
        if slot is not None and slot.gate is cast(Gate, self):  # its start is this new one
            slot.started = anyio.current_time()

    async def _sleep_out_pause(self) -> None:
        # a loop, not an Event: a new 429 may extend the pause while we sleep
        while (wait := self.paused_until - anyio.current_time()) > 0:  # noqa: ASYNC110
            await anyio.sleep(wait)

    async def _new_start(self) -> None:
        """Wait for a new start in the rate budget for a slot already held (after a pause)."""


class RequestGate(SlotBookkeeping):
    """Shared limits for a poller's requests. Create inside the event loop that uses it."""

    def __init__(
        self,
        max_concurrency: int,
        requests_per_second: float | None = None,
        *,
        recovery_factor: float = 2.0,
        min_recovery_rate: float = 2.0,
        default_pause: float = 1.0,
        max_pause: float = 60.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if requests_per_second is not None and not requests_per_second > 0:
            raise ValueError("requests_per_second must be > 0 or None")
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self.recovery_factor = recovery_factor
        self.min_recovery_rate = min_recovery_rate
        self.default_pause = default_pause
        self.max_pause = max_pause
        super().__init__()
        self._slots = anyio.Semaphore(max_concurrency)
        self._start_lock = anyio.Lock()
        self._starts: deque[float] = deque()
        self._window_cap = math.floor(requests_per_second) if requests_per_second else 0
        if requests_per_second is not None and self._window_cap < 1:
            self._window_cap = 1
        self._dyn_rate: float | None = None  # slow-start rate after a 429, None = unthrottled
        self._dyn_since = 0.0
        self._last_start = -math.inf
        self._paced_at = -math.inf  # when the next start is due, paced
        # paced starts are this far apart (0: no budget, no pacing)
        rps = requests_per_second
        self._spacing = (_WINDOW + _WINDOW_MARGIN) / rps if rps else 0.0
        # Recent worst delay between passing the gate and the request leaving (decaying max):
        # a busy client can hold requests back after the gate and then send them bunched.
        self._send_lag = 0.0
        self._episode_rate = 0.0  # the rate flowing when the current run of 429s began

    @asynccontextmanager
    async def slot(self, kind: RequestKind = RequestKind.READ) -> AsyncIterator[None]:
        """Hold one request slot: waits for concurrency, rate budget and any 429 pause."""
        async with self._slots:
            started = await self._wait_for_start()
            with self._holding(self, started):
                yield

    async def _new_start(self) -> None:
        await self._wait_for_start()

    def note_send_lag(self, lag: float) -> None:
        """How long a request took from passing the gate to leaving; widens the rate window."""
        self._send_lag = max(lag, self._send_lag * 0.99, 0.0)
        self.stats.max_send_lag = max(self.stats.max_send_lag, lag)

    async def _wait_for_start(self) -> float:
        # One waiter at a time decides the next start time, so starts are ordered and the rate
        # log is exact even with many workers.
        async with self._start_lock:
            while True:
                now = anyio.current_time()
                wait = self._delay_before_start(now)
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            now = anyio.current_time()
            self._record_start(now)
            return now

    def _delay_before_start(self, now: float) -> float:
        wait = self._paused_until - now
        if self._window_cap and len(self._starts) >= self._window_cap:
            # _starts holds only starts inside the window: the cap-th latest must age out first
            oldest = self._starts[len(self._starts) - self._window_cap]
            wait = max(wait, oldest + _WINDOW + _WINDOW_MARGIN + self._send_lag - now)
        rate = self._current_dynamic_rate(now)
        if rate is not None:
            wait = max(wait, self._last_start + 1.0 / rate - now)
        elif self._spacing:
            wait = max(wait, self._paced_at - _PACE_BURST * self._spacing - now)
        return wait

    def _current_dynamic_rate(self, now: float) -> float | None:
        if self._dyn_rate is None:
            return None
        since = max(now - self._dyn_since, 0.0)
        rate: float = self._dyn_rate * float(self.recovery_factor**since)
        ceiling = self.requests_per_second or math.inf
        if rate >= ceiling or rate >= 10_000:
            self._dyn_rate = None  # fully recovered
            return None
        return rate

    def _record_start(self, now: float) -> None:
        self._last_start = now
        if self._spacing:
            self._paced_at = max(self._paced_at, now) + self._spacing
        self._starts.append(now)
        horizon = now - _WINDOW - _WINDOW_MARGIN - self._send_lag
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()

    def _recent_rate(self, now: float) -> float:
        """Request starts in the last second: the rate that was flowing."""
        return float(max(sum(1 for t in self._starts if t > now - _WINDOW), 1))

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429 came: pause every request for ``retry_after`` (or a default), then slow-start."""
        now = anyio.current_time()
        pause = self.default_pause if retry_after is None else retry_after
        pause = min(max(pause, 0.0), self.max_pause)
        until = now + pause
        if until > self._paused_until:
            self.stats.pauses += 1
            self.stats.paused_seconds += until - max(self._paused_until, now)
            self._paused_until = until
        current = self._current_dynamic_rate(now)
        if current is None:  # the first 429 of an episode: halve what was flowing
            self._episode_rate = self._recent_rate(now)
            base = self._episode_rate
        else:  # another one while recovering: halve again, but not below a quarter of it
            base = max(current, self._episode_rate / 2)
        self._dyn_rate = max(base / 2, self.min_recovery_rate)
        self._dyn_since = until
