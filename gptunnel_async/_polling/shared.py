"""Limits shared by every process that uses one API key: ``SharedLimits`` and ``SharedGate``.

One process's ``RequestGate`` keeps its own budget; N processes with ``rps=R`` each send N·R,
and each pauses only for the 429s it saw itself. ``SharedGate`` is the same small gate interface
backed by PostgreSQL (see ``_pg_limits``): one concurrency bound across processes (leases held
by a member that heartbeats; a dead member's leases lapse after ``lease_ttl``), one rate budget
(each request gets a start time from one schedule on the database's clock), and one 429 pause
(recorded in the database and pushed to every member with NOTIFY).

A 429 reaches the others in about one round trip: the process that got it hands the pause
straight to a thread of its own that records it (no event-loop hop first), and every other
member's LISTEN thread makes it known to that process's checks the moment the NOTIFY arrives
(again before any hop into its event loop). The last check is made just before a request's
first byte leaves (``limits._Slot.trace``): a request the pause caught between its grant and
the wire is not sent, and takes a new start after the pause.

Round trips are batched: one coordinator task per gate asks for every slot waiting at that
moment (and reports every lease given back) in one call, so under load a request costs well
under one round trip. PostgreSQL unreachable when the gate opens: ``CoordinatorUnavailableError``
before any request. Lost mid-run: creates wait for it (at most ``outage_timeout``, then the same
error: nothing was sent); polls go on through a local gate holding this process's last-known
share of the budget.
"""

from __future__ import annotations

import hmac
import math
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._errors import CoordinatorUnavailableError
from .._logs import logger
from .._retry import RequestKind
from ._pg_limits import (
    DatabaseUnavailable,
    Grant,
    LimitsConnection,
    LimitsListener,
    describe_dsn,
)
from .limits import RequestGate, SlotBookkeeping

_RETRY_FULL = 0.25  # re-ask this often while the shared bound is full (a dead member's leases)
# New leases are granted only for starts this close: nobody holds a lease long before using it.
_HORIZON = 0.15
# A start missed by more than this (the grant's answer came late) is taken again, not kept: a
# late request would bunch up with the ones timed after it.
_LATE = 0.025
_RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class SharedLimits:
    """One API key's limits shared through PostgreSQL by every process that uses them.

    ``dsn``: a ``postgresql://`` URL (or libpq key=value string). ``max_concurrency`` bounds
    simultaneous requests across all processes; ``requests_per_second`` is the budget of all
    of them together (``None``: no budget, the 429 pause is still shared). ``schema`` holds the
    tables. A process that dies holds its leases at most ``lease_ttl`` seconds. A create waits
    at most ``outage_timeout`` seconds for a lost database to come back.
    """

    dsn: str = field(repr=False)
    max_concurrency: int | None = None
    requests_per_second: float | None = None
    schema: str = "gptunnel"
    lease_ttl: float = 10.0
    outage_timeout: float = 300.0
    min_recovery_rate: float = 2.0
    default_pause: float = 1.0
    max_pause: float = 60.0

    def __post_init__(self) -> None:
        from .._errors import InvalidInputError
        from ._pg_limits import check_schema

        if not isinstance(self.dsn, str) or not self.dsn.strip():
            raise InvalidInputError("SharedLimits needs a PostgreSQL DSN (postgresql://...)")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise InvalidInputError("SharedLimits.max_concurrency must be >= 1 (or None)")
        rps = self.requests_per_second
        if rps is not None and not rps > 0:
            raise InvalidInputError("SharedLimits.requests_per_second must be > 0 (or None)")
        if not self.lease_ttl >= 1.0:
            raise InvalidInputError("SharedLimits.lease_ttl must be >= 1 second")
        if not self.outage_timeout >= 0:
            raise InvalidInputError("SharedLimits.outage_timeout must be >= 0 seconds")
        try:
            check_schema(self.schema)
        except ValueError as exc:
            raise InvalidInputError(f"SharedLimits: {exc}") from None

    @property
    def where(self) -> str:
        """``host:port/dbname`` (for messages; never a password)."""
        return describe_dsn(self.dsn)

    def __repr__(self) -> str:
        return (
            f"SharedLimits(where={self.where!r}, max_concurrency={self.max_concurrency}, "
            f"requests_per_second={self.requests_per_second}, schema={self.schema!r})"
        )


