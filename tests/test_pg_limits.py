"""Shared limits on PostgreSQL: one concurrency bound, one rate budget, one 429 pause for every
gate (process) using the same key against the same database.

Several ``SharedGate`` objects in one test stand for several processes: each is its own member
with its own connections, and they meet only in the database. Upper bounds only: a slow machine
makes them easier to meet, never harder.
"""

from __future__ import annotations

import sys
import time

import anyio
import httpx
import pytest
from pg_relay import relayed

from gptunnel_async import AsyncGPTunnel, Poller, PollerOptions
from gptunnel_async._errors import InvalidInputError
from gptunnel_async._polling.limits import PausedBeforeSend, RequestGate
from gptunnel_async._polling.shared import (
    CoordinatorUnavailableError,
    SharedGate,
    SharedLimits,
    key_fingerprint,
)
from gptunnel_async._retry import RequestKind
from gptunnel_async.poller import FixedIntervalPolicy
from gptunnel_async.testing import Emulator, EmulatorConfig, serve

pytestmark = pytest.mark.anyio
pytest_plugins = ["pg_support"]  # the pg_dsn and pg_schema fixtures

KEY = "sk-test-shared-limits-0123456789"


def _limits(dsn: str, schema: str, **kw: object) -> SharedLimits:
    return SharedLimits(dsn, schema=schema, **kw)  # type: ignore[arg-type]


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- the value object and the fingerprint (no database) --


def test_fingerprint_is_stable_keyed_and_not_the_key() -> None:
    a = key_fingerprint(KEY, "https://gptunnel.ru")
    assert a == key_fingerprint(KEY, "https://gptunnel.ru")
    assert a != key_fingerprint(KEY + "x", "https://gptunnel.ru")
    assert a != key_fingerprint(KEY, "http://127.0.0.1:8787")
    assert KEY not in a and KEY[:12] not in a


