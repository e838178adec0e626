"""A shared (PostgreSQL) journal lost mid-run: the run waits for it, and never sends twice.

- cut off (its sessions terminated, new ones refused): no create leaves, the tasks in flight
  are polled (creates wait outside the gate, so they hold no slot the polls need), and once
  the database is back the batch finishes with each request created exactly once;
- not back within ``outage_timeout``: the run ends with one typed, one-line error;
- while a run is cut off its liveness lock lapses, and a live run may take its rows over:
  such a row is then neither sent nor written by the run that comes back (a compare-and-set
  on ownership), its tasks are dropped there quietly (the other run reports them), and a
  create of its own that was on the wire keeps its task id.

Connections are cut only in this test run's own database (``pg_dsn``), and only the journal's
(its ``application_name``), or through a relay of the test's own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from pg_relay import relayed

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel
from gptunnel_async._errors import (
    CoordinatorUnavailableError,
    CreateOutcomeUnknownError,
    JournalAwayError,
    JournalTakenOverError,
    JournalUnavailableError,
)
from gptunnel_async.poller import PollerOptions, generate_many
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

pytest_plugins = ["pg_support"]  # the pg_server, pg_dsn and pg_schema fixtures

SCALE = 20.0
MODEL = "google-imagen-3"
JOURNAL_APPS = "gptunnel-async journal%"  # the journal's two connections, no one else's


def _client(url: str) -> AsyncGPTunnel:
    return AsyncGPTunnel("test-key", base_url=url, poll_policy=AdaptivePolicy(clock_scale=SCALE))


def _requests(n: int) -> list[dict[str, Any]]:
    return [{"model": MODEL, "prompt": f"prompt {i}", "tag": i} for i in range(n)]


def _polls(emu: Emulator) -> int:
    return sum(n for route, n in emu.counters.requests_by_route.items() if "result" in route)


@contextmanager
def _cut_off_now(pg_server: str, pg_dsn: str) -> Iterator[None]:
    """This test run's database refuses new connections and the journal's sessions in it are
    terminated (no one else's); allowed again on the way out."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    db = conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE %s AND pid <> pg_backend_pid()",
                (db, JOURNAL_APPS),
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')


@asynccontextmanager
async def _cut_off(pg_server: str, pg_dsn: str) -> AsyncIterator[None]:
    with _cut_off_now(pg_server, pg_dsn):
        yield


async def _until(check: Any, seconds: float = 30.0) -> None:
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_creates_wait_for_a_lost_journal_outside_the_gate_and_polls_go_on(
    pg_server: str, pg_dsn: str, pg_schema: str
) -> None:
    """Two slots for creates and polls together. Creates wait for the database outside the
    gate: at their claim, or, when the loss is found at the write-ahead (inside the gate), the
    slot is given back first (``mark_on_wire`` never waits: see the next test but one)."""
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 16
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(20.0, 40.0)}))
    journal = PostgresJournal(pg_dsn, "outage-1", schema=pg_schema, outage_timeout=60)
    await journal.acquire()
    prompts: list[str] = []
    during: dict[str, int] = {}
    try:
        async with (
            serve(emu) as server,
            _client(server.url) as client,
            generate_many(
                client, _requests(n), PollerOptions(max_concurrency=2), journal=journal
            ) as run,
            anyio.create_task_group() as tg,
        ):

            async def outage() -> None:
                await _until(lambda: run.progress.created >= 3)
                async with _cut_off(pg_server, pg_dsn):
                    await anyio.sleep(0.5)  # a create on the wire lands
                    creates, polls = emu.counters.creates_total, _polls(emu)
                    await anyio.sleep(2.5)
                    during["creates"] = emu.counters.creates_total - creates
                    during["polls"] = _polls(emu) - polls

            tg.start_soon(outage)
            async for r in run:
                assert r.ok, r.error
                prompts.append(r.request["prompt"])
        # each outcome written after its task id, however long the task id waited
        rows = await journal.records()
    finally:
        await journal.aclose()
    assert [row.state for row in rows] == ["done"] * n
    assert during["creates"] == 0  # nothing left while the journal could not record it
    assert during["polls"] >= 3  # the tasks in flight were polled all along
    assert journal.outages >= 1
    assert sorted(prompts) == sorted(r["prompt"] for r in _requests(n))
    assert len(emu.counters.creates_by_prompt) == n
    assert set(emu.counters.creates_by_prompt.values()) == {1}  # each created exactly once


