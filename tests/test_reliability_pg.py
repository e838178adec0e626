"""Several runs on one PostgreSQL batch, killed: what ``reliability/pg_kill_campaign.py`` found.

- a run still reading its input takes over a dead run's tasks within a sweep interval, not
  once its own input is read (the takeover bound);
- a run that saves files takes over a dead run's ``done`` rows (a task finished, its file not
  saved) and saves them, in the folder the dead run began to save them in (once);
- a request this run's sweep took over is not handled a second time when the run's input
  reaches it;
- the sweep asks PostgreSQL whether a run is alive once per run, not once per row;
- the last run does not leave while a run that just died has work left;
- a database lost mid-run: no new creates until it is back, polls go on, the run goes on;
- the campaign itself, quick form (4 ``gptunnel batch`` processes, SIGKILLs, one outage).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel  # noqa: E402
from gptunnel_async.poller import PollerOptions, generate_many  # noqa: E402
from gptunnel_async.poller.batch import _SWEEP_INTERVAL  # noqa: E402
from gptunnel_async.stores import body_digest  # noqa: E402
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve  # noqa: E402

pytest_plugins = ["pg_support"]  # the pg_dsn and pg_schema fixtures

SCALE = 20.0
MODEL = "google-imagen-3"


def _client(url: str) -> AsyncGPTunnel:
    return AsyncGPTunnel("test-key", base_url=url, poll_policy=AdaptivePolicy(clock_scale=SCALE))


def _requests(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"model": MODEL, "prompt": f"prompt {i}", "tag": i} for i in range(start, start + n)]


async def _left_by_a_dead_run(
    url: str, dsn: str, schema: str, batch: str, n: int
) -> list[dict[str, Any]]:
    """A run creates ``n`` tasks (long ones) and dies with all of them in flight."""
    from gptunnel_async.stores.postgres import PostgresJournal

    journal = PostgresJournal(dsn, batch, schema=schema)
    await journal.acquire()
    requests = _requests(n)
    async with _client(url) as client:
        with anyio.CancelScope() as doom:
            async with generate_many(client, requests, journal=journal) as run:
                with anyio.fail_after(30):
                    while run.progress.created < n:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                doom.cancel()
    await journal.aclose()  # its session, with its lock, is gone: the run is dead
    return requests


@pytest.mark.anyio
async def test_a_run_still_reading_its_input_takes_over_a_dead_runs_tasks(
    pg_dsn: str, pg_schema: str
) -> None:
    """Before: the sweep ran only once the input was read, so a dead run's tasks waited for
    the end of every live run's input (the campaign's takeover p99 grew with the batch)."""
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 6
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(40.0, 60.0)}))
    async with serve(emu) as server:
        await _left_by_a_dead_run(server.url, pg_dsn, pg_schema, "sweep-1", n)
        more = anyio.Event()

        async def endless() -> AsyncIterator[dict[str, Any]]:  # input still being read
            await more.wait()
            for r in _requests(2, start=100):
                yield r

        journal = PostgresJournal(pg_dsn, "sweep-1", schema=pg_schema)
        await journal.acquire()
        results = []
        try:
            async with (
                _client(server.url) as client,
                generate_many(client, endless(), journal=journal) as run,
            ):
                # a generous bound: one sweep interval, plus a loaded machine
                with anyio.fail_after(_SWEEP_INTERVAL + 10):
                    while run.progress.taken_over < n:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                assert run.progress.read == 0  # not one line of its own input yet
                more.set()
                async for r in run:
                    assert r.ok, r.error
                    results.append(r.request["prompt"])
        finally:
            await journal.aclose()
    assert sorted(results) == sorted(r["prompt"] for r in [*_requests(n), *_requests(2, 100)])
    creates = dict(emu.counters.creates_by_prompt)
    assert len(creates) == n + 2 and set(creates.values()) == {1}  # polled, never re-created


async def _died_saving(
    client: AsyncGPTunnel, dsn: str, schema: str, batch: str, folder: Path | None
) -> tuple[str, str]:
    """A run polled a task to the end, recorded it ``done`` (beginning to save it in
    ``folder``, when given: the file is whole there, the journal not told yet) and died.
    Returns the row's key and the task id."""
    from gptunnel_async.stores.postgres import PostgresJournal

    dead = PostgresJournal(dsn, batch, schema=schema)
    await dead.acquire()
    body = {"model": MODEL, "prompt": "unsaved"}
    key = f"{body_digest(body)}#0"
    assert (await dead.claim(key, 0, body)).won
    await dead.mark_on_wire(key)
    task = await client.media.create_from_body(body)
    await dead.record(key, "created", task_id=task.id, kind=task.poll_kind)
    if folder is None:
        await dead.record(key, "done", url="https://example.invalid/file")
    else:
        await dead.record(key, "done", url="https://example.invalid/file", path=str(folder))
        await (await client.media.wait(task.id)).download(folder)  # renamed into place, then killed
    await dead.aclose()
    return key, task.id