def key_fingerprint(api_key: str, base_url: str) -> str:
    """What the database stores for a key: an HMAC of the base URL keyed by the API key.

    The same key against the same server shares limits; the key itself cannot be read back.
    """
    mac = hmac.new(api_key.encode(), b"gptunnel-async limits\n" + base_url.encode(), "sha256")
    return mac.hexdigest()[:32]


@dataclass
class CoordinatorStats:
    """Round trips to PostgreSQL and their latency (seconds), for benchmarks and monitoring."""

    round_trips: int = 0
    pause_reports: int = 0  # round trips recording a 429 (from this process's pause thread)
    late_grants: int = 0
    late_sends: int = 0  # held up after the gate longer than a grant is good for: re-timed
    failures: int = 0
    outages: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    # from a 429's arrival here to its pause being in the database (seconds)
    pause_delays: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class _ClockMap:
    """The database's clock mapped onto this event loop's (as NTP does): the offset measured
    by the fastest recent round trip, which is good to half that round trip's time. Starts are
    then kept to the database's schedule whatever one answer's own latency was."""

    __slots__ = ("_at", "_offset", "_rtt", "latency")

    def __init__(self) -> None:
        self._offset = 0.0
        self._rtt = math.inf
        self._at = -math.inf
        self.latency = 0.0  # smoothed one-way latency (the lead a start needs)

    def observe(self, sent: float, received: float, db_now: float) -> None:
        rtt = max(received - sent, 0.0)
        self.latency = rtt / 2 if self.latency == 0.0 else 0.9 * self.latency + 0.1 * rtt / 2
        if rtt <= self._rtt or received - self._at > 30.0:  # better, or the best is stale
            self._offset = db_now - (sent + received) / 2
            self._rtt, self._at = rtt, received

    def local(self, db_time: float) -> float:
        return db_time - self._offset


class _Waiter:
    """A slot waiting for its lease and start time (``rerate``: it holds a lease already)."""

    __slots__ = ("cancelled", "degraded", "event", "granted", "rerate", "start")

    def __init__(self, rerate: bool) -> None:
        self.rerate = rerate
        self.event = anyio.Event()
        self.granted = False
        self.degraded = False
        self.cancelled = False
        self.start = 0.0