@pytest.mark.anyio
async def test_a_create_that_finds_the_journal_gone_at_its_write_ahead_gives_its_slot_back(
    pg_server: str, pg_dsn: str, pg_schema: str
) -> None:
    """One slot for creates and polls together; a create worker holds its claim until the
    database is cut off, so it finds the loss inside the gate, at its write-ahead. It gives
    the slot back and waits outside (waiting inside, it would stop every poll)."""
    from gptunnel_async.stores.postgres import PostgresJournal

    held, cut = anyio.Event(), anyio.Event()

    class HeldAfterClaim(PostgresJournal):
        async def claim(self, key: str, index: int, body: Any) -> Any:
            claim = await super().claim(key, index, body)
            # the first claim after two others: decided by the claim itself, not by racing
            # the run's progress (the feeder may have claimed every row by then)
            if index >= 2 and not held.is_set():
                held.set()
                with anyio.fail_after(30):
                    await cut.wait()
            return claim

    n = 6
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(20.0, 40.0)}))
    journal = HeldAfterClaim(pg_dsn, "outage-5", schema=pg_schema, outage_timeout=60)
    await journal.acquire()
    during: dict[str, int] = {}
    try:
        async with (
            serve(emu) as server,
            _client(server.url) as client,
            generate_many(
                client, _requests(n), PollerOptions(max_concurrency=1), journal=journal
            ) as run,
            anyio.create_task_group() as tg,
        ):

            async def outage() -> None:
                with anyio.fail_after(30):
                    await held.wait()  # a create has its claim, and goes for the gate next
                await _until(lambda: run.progress.created >= 2)
                async with _cut_off(pg_server, pg_dsn):
                    cut.set()
                    await anyio.sleep(0.5)
                    creates, polls = emu.counters.creates_total, _polls(emu)
                    await anyio.sleep(2.0)
                    during["creates"] = emu.counters.creates_total - creates
                    during["polls"] = _polls(emu) - polls

            tg.start_soon(outage)
            async for r in run:
                assert r.ok, r.error
    finally:
        await journal.aclose()
    assert during["creates"] == 0
    assert during["polls"] >= 2  # the one slot was not held by the waiting create
    assert set(emu.counters.creates_by_prompt.values()) == {1}
    assert len(emu.counters.creates_by_prompt) == n


@pytest.mark.anyio
async def test_a_journal_not_back_in_time_ends_the_run_with_one_typed_error(
    pg_server: str, pg_dsn: str, pg_schema: str
) -> None:
    from gptunnel_async.stores.postgres import PostgresJournal

    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(20.0, 40.0)}))
    journal = PostgresJournal(pg_dsn, "outage-2", schema=pg_schema, outage_timeout=1.5)
    await journal.acquire()
    creates: list[int] = []

    async def run_through_the_outage(url: str) -> None:
        async with (
            _client(url) as client,
            generate_many(
                client, _requests(12), PollerOptions(max_concurrency=2), journal=journal
            ) as run,
        ):
            await _until(lambda: run.progress.created >= 2)
            async with _cut_off(pg_server, pg_dsn):
                creates.append(emu.counters.creates_total)
                async for _ in run:
                    pass

    try:
        async with serve(emu) as server:
            with pytest.raises(JournalUnavailableError) as caught, anyio.fail_after(30):
                await run_through_the_outage(server.url)
    finally:
        await journal.aclose()
    error = caught.value
    assert isinstance(error, CoordinatorUnavailableError)  # as when it is down at the start
    assert not hasattr(error, "exceptions")  # one error, not a group of them
    assert "\n" not in str(error) and "not back within 1.5 s" in str(error)
    assert emu.counters.creates_total <= creates[0] + 2  # at most those on the wire
    assert set(emu.counters.creates_by_prompt.values()) == {1}