async def _take_over_with_files(
    client: AsyncGPTunnel, dsn: str, schema: str, batch: str, key: str, out: Path
) -> tuple[list[Any], Any]:
    from gptunnel_async.stores.postgres import PostgresJournal

    journal = PostgresJournal(dsn, batch, schema=schema)
    await journal.acquire()
    try:
        async with generate_many(client, [], journal=journal, download_to=out) as run:
            results = [r async for r in run]
        return results, await journal.get(key)
    finally:
        await journal.aclose()


@pytest.mark.anyio
async def test_a_run_saving_files_takes_over_a_dead_runs_unsaved_files(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """Before: ``done`` rows (task finished, file not saved: the run died downloading) were
    never swept, so only a run that met the request in its own input saved the file."""
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(5.0, 6.0)}))
    async with serve(emu) as server, _client(server.url) as client:
        key, task_id = await _died_saving(client, pg_dsn, pg_schema, "done-1", None)
        out = tmp_path / "out"
        results, record = await _take_over_with_files(client, pg_dsn, pg_schema, "done-1", key, out)
    assert [(r.ok, r.id) for r in results] == [(True, task_id)]
    assert results[0].path is not None and results[0].path.parent == out
    assert record is not None and record.state == "saved"
    assert record.path == str(results[0].path)
    assert emu.counters.creates_total == 1


@pytest.mark.anyio
async def test_a_file_a_dead_run_began_to_save_is_saved_in_its_folder_once(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """The campaign saved a task twice: a worker renamed its file into place and was killed
    before it journaled it; the worker that took the row over saved it again in its own
    folder. The journal now has the folder with ``done``: the file is saved there again (the
    same name replaces it), once."""
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(5.0, 6.0)}))
    theirs, mine = tmp_path / "w1", tmp_path / "w2"
    theirs.mkdir()
    async with serve(emu) as server, _client(server.url) as client:
        key, task_id = await _died_saving(client, pg_dsn, pg_schema, "done-2", theirs)
        results, record = await _take_over_with_files(
            client, pg_dsn, pg_schema, "done-2", key, mine
        )
    assert [(r.ok, r.id) for r in results] == [(True, task_id)]
    files = [p for d in (theirs, mine) for p in d.iterdir() if not p.name.startswith(".")]
    files = [p for p in files if p.name != "manifest.jsonl"]
    assert [p.stem for p in files] == [task_id]  # one file, in the folder it began in
    assert files[0].parent == theirs and results[0].path == files[0]
    assert record is not None and record.state == "saved" and record.path == str(files[0])


@pytest.mark.anyio
async def test_a_request_the_sweep_took_is_not_handled_again_from_the_input(
    pg_dsn: str, pg_schema: str
) -> None:
    """With the sweep running beside the input, the input can reach a request the sweep took
    over (the dead run was ahead): its claim finds the row held by this run and skips it (it
    used to be polled a second time, or reported "being run" as a failure)."""
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 6
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(20.0, 30.0)}))
    async with serve(emu) as server:
        requests = await _left_by_a_dead_run(server.url, pg_dsn, pg_schema, "sweep-2", n)
        taken = anyio.Event()

        async def late() -> AsyncIterator[dict[str, Any]]:  # the same requests, after the sweep
            await taken.wait()
            for r in requests:
                yield r

        journal = PostgresJournal(pg_dsn, "sweep-2", schema=pg_schema)
        await journal.acquire()
        prompts = []
        try:
            async with (
                _client(server.url) as client,
                generate_many(
                    client, late(), PollerOptions(max_concurrency=4), journal=journal
                ) as run,
            ):
                with anyio.fail_after(_SWEEP_INTERVAL + 10):
                    while run.progress.taken_over < n:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                taken.set()
                async for r in run:
                    assert r.ok, r.error
                    prompts.append(r.request["prompt"])
                assert run.progress.read == n
        finally:
            await journal.aclose()
    assert sorted(prompts) == sorted(r["prompt"] for r in requests)  # each once
    assert set(emu.counters.creates_by_prompt.values()) == {1}