def test_shared_limits_validates_and_hides_the_password() -> None:
    limits = SharedLimits("postgresql://u:s3cret-pw@db.example:5433/app", requests_per_second=5)
    assert "s3cret-pw" not in repr(limits)
    assert "db.example:5433/app" in repr(limits)
    for bad in (
        {"max_concurrency": 0},
        {"requests_per_second": 0},
        {"schema": "Robert'); DROP TABLE x;--"},
        {"lease_ttl": 0.1},
    ):
        with pytest.raises(InvalidInputError):
            SharedLimits("postgresql://localhost/x", **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        SharedLimits("")


# -- against a real server --


async def test_unreachable_database_is_a_clear_error_before_anything(pg_schema: str) -> None:
    limits = SharedLimits(
        "postgresql://postgres:pw-never-shown@127.0.0.1:1/nowhere", schema=pg_schema
    )
    with pytest.raises(CoordinatorUnavailableError) as info:
        async with SharedGate(limits, "k" * 32):
            pytest.fail("entered a gate without its database")
    message = str(info.value)
    assert "127.0.0.1:1/nowhere" in message
    assert "pw-never-shown" not in message
    assert "\n" not in message


@pytest.mark.parametrize("store", ["limits", "journal"])
async def test_a_missing_driver_is_a_clear_error_before_anything(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the ``postgres`` extra both stores say how to install it, in one line."""
    from gptunnel_async.stores.postgres import PostgresJournal

    for name in [m for m in sys.modules if m == "psycopg" or m.startswith("psycopg.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes ``import psycopg`` fail
    dsn = "postgresql://postgres:pw-never-shown@127.0.0.1:5432/somedb"

    async def open_store() -> None:
        if store == "limits":
            async with SharedGate(SharedLimits(dsn), "k" * 32):
                pytest.fail("entered a gate without a driver")
        else:
            await PostgresJournal(dsn, "b").acquire()

    with pytest.raises(CoordinatorUnavailableError) as info:
        await open_store()
    message = str(info.value)
    assert "gptunnel-async[postgres]" in message and "127.0.0.1:5432/somedb" in message
    assert "pw-never-shown" not in message and "\n" not in message


async def test_concurrency_bound_holds_across_gates(pg_dsn: str, pg_schema: str) -> None:
    limits = _limits(pg_dsn, pg_schema, max_concurrency=3)
    holding = 0
    most = 0

    async def use(gate: SharedGate) -> None:
        nonlocal holding, most
        async with gate.slot():
            holding += 1
            most = max(most, holding)
            await anyio.sleep(0.02)
            holding -= 1

    async with SharedGate(limits, "c" * 32) as a, SharedGate(limits, "c" * 32) as b:
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(use, (a, b)[i % 2])
        assert a.members == 2 or b.members == 2
    assert most <= 3
    assert most == 3  # the bound is shared, not split: three at once were reached


async def test_rate_budget_is_shared(pg_dsn: str, pg_schema: str) -> None:
    rate = 20.0
    limits = _limits(pg_dsn, pg_schema, requests_per_second=rate)
    starts: list[float] = []

    async def use(gate: SharedGate) -> None:
        async with gate.slot():
            starts.append(anyio.current_time())

    async with (
        SharedGate(limits, "r" * 32) as a,
        SharedGate(limits, "r" * 32) as b,
        SharedGate(limits, "r" * 32) as c,
    ):
        async with anyio.create_task_group() as tg:
            for i in range(36):
                tg.start_soon(use, (a, b, c)[i % 3])
        trips = a.coordinator.round_trips + b.coordinator.round_trips + c.coordinator.round_trips
    assert len(starts) == 36
    assert max_in_window(starts, 1.0) <= rate
    assert trips < 36 * 2  # batched: fewer than two round trips per request


async def test_a_429_seen_by_one_gate_pauses_the_others(pg_dsn: str, pg_schema: str) -> None:
    limits = _limits(pg_dsn, pg_schema)
    async with SharedGate(limits, "p" * 32) as a, SharedGate(limits, "p" * 32) as b:
        a.rate_limited(0.6)
        until = a.paused_until
        with anyio.fail_after(5):
            while b.paused_until < until - 0.1:  # noqa: ASYNC110 (NOTIFY reaches b)
                await anyio.sleep(0.01)
        async with b.slot():
            entered = anyio.current_time()
    assert entered >= until - 0.1  # b's request waited out a's pause
    assert b.stats.pauses >= 1


async def test_a_429_reaches_the_others_checks_while_every_event_loop_is_busy(
    pg_dsn: str, pg_schema: str
) -> None:
    # a's thread records the pause, b's LISTEN thread makes it known to b's checks: neither
    # waits for its event loop, which is blocked here the whole time
    limits = _limits(pg_dsn, pg_schema)
    async with SharedGate(limits, "t" * 32) as a, SharedGate(limits, "t" * 32) as b:
        a.rate_limited(5.0)
        deadline = time.monotonic() + 5.0
        while b.paused_until <= anyio.current_time() and time.monotonic() < deadline:
            time.sleep(0.005)  # noqa: ASYNC251 (blocking the loop on purpose)
        assert b.paused_until > anyio.current_time() + 3.0
        while a.coordinator.pause_reports < 1 and time.monotonic() < deadline:
            time.sleep(0.005)  # noqa: ASYNC251 (and recorded, for grants and newcomers)
        assert a.coordinator.pause_reports == 1


class _PauseOnFirstRequest(httpx.AsyncBaseTransport):
    """A 429 elsewhere pauses the gate after this request passed it, before its first byte."""

    def __init__(self, gate: RequestGate | SharedGate) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.gate = gate
        self.paused = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.paused:
            self.paused = True
            self.gate.rate_limited(0.3)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_request_caught_by_a_pause_before_its_first_byte_waits_it_out() -> None:
    emulator = Emulator(EmulatorConfig(api_keys={KEY}))
    gate = RequestGate(4, requests_per_second=50)
    transport = _PauseOnFirstRequest(gate)
    async with (
        serve(emulator) as server,
        httpx.AsyncClient(transport=transport) as http,
        AsyncGPTunnel(KEY, base_url=server.url, http_client=http) as client,
    ):
        before = time.monotonic()
        await client.request("GET", "/v1/models", gate=gate)
    assert transport.paused
    arrivals = list(emulator.counters.arrivals)
    assert len(arrivals) == 1  # not sent into the pause, then sent once after it
    assert arrivals[0] - before >= 0.3


async def test_a_held_slot_caught_by_a_pause_goes_once_on_its_new_start(
    pg_dsn: str, pg_schema: str
) -> None:
    # a poller's way: the slot is held around the request; the pause comes before the wire
    emulator = Emulator(EmulatorConfig(api_keys={KEY}))
    limits = _limits(pg_dsn, pg_schema, requests_per_second=50, max_concurrency=4)
    async with SharedGate(limits, "h" * 32) as gate:
        transport = _PauseOnFirstRequest(gate)
        async with (
            serve(emulator) as server,
            httpx.AsyncClient(transport=transport) as http,
            AsyncGPTunnel(KEY, base_url=server.url, http_client=http) as client,
        ):
            before = time.monotonic()
            async with gate.slot():
                await client.request("GET", "/v1/models")
    arrivals = list(emulator.counters.arrivals)
    assert len(arrivals) == 1 and arrivals[0] - before >= 0.3
    assert gate.coordinator.late_sends == 0  # its new start after the pause was kept


async def test_a_grant_held_up_before_the_wire_takes_a_new_start(
    pg_dsn: str, pg_schema: str
) -> None:
    limits = _limits(pg_dsn, pg_schema, requests_per_second=50)
    async with SharedGate(limits, "s" * 32) as gate, gate.slot():
        started = anyio.current_time()
        assert await gate.before_send(started) == started  # on time: goes as granted
        await anyio.sleep(0.2)  # held up (a busy loop, a slow connection)
        later = await gate.before_send(started)
        assert later > started + 0.2
        gate.rate_limited(0.5)
        with pytest.raises(PausedBeforeSend):
            await gate.before_send(later)
    assert gate.coordinator.late_sends == 1


async def test_a_later_gate_learns_a_pause_in_force(pg_dsn: str, pg_schema: str) -> None:
    limits = _limits(pg_dsn, pg_schema)
    async with SharedGate(limits, "q" * 32) as a:
        a.rate_limited(2.0)
        async with anyio.create_task_group():
            pass
        async with a.slot(kind=RequestKind.READ):
            pass  # the pause is over; this also flushed the report
        a.rate_limited(3.0)
        async with SharedGate(limits, "q" * 32) as late:
            with anyio.fail_after(5):
                while late.paused_until <= anyio.current_time():  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert late.paused_until - anyio.current_time() > 1.0


async def test_a_dead_members_leases_lapse(pg_dsn: str, pg_schema: str) -> None:
    limits = _limits(pg_dsn, pg_schema, max_concurrency=2, lease_ttl=2.0)
    key = "d" * 32
    import psycopg

    async with SharedGate(limits, key) as gate:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a member that died holding both
            conn.execute(
                f"INSERT INTO {pg_schema}.limit_members (key, member, held, expires_at) "
                "VALUES (%s, 'dead', 2, clock_timestamp() + interval '1.5 seconds')",
                (key,),
            )
        with anyio.move_on_after(0.5) as early:
            async with gate.slot():
                pass
        assert early.cancelled_caught  # both leases still counted
        with anyio.fail_after(10):
            async with gate.slot():
                pass  # the dead member's heartbeat lapsed: its leases are free


async def test_the_key_is_never_stored(pg_dsn: str, pg_schema: str) -> None:
    emulator = Emulator(EmulatorConfig(api_keys={KEY}, time_scale=50.0))
    limits = _limits(pg_dsn, pg_schema, max_concurrency=4, requests_per_second=200)
    async with serve(emulator) as server:
        url = server.url
        async with AsyncGPTunnel(KEY, base_url=url, limits=limits) as client:
            task = await client.media.create(model="flux-dev", prompt="a fox")
            await client.media.result(task.id)
            assert client.shared_gate is not None
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        dump = conn.execute(
            f"SELECT string_agg(t::text, ' ') FROM ("
            f"SELECT l::text AS t FROM {pg_schema}.limits l "
            f"UNION ALL SELECT m::text FROM {pg_schema}.limit_members m) x"
        ).fetchone()
    text = str(dump)
    assert key_fingerprint(KEY, url) in text
    assert KEY not in text


async def test_poller_with_shared_limits_polls_to_completion(pg_dsn: str, pg_schema: str) -> None:
    emulator = Emulator(EmulatorConfig(api_keys={KEY}, time_scale=50.0))
    limits = _limits(pg_dsn, pg_schema, max_concurrency=3, requests_per_second=100)
    async with serve(emulator) as server:
        url = server.url
        async with AsyncGPTunnel(KEY, base_url=url) as client:
            tasks = [await client.media.create(model="flux-dev", prompt=f"p{i}") for i in range(6)]
            ids = [task.id for task in tasks]
            policy = FixedIntervalPolicy(0.05)
            async with Poller(
                client, PollerOptions(max_concurrency=8, limits=limits, policy=policy)
            ) as poller:
                for task_id in ids:
                    poller.add(task_id)
                finished = {r.id: r.ok async for r in poller}
                gate = poller.gate
    assert finished == dict.fromkeys(ids, True)
    assert isinstance(gate, SharedGate)
    assert gate.stats.max_in_flight <= 3
    assert emulator.counters.max_in_flight <= 3


async def test_a_poller_rate_beside_shared_limits_is_refused(pg_dsn: str, pg_schema: str) -> None:
    limits = _limits(pg_dsn, pg_schema)
    client = AsyncGPTunnel(KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(InvalidInputError):
        Poller(client, PollerOptions(requests_per_second=5, limits=limits))
    await client.aclose()


async def test_a_client_with_limits_must_be_entered(pg_dsn: str, pg_schema: str) -> None:
    limits = _limits(pg_dsn, pg_schema)
    client = AsyncGPTunnel(KEY, base_url="http://127.0.0.1:9", limits=limits)
    with pytest.raises(Exception, match="async with"):
        await client.media.result("0123456789abcdef")
    await client.aclose()


async def test_database_lost_mid_run_holds_creates_and_lets_polls_go_on(
    pg_dsn: str, pg_schema: str
) -> None:
    async with relayed(pg_dsn) as (relay, via_relay):
        limits = _limits(via_relay, pg_schema, max_concurrency=4, outage_timeout=60)
        async with SharedGate(limits, "o" * 32) as gate:
            async with gate.slot(RequestKind.CREATE):
                pass
            relay.drop_all()  # PostgreSQL is gone
            with anyio.fail_after(20):
                async with gate.slot(RequestKind.READ):
                    pass  # polls go on, within this process's share
            assert gate.coordinator.outages == 1
            with anyio.move_on_after(1.0) as held:
                async with gate.slot(RequestKind.CREATE):
                    pytest.fail("a create passed the gate while its database was away")
            assert held.cancelled_caught
            relay.cut = False  # it is back
            with anyio.fail_after(20):
                async with gate.slot(RequestKind.CREATE):
                    pass


async def test_a_429_while_the_database_is_away_is_recorded_with_what_is_left_of_it(
    pg_dsn: str, pg_schema: str
) -> None:
    async with (
        relayed(pg_dsn) as (relay, via_relay),
        SharedGate(_limits(via_relay, pg_schema), "w" * 32) as away,
        SharedGate(_limits(pg_dsn, pg_schema), "w" * 32) as other,
    ):
        relay.drop_all()  # PostgreSQL is gone for `away`
        away.rate_limited(3.0)
        await anyio.sleep(1.0)
        assert other.paused_until <= anyio.current_time()  # nobody could be told
        relay.cut = False  # it is back
        with anyio.fail_after(10):
            while other.paused_until <= anyio.current_time():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        left = other.paused_until - anyio.current_time()
        assert 0 < left <= 2.05  # what was left of the 3 s, not 3 s from now
        with anyio.fail_after(10):  # (announced first, then recorded)
            while away.coordinator.pause_reports < 1:  # noqa: ASYNC110
                await anyio.sleep(0.01)