@pytest.mark.anyio
async def test_rows_taken_over_while_cut_off_are_neither_sent_nor_written(
    pg_dsn: str, pg_schema: str
) -> None:
    from gptunnel_async.stores.postgres import PostgresJournal

    body = {"model": MODEL, "prompt": "p"}
    async with relayed(pg_dsn) as (relay, via_relay):
        cut_off = PostgresJournal(via_relay, "outage-3", schema=pg_schema, outage_timeout=30)
        live = PostgresJournal(pg_dsn, "outage-3", schema=pg_schema)
        await cut_off.acquire()
        try:
            for i, key in enumerate(("claimed", "created", "on-wire")):
                assert (await cut_off.claim(key, i, body)).won
            await cut_off.mark_on_wire("created")
            await cut_off.record("created", "created", task_id="t-created")
            await cut_off.mark_on_wire("on-wire")  # ... and its answer comes during the cut
            # a task id written just before the cut, whose answer the cut lost: written again
            assert (await cut_off.claim("answered", 3, body)).won
            await cut_off.mark_on_wire("answered")
            await cut_off.record("answered", "created", task_id="t-answered")
            relay.drop_all()
            await live.acquire()
            with anyio.fail_after(10):  # PostgreSQL ends the cut sessions: their lock is free
                while len(taken := await live.take_over()) < 4:
                    assert not taken
                    await anyio.sleep(0.05)
            states = {record.key: record.state for record, _ in taken}
            assert states == {
                "claimed": "claimed",
                "created": "created",
                "on-wire": "sending",
                "answered": "created",
            }

            with anyio.fail_after(1), pytest.raises(JournalAwayError):  # never waits (gate)
                await cut_off.mark_on_wire("claimed")
            relay.cut = False  # back
            await cut_off.wait_ready()
            assert cut_off.outages == 1
            with pytest.raises(JournalTakenOverError):  # the live run sends it, not this one
                await cut_off.mark_on_wire("claimed")
            with pytest.raises(JournalTakenOverError):  # the live run polls and reports it
                await cut_off.record("created", "done", url="https://x/y.png")
            with pytest.raises(JournalTakenOverError):  # its task id is there: polled there
                await cut_off.record("answered", "created", task_id="t-answered")
            # a create that was on the wire: its task id is kept (the live run can only call
            # it unknown, never send it again), and the row is this run's again
            await live.record("on-wire", "unknown", error="the run was stopped")
            await cut_off.record("on-wire", "created", task_id="t-on-wire")
            rows = {r.key: r for r in await live.records()}
            assert rows["claimed"].state == "claimed" and rows["claimed"].owner == live.owner
            assert rows["created"].state == "created" and rows["created"].owner == live.owner
            assert rows["on-wire"].task_id == "t-on-wire"
            assert rows["on-wire"].owner == cut_off.owner
            with pytest.raises(JournalTakenOverError):  # and the live run lets it go
                await live.record("on-wire", "done", url="https://x/y.png")
        finally:
            await cut_off.aclose()
            await live.aclose()