@pytest.mark.anyio
async def test_a_sweep_asks_whether_a_run_is_alive_once_per_run(
    pg_dsn: str, pg_schema: str
) -> None:
    """Before: ``journal_alive`` (a look at ``pg_locks``) ran once per row with work left, so a
    sweep of 20,000 rows took about 2 s of the server's time, every second, in every run."""
    import psycopg

    from gptunnel_async.stores.postgres import PostgresJournal

    runs = [PostgresJournal(pg_dsn, "cost-1", schema=pg_schema) for _ in range(2)]
    for run in runs:
        await run.acquire()
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {pg_schema}.journal (batch, key, idx, state, body, owner)"
                " SELECT 'cost-1', 'k' || g, g, 'created', '{}', %s FROM generate_series(1, 500) g",
                (runs[1].owner,),
            )
            # count the calls: a plpgsql wrapper around the check (SQL functions are inlined)
            conn.execute(
                f"ALTER FUNCTION {pg_schema}.journal_alive(text, text) RENAME TO journal_alive_sql;"
                f"CREATE TABLE {pg_schema}.alive_calls (n int);"
                f"CREATE FUNCTION {pg_schema}.journal_alive(p_batch text, p_owner text)"
                " RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN"
                f" INSERT INTO {pg_schema}.alive_calls VALUES (1);"
                f" RETURN {pg_schema}.journal_alive_sql(p_batch, p_owner); END $$"
            )
        assert await runs[0].take_over(limit=1000) == []  # the other run is alive
        assert await runs[0].others_working() == 500
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            calls = conn.execute(f"SELECT count(*) FROM {pg_schema}.alive_calls").fetchone()
        assert calls is not None and calls[0] == 1  # one run holds rows: one look
    finally:
        for run in runs:
            await run.aclose()


def _polls(emu: Emulator) -> int:
    return sum(n for route, n in emu.counters.requests_by_route.items() if "result" in route)


@pytest.mark.anyio
async def test_a_database_lost_mid_run_stops_creates_polls_go_on_and_the_run_goes_on(
    pg_server: str, pg_dsn: str, pg_schema: str
) -> None:
    """Before: the first journal call after the connection was lost raised ``JournalError``
    and the run ended (the campaign's workers all exited at its outage)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from gptunnel_async.stores.postgres import PostgresJournal

    n = 24
    db = conninfo_to_dict(pg_dsn)["dbname"]
    emu = Emulator(EmulatorConfig(time_scale=SCALE, durations={MODEL: DurationDist(20.0, 40.0)}))
    async with serve(emu) as server:
        journal = PostgresJournal(pg_dsn, "lost-1", schema=pg_schema)
        await journal.acquire()
        prompts = []
        try:
            async with (
                _client(server.url) as client,
                generate_many(
                    client, _requests(n), PollerOptions(max_concurrency=4), journal=journal
                ) as run,
                anyio.create_task_group() as tg,
            ):

                async def outage() -> None:
                    with anyio.fail_after(30):
                        while run.progress.created < 4:  # noqa: ASYNC110
                            await anyio.sleep(0.02)
                    with psycopg.connect(pg_server, autocommit=True) as admin:
                        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
                        try:
                            admin.execute(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE datname = %s AND application_name LIKE %s",
                                (db, "gptunnel-async journal%"),
                            )
                            await anyio.sleep(0.5)  # creates on the wire land
                            creates, polls = emu.counters.creates_total, _polls(emu)
                            await anyio.sleep(2.0)
                            assert emu.counters.creates_total == creates  # no new create
                            assert _polls(emu) > polls  # the tasks in flight are polled
                        finally:
                            admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')

                tg.start_soon(outage)
                async for r in run:
                    assert r.ok, r.error
                    prompts.append(r.request["prompt"])
        finally:
            await journal.aclose()
    assert sorted(prompts) == sorted(r["prompt"] for r in _requests(n))
    assert len(emu.counters.creates_by_prompt) == n
    assert set(emu.counters.creates_by_prompt.values()) == {1}


@pytest.mark.anyio
async def test_the_last_run_stays_for_a_run_that_dies_after_its_sweep(
    pg_dsn: str, pg_schema: str
) -> None:
    """Before: ``others_working`` counted live runs' rows only, so a run that died between
    the last run's ``take_over`` (it was alive: nothing taken) and that count made the count
    0: the last run left, and the dead run's work was left to nobody."""
    from gptunnel_async.stores.postgres import PostgresJournal

    dying = PostgresJournal(pg_dsn, "last-1", schema=pg_schema)
    last = PostgresJournal(pg_dsn, "last-1", schema=pg_schema)
    await dying.acquire()
    await last.acquire()
    try:
        assert (await dying.claim("k", 0, {"model": MODEL, "prompt": "p"})).won
        assert await last.take_over() == []  # alive: nothing to take
        await dying.aclose()  # ... and now it dies
        assert await last.others_working() == 1  # so the last run sweeps again
        assert [r.key for r, _ in await last.take_over()] == ["k"]
        assert await last.others_working() == 0
    finally:
        await last.aclose()


@pytest.mark.slow
def test_pg_kill_campaign_quick(tmp_path: Path, pg_server: str) -> None:
    """4 ``gptunnel batch`` workers on one batch, SIGKILLed and restarted, one database
    outage: see reliability/pg_kill_campaign.py."""
    from reliability import pg_kill_campaign

    s = pg_kill_campaign.quick_settings()
    s.dsn = pg_server
    report, ok, figures = pg_kill_campaign.campaign(s, tmp_path)
    failed = [name for name, passed in figures["checks"].items() if not passed]
    assert ok, f"failed checks: {failed}\n{report}"  # the names first: CI shows a part
    assert figures["kills"] >= 10
    assert figures["owner_latency"]  # kills did leave rows for others to take over