class SharedGate(SlotBookkeeping):
    """The gate interface (``slot``, ``rate_limited``, ``paused_until``...) over PostgreSQL.

    Use as ``async with SharedGate(limits, fingerprint) as gate:``; ``local_concurrency``
    bounds this process's own simultaneous requests on top of the shared bound.
    """

    def __init__(
        self, limits: SharedLimits, fingerprint: str, *, local_concurrency: int | None = None
    ) -> None:
        self.limits = limits
        super().__init__()
        self.coordinator = CoordinatorStats()
        self._key = fingerprint
        self._member = secrets.token_hex(8)
        self._local_concurrency = local_concurrency
        self._local: anyio.Semaphore | None = None
        self._conn = LimitsConnection(limits.dsn, limits.schema)
        self._pause_conn = LimitsConnection(limits.dsn, limits.schema)
        self._listener = LimitsListener(limits.dsn, limits.schema)
        self._tg: TaskGroup | None = None
        self._waiters: deque[_Waiter] = deque()
        # anyio primitives pick their backend when created: made in __aenter__
        self._wake: anyio.Event
        self._free: anyio.Event
        self._recovered: anyio.Event
        # 429s to record: time.monotonic() deadlines, read by the pause thread
        self._pause_queue: queue.SimpleQueue[tuple[float, float] | None] = queue.SimpleQueue()
        # the latest pause deadline learned in a thread (time.monotonic()): every check reads it
        self._thread_pause = -math.inf
        self._thread_pause_lock = threading.Lock()
        self._stop = threading.Event()
        self._held = 0  # leases in use by this process's slots
        self._reported_held = 0
        self._pause_gen = 0
        self._members = 1
        self._clock = _ClockMap()
        self._starved_until = -math.inf  # a member waits for a lease: give ours back at once
        self._degraded = False
        self._fallback: RequestGate | None = None

    # -- lifecycle --

    async def __aenter__(self) -> SharedGate:
        if self._tg is not None:
            raise RuntimeError("a SharedGate can be entered only once")
        if self._local_concurrency:
            self._local = anyio.Semaphore(self._local_concurrency)
        self._wake, self._free, self._recovered = anyio.Event(), anyio.Event(), anyio.Event()
        try:
            await anyio.to_thread.run_sync(lambda: self._conn.open(install=True))
            await anyio.to_thread.run_sync(self._listener.connect)
            await anyio.to_thread.run_sync(lambda: self._pause_conn.open(install=False))
            await self._round_trip(0, 0)  # register; learn any pause in force
        except DatabaseUnavailable as exc:
            await anyio.to_thread.run_sync(self._conn.close)
            await anyio.to_thread.run_sync(self._pause_conn.close)
            await anyio.to_thread.run_sync(self._listener.close)
            raise CoordinatorUnavailableError(
                f"shared limits: PostgreSQL at {self.limits.where} is unavailable ({exc})"
            ) from None
        tg = anyio.create_task_group()
        await tg.__aenter__()
        # both threads are running when this returns: a 429 from now on is announced at once
        await tg.start(self._listen_loop)
        await tg.start(self._pause_thread)
        self._tg = tg
        tg.start_soon(self._coordinate)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._listener.stop.set()
        self._stop.set()
        self._pause_queue.put(None)
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                with suppress(DatabaseUnavailable):  # give the leases back now, not at expiry
                    await anyio.to_thread.run_sync(self._conn.leave, self._key, self._member)
                await anyio.to_thread.run_sync(self._conn.close)
                await anyio.to_thread.run_sync(self._pause_conn.close)
                await anyio.to_thread.run_sync(self._listener.close)

    # -- the gate interface --

    @property
    def members(self) -> int:
        """Processes sharing this key's limits, as last seen."""
        return self._members

    @asynccontextmanager
    async def slot(self, kind: RequestKind = RequestKind.READ) -> AsyncIterator[None]:
        """Hold one request slot: a shared lease, a start time in the shared budget, no pause."""
        if self._tg is None:
            raise RuntimeError("enter the SharedGate (`async with`) before using it")
        async with AsyncExitStack() as stack:
            if self._local is not None:
                await stack.enter_async_context(self._local)
            if await self._lease(kind):
                stack.callback(self._release)
            else:  # the database is away: polls go on within this process's share
                await stack.enter_async_context(self._fallback_gate().slot())
            with self._holding(self, anyio.current_time()):
                yield

    @property
    def paused_until(self) -> float:
        """Event-loop time until which every request waits: this process's own 429s, and every
        other member's as soon as this process's LISTEN thread has read it."""
        left = self._thread_pause - time.monotonic()
        if left > 0:
            self._note_pause(left)
        return self._paused_until

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429 came: pause here at once, and tell every other process through the database."""
        pause = self.limits.default_pause if retry_after is None else retry_after
        pause = min(max(pause, 0.0), self.limits.max_pause)
        # first of all, to the thread that records it (it wakes without waiting for this loop)
        now = time.monotonic()
        self._pause_queue.put((now, now + pause))
        self._note_pause(pause)
        if self._fallback is not None:
            self._fallback.rate_limited(retry_after)

    def note_send_lag(self, lag: float) -> None:
        self.stats.max_send_lag = max(self.stats.max_send_lag, lag)

    # -- leases --

    async def _lease(self, kind: RequestKind) -> bool:
        """Hold a lease timed into the budget (True), or False for a read while degraded."""
        while True:
            if self._degraded:
                if kind is not RequestKind.CREATE:
                    return False
                await self._wait_recovered()
                continue
            waiter = await self._ask(_Waiter(rerate=False))
            if waiter.degraded:
                continue
            try:
                timed = await self._reach_start(waiter)
            except BaseException:
                self._release()
                raise
            if timed:
                return True
            self._release()  # the database went away meanwhile: start over

    async def _reach_start(self, waiter: _Waiter, *, pause_stops: bool = False) -> bool:
        """Sleep until the lease's start; after a new pause, or if the grant came back too late
        to keep its start, take a new start (False: the database went away meanwhile, or a
        pause came and ``pause_stops``)."""
        while True:
            gen = self._pause_gen
            if anyio.current_time() - waiter.start <= _LATE:
                await anyio.sleep(max(0.0, waiter.start - anyio.current_time()))
            # woken late too (a busy or starved event loop): going now would bunch up with
            # the requests other processes send on time
            late = anyio.current_time() - waiter.start > _LATE
            if late:
                self.coordinator.late_grants += 1
            elif gen == self._pause_gen and self.paused_until <= anyio.current_time():
                return True
            elif pause_stops:
                return False
            await self._sleep_out_pause()
            if self._degraded:
                return False
            waiter = await self._ask(_Waiter(rerate=True))
            if waiter.degraded:
                return False

    async def before_send(self, started: float) -> float:
        """Just before the first byte: no pause since the grant (else ``PausedBeforeSend``),
        and a start not long past. A grant is good for ``_LATE`` after its start: a request
        held up longer than that after passing the gate (a busy event loop, a slow
        connection) takes a new start first. Late, it would bunch up with the requests other
        processes send on time, and its grant may predate a 429 this process has not yet
        heard of (the pause reaches PostgreSQL, then us, in about a round trip)."""
        started = await super().before_send(started)
        if anyio.current_time() - started <= _LATE or self._degraded:
            return started
        self.coordinator.late_sends += 1
        waiter = await self._ask(_Waiter(rerate=True))
        if not waiter.degraded:
            await self._reach_start(waiter, pause_stops=True)
        return await super().before_send(anyio.current_time())

    async def _new_start(self) -> None:
        """A held lease caught by a pause between its grant and the wire: a new start after
        it, in the shared budget (nothing more to wait for while the database is away)."""
        if self._degraded:
            return
        waiter = await self._ask(_Waiter(rerate=True))
        if not waiter.degraded:
            await self._reach_start(waiter)

    async def _ask(self, waiter: _Waiter) -> _Waiter:
        self._waiters.append(waiter)
        self._wake.set()
        try:
            await waiter.event.wait()
        except BaseException:
            waiter.cancelled = True
            if waiter.granted and not waiter.rerate:
                self._release()
            raise
        return waiter

    def _release(self) -> None:
        """Give a lease back; the database learns it with the next round trip, at once only
        while someone waits for a lease (ours, or another member's: "starved")."""
        self._held -= 1
        if self.limits.max_concurrency is None:
            return
        if self._waiters or self._starved_until > anyio.current_time():
            self._wake.set()
            self._free.set()

    async def _wait_recovered(self) -> None:
        with anyio.move_on_after(self.limits.outage_timeout) as scope:
            await self._recovered.wait()
        if scope.cancelled_caught:
            raise CoordinatorUnavailableError(
                f"shared limits: PostgreSQL at {self.limits.where} has been unreachable for "
                f"{self.limits.outage_timeout:g} s; the create was not sent"
            )

    # -- pauses --

    def _note_pause(self, seconds: float) -> None:
        until = anyio.current_time() + seconds
        if until > self._paused_until + 0.001:
            now = anyio.current_time()
            self.stats.pauses += 1
            self.stats.paused_seconds += until - max(self._paused_until, now)
            self._paused_until = until
            self._pause_gen += 1

    def _on_message(self, payload: str) -> None:
        key, _, rest = payload.partition(" ")
        if key != self._key:
            return
        what = rest.partition(" ")[0]
        if what == "pause":  # known already (the LISTEN thread): to the loop's own clock
            _ = self.paused_until
        elif what == "free":
            self._free.set()
        elif what == "starved":
            self._starved_until = anyio.current_time() + 1.0
            if self._held != self._reported_held:
                self._wake.set()

    # -- the coordinator: one round trip at a time, for everything waiting --

    async def _round_trip(self, new: int, rerate: int) -> tuple[Grant, float]:
        """One acquire round; the grant and its first start, in event-loop time."""
        limits = self.limits
        held = self._held
        started = time.perf_counter()
        try:
            sent = anyio.current_time()
            grant = await anyio.to_thread.run_sync(
                self._conn.acquire,
                self._key,
                self._member,
                held,
                new,
                rerate,
                limits.max_concurrency,
                limits.requests_per_second,
                limits.lease_ttl,
                _HORIZON,
                min(2 * self._clock.latency + 0.005, 0.5),  # ahead of the answer's arrival
            )
        except DatabaseUnavailable:
            self.coordinator.failures += 1
            raise
        now = anyio.current_time()
        self._clock.observe(sent, now, grant.db_now)
        self.coordinator.round_trips += 1
        self.coordinator.latencies.append(time.perf_counter() - started)
        self._reported_held = held + grant.granted
        self._members = grant.members
        if grant.starved:
            self._starved_until = now + 1.0
        if grant.paused > 0:
            self._note_pause(grant.paused)
        return grant, self._clock.local(grant.start_at)

    async def _coordinate(self) -> None:
        heartbeat = self.limits.lease_ttl / 3
        while True:
            with anyio.move_on_after(heartbeat):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self._serve_waiters()
            except DatabaseUnavailable as exc:
                await self._outage(exc)

    async def _serve_waiters(self) -> None:
        """Serve every waiting slot in as few round trips as it takes.

        Woken with nothing waiting, it still makes one: a heartbeat, or leases given back
        while another member waits for one.
        """
        while True:
            batch = [w for w in self._waiters if not w.cancelled]
            self._waiters.clear()
            if not batch:
                await self._round_trip(0, 0)
                return
            if self.paused_until > anyio.current_time():
                self._waiters.extendleft(reversed(batch))
                await self._sleep_out_pause()
                continue
            rerate = [w for w in batch if w.rerate]
            new = [w for w in batch if not w.rerate]
            try:
                grant, start = await self._round_trip(len(new), len(rerate))
            except BaseException:
                self._waiters.extendleft(reversed(batch))
                raise
            timed = rerate + new[: grant.granted]
            if grant.spacing == 0:  # no rate budget in force: go now
                start = anyio.current_time()
            if self.paused_until > anyio.current_time():  # paused meanwhile: nothing timed
                timed = []
            for i, w in enumerate(timed):
                w.start = start + i * grant.spacing
                if not w.rerate:
                    w.granted = True
                    self._held += 1
                    if w.cancelled:  # gave up while we asked: hand the lease straight back
                        self._held -= 1
                w.event.set()
            waiting = [w for w in batch if not w.event.is_set() and not w.cancelled]
            if not waiting:
                if not self._waiters:
                    return
                continue
            self._waiters.extendleft(reversed(waiting))
            if self.paused_until > anyio.current_time():
                await self._sleep_out_pause()
                continue
            # Not granted: the rate schedule is full beyond the horizon (ask again when it
            # comes within it), or the shared bound is full (ask again when a lease is freed).
            next_free = grant.wait + len(timed) * grant.spacing - max(_HORIZON, 4 * grant.spacing)
            self._free = anyio.Event()
            with anyio.move_on_after(max(0.005, next_free) if next_free > 0 else _RETRY_FULL):
                await self._free.wait()

    async def _outage(self, exc: DatabaseUnavailable) -> None:
        """Lost the database: let polls go on locally, hold creates, reconnect with backoff."""
        logger.warning(
            "shared limits: PostgreSQL at %s unavailable (%s); creates wait, polls go on",
            self.limits.where,
            exc,
        )
        self.coordinator.outages += 1
        self._degraded = True
        self._recovered = anyio.Event()
        for w in self._waiters:
            w.degraded = True
            w.event.set()
        self._waiters.clear()
        attempt = 0
        while True:
            await anyio.sleep(_RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)])
            attempt += 1
            try:
                await anyio.to_thread.run_sync(lambda: self._conn.open(install=False))
                await self._round_trip(0, 0)
            except DatabaseUnavailable:
                continue
            break
        logger.warning("shared limits: PostgreSQL at %s is back", self.limits.where)
        self._degraded = False
        self._fallback = None
        self._recovered.set()

    def _fallback_gate(self) -> RequestGate:
        """This process's share of the budget, for polls while the database is away."""
        if self._fallback is None:
            n = max(1, self._members)
            conc = self.limits.max_concurrency
            rps = self.limits.requests_per_second
            self._fallback = RequestGate(
                max(1, conc // n) if conc else 1_000_000, rps / n if rps else None
            )
            if self.paused_until > anyio.current_time():
                self._fallback.rate_limited(self.paused_until - anyio.current_time())
        return self._fallback

    def _learn_pause_in_thread(self, seconds: float) -> None:
        """A pause read by a thread (ours recorded, or another member's NOTIFY): every check
        in this process sees it from now on, before the event loop runs any callback."""
        with self._thread_pause_lock:
            self._thread_pause = max(self._thread_pause, time.monotonic() + seconds)

    def _record_pauses(self) -> None:
        """The pause thread, for the gate's life: records each 429 in the database the moment
        ``rate_limited`` queues it, on a connection of its own (never behind a grant round).
        429s queued meanwhile go as one (the latest end); a 429 that could not be recorded is
        kept, and recorded with what is left of it once the database answers again."""
        limits = self.limits
        attempt = 0
        while not self._stop.is_set():
            try:
                item = self._pause_queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            came, until = item
            with suppress(queue.Empty):
                while (more := self._pause_queue.get_nowait()) is not None:
                    came, until = min(came, more[0]), max(until, more[1])
            while not self._stop.is_set() and (left := until - time.monotonic()) > 0:
                try:
                    remaining = self._pause_conn.pause(
                        self._key, left, limits.requests_per_second, limits.min_recovery_rate
                    )
                except DatabaseUnavailable:
                    self._stop.wait(_RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)])
                    attempt += 1
                    continue
                attempt = 0
                self.coordinator.pause_reports += 1
                self.coordinator.pause_delays.append(time.monotonic() - came)
                self._learn_pause_in_thread(remaining)
                break

    async def _pause_thread(self, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await anyio.to_thread.run_sync(self._record_pauses)

    async def _listen_loop(self, *, task_status: TaskStatus[None]) -> None:
        """Read the LISTEN connection (other members' pauses and freed leases arrive here)."""
        task_status.started()

        def deliver(payload: str) -> None:
            key, _, rest = payload.partition(" ")
            what, _, value = rest.partition(" ")
            if key == self._key and what == "pause":
                self._learn_pause_in_thread(float(value))
            anyio.from_thread.run_sync(self._on_message, payload)

        attempt = 0
        while not self._listener.stop.is_set():
            try:
                await anyio.to_thread.run_sync(self._listener.run, deliver)
            except DatabaseUnavailable:
                await anyio.sleep(_RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)])
                attempt += 1
            else:
                attempt = 0