@pytest.mark.anyio
async def test_a_batch_cut_off_while_another_run_takes_it_over_sends_each_request_once(
    pg_dsn: str, pg_schema: str
) -> None:
    """Run A is cut off mid-batch; run B starts meanwhile and does A's work (A looks dead);
    A comes back: it sends nothing B took, drops B's tasks quietly, and each request is
    created exactly once between them."""
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 24
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(40.0, 60.0)}))
    results: dict[str, list[int]] = {"a": [], "b": []}
    async with relayed(pg_dsn) as (relay, via_relay), serve(emu) as server:
        a = PostgresJournal(via_relay, "outage-4", schema=pg_schema, outage_timeout=60)
        b = PostgresJournal(pg_dsn, "outage-4", schema=pg_schema)
        await a.acquire()
        try:
            async with (
                _client(server.url) as client_a,
                _client(server.url) as client_b,
                generate_many(
                    client_a, _requests(n), PollerOptions(max_concurrency=3), journal=a
                ) as run_a,
                anyio.create_task_group() as tg,
            ):

                async def run_b() -> None:
                    await _until(lambda: run_a.progress.created >= 4)
                    relay.drop_all()  # A is cut off; its lock lapses
                    await b.acquire()
                    async with generate_many(
                        client_b, _requests(n), PollerOptions(max_concurrency=4), journal=b
                    ) as run:
                        async for r in run:
                            # (a create A had on the wire is unknown here: A reports it)
                            assert r.ok or isinstance(r.error, CreateOutcomeUnknownError), r.error
                            results["b"].append(r.index)  # type: ignore[arg-type]
                            if len(results["b"]) == 3:
                                relay.cut = False  # A is back while B works
                    assert run.progress.taken_over + run.progress.created > 0

                tg.start_soon(run_b)
                async for r in run_a:
                    assert r.ok, r.error
                    results["a"].append(r.index)  # type: ignore[arg-type]
                assert a.outages >= 1
        finally:
            await a.aclose()
            await b.aclose()
    creates = emu.counters.creates_by_prompt
    assert set(creates.values()) == {1} and len(creates) == n  # each created exactly once
    assert set(results["a"]) | set(results["b"]) == set(range(n))  # and each reported
    assert len(results["b"]) == len(set(results["b"]))


def test_the_command_waits_for_its_journal_then_stops_with_one_line(
    tmp_path: Path, pg_server: str, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gptunnel batch --journal postgresql://... --journal-outage-timeout 1.5``: the journal
    lost for longer ends the run with one line and exit code 1 (before: at once, at the first
    journal call after the loss)."""
    import threading

    from click.testing import CliRunner, Result

    from gptunnel_async.cli._app import cli
    from gptunnel_async.testing import run_in_thread

    for name in ("GPTUNNEL_API_KEY", "GPTUNNEL_BASE_URL", "GPTUNNEL_LIMITS"):
        monkeypatch.delenv(name, raising=False)
    key = "test-secret-key-0123456789"
    source = tmp_path / "p.txt"
    source.write_text("".join(f"prompt {i}\n" for i in range(12)), encoding="utf-8")
    emu = Emulator(
        EmulatorConfig(
            api_keys={key}, time_scale=SCALE, durations={MODEL: DurationDist(40.0, 60.0)}
        )
    )
    results: list[Result] = []
    with run_in_thread(emu) as url:
        args = [
            "--api-key", key, "--base-url", url, "--clock-scale", str(SCALE),
            "batch", str(source), "-o", str(tmp_path / "out"), "--no-progress",
            "--model", MODEL, "--concurrency", "2", "--journal", pg_dsn,
            "--journal-outage-timeout", "1.5",
        ]  # fmt: skip
        command = threading.Thread(
            target=lambda: results.append(CliRunner().invoke(cli, args, catch_exceptions=False))
        )
        command.start()
        try:
            deadline = time.monotonic() + 30
            while emu.counters.creates_total < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert emu.counters.creates_total >= 2
            with _cut_off_now(pg_server, pg_dsn):
                creates = emu.counters.creates_total
                command.join(30)
        finally:
            command.join(30)
    assert results, "the command did not end"
    result = results[0]
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "not back within 1.5 s" in errors[0], result.stderr
    assert "Traceback" not in result.output and "Group" not in result.output
    assert emu.counters.creates_total <= creates + 2  # at most those on the wire at the cut


@pytest.mark.anyio
async def test_a_socket_closed_before_the_connection_is_marked_broken_is_a_loss() -> None:
    """psycopg can raise ``OperationalError("connection socket closed")`` on a terminated
    session before it marks the connection broken: that is the database away (the create is
    not sent, and waits for it), not a journal error that ends the batch (CI saw this)."""
    import psycopg

    from gptunnel_async.stores.postgres import PostgresJournal

    class ClosedUnderfoot:
        broken = closed = False

        def execute(self, *args: Any) -> Any:
            raise psycopg.OperationalError("connection socket closed")

    journal = PostgresJournal("postgresql://nobody@127.0.0.1:1/none", "underfoot")
    journal._conn = ClosedUnderfoot()
    with pytest.raises(JournalAwayError):
        await journal.mark_on_wire("k#0")
    journal._conn = None  # nothing to close
