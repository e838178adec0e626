"""``PostgresJournal``: one batch's rows shared by several runs, claimed atomically, and taken
over when the run that held them dies (its session, and so its lock, is gone)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from gptunnel_async._errors import CoordinatorUnavailableError, JournalError
from gptunnel_async.stores.postgres import PostgresJournal

pytestmark = pytest.mark.anyio
pytest_plugins = ["pg_support"]  # the pg_dsn and pg_schema fixtures

BODY = {"model": "flux-dev", "prompt": "a fox"}
ROOT = str(Path(__file__).resolve().parents[1])


def _journal(dsn: str, schema: str, batch: str = "b1") -> PostgresJournal:
    return PostgresJournal(dsn, batch, schema=schema)


async def test_one_claim_wins_among_runs_racing_for_it(pg_dsn: str, pg_schema: str) -> None:
    runs = [_journal(pg_dsn, pg_schema) for _ in range(4)]
    for run in runs:
        await run.acquire()
    try:
        for n in range(10):
            claims = []

            async def claim(run: PostgresJournal, key: str) -> None:
                claims.append(await run.claim(key, n, {**BODY, "n": n}))  # noqa: B023

            async with anyio.create_task_group() as tg:
                for run in runs:
                    tg.start_soon(claim, run, f"k{n}")
            assert sum(c.won for c in claims) == 1
            assert sum(c.elsewhere for c in claims) == 3  # the others: a live run holds it
    finally:
        for run in runs:
            await run.aclose()


async def test_a_dead_runs_rows_are_taken_over(pg_dsn: str, pg_schema: str) -> None:
    first, second = _journal(pg_dsn, pg_schema), _journal(pg_dsn, pg_schema)
    await first.acquire()
    await second.acquire()
    try:
        for i, key in enumerate(["claimed", "sending", "created", "saved"]):
            assert (await first.claim(key, i, {**BODY, "i": i})).won
        await first.mark_on_wire("sending")
        await first.mark_on_wire("created")
        await first.record("created", "created", task_id="t-created")
        await first.mark_on_wire("saved")
        await first.record("saved", "saved", task_id="t-saved", path="/x")
        assert (await second.claim("created", 2, BODY)).elsewhere  # alive: hands off
        await first.aclose()  # its session ends: as if killed

        claim = await second.claim("created", 2, BODY)
        assert not claim.won and not claim.elsewhere  # taken over: poll it, never re-create
        assert claim.record.task_id == "t-created" and claim.record.owner == second.owner
        taken = await second.take_over()
        assert {r.key: r.state for r, _ in taken} == {"claimed": "claimed", "sending": "sending"}
        assert [body["i"] for _, body in taken] == [0, 1]
        assert (await second.get("saved")) is not None
        with pytest.raises(JournalError):  # not this run's row: the owner check holds
            await second.record("saved", "failed", error="x")
    finally:
        await second.aclose()


async def test_two_sweepers_never_take_the_same_row(pg_dsn: str, pg_schema: str) -> None:
    dead = _journal(pg_dsn, pg_schema)
    await dead.acquire()
    for i in range(60):
        await dead.claim(f"k{i}", i, {**BODY, "i": i})
    await dead.aclose()
    a, b = _journal(pg_dsn, pg_schema), _journal(pg_dsn, pg_schema)
    await a.acquire()
    await b.acquire()
    try:
        got: dict[str, list[str]] = {"a": [], "b": []}

        async def sweep(name: str, run: PostgresJournal) -> None:
            while rows := await run.take_over(limit=7):
                got[name] += [r.key for r, _ in rows]

        async with anyio.create_task_group() as tg:
            tg.start_soon(sweep, "a", a)
            tg.start_soon(sweep, "b", b)
        assert sorted(got["a"] + got["b"]) == sorted(f"k{i}" for i in range(60))
        assert not set(got["a"]) & set(got["b"])
    finally:
        await a.aclose()
        await b.aclose()


async def test_batches_never_mix(pg_dsn: str, pg_schema: str) -> None:
    x, y = _journal(pg_dsn, pg_schema, "x"), _journal(pg_dsn, pg_schema, "y")
    await x.acquire()
    await y.acquire()
    try:
        assert (await x.claim("k", 0, BODY)).won
        assert (await y.claim("k", 0, BODY)).won
        assert [r.key for r in await x.records()] == ["k"]
        assert await y.others_working() == 0
    finally:
        await x.aclose()
        await y.aclose()


async def test_a_sigkilled_run_is_taken_over(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(
        "import sys, anyio\n"
        "from gptunnel_async.stores.postgres import PostgresJournal\n"
        "async def main():\n"
        "    j = PostgresJournal(sys.argv[1], 'b1', schema=sys.argv[2])\n"
        "    await j.acquire()\n"
        "    await j.claim('k', 0, {'model': 'flux-dev', 'prompt': 'x'})\n"
        "    await j.mark_on_wire('k')\n"
        "    await j.record('k', 'created', task_id='t1')\n"
        "    print('held', flush=True)\n"
        "    await anyio.sleep(60)\n"
        "anyio.run(main)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, str(script), pg_dsn, pg_schema]
    async with await anyio.open_process(cmd, env=env, stderr=None) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            assert (await proc.stdout.receive()).strip() == b"held"
        other = _journal(pg_dsn, pg_schema)
        await other.acquire()
        try:
            assert (await other.claim("k", 0, BODY)).elsewhere
            assert await other.others_working() == 1
            proc.kill()  # SIGKILL
            await proc.wait()
            with anyio.fail_after(10):  # the server notices the dead session at once
                while (await other.claim("k", 0, BODY)).elsewhere:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            record = await other.get("k")
            assert record is not None and record.task_id == "t1"
            assert record.owner == other.owner
        finally:
            await other.aclose()


async def test_unreachable_database_is_a_clear_error(pg_schema: str) -> None:
    journal = PostgresJournal("postgresql://u:pw-hidden@127.0.0.1:1/db", "b", schema=pg_schema)
    with pytest.raises(CoordinatorUnavailableError) as info:
        await journal.acquire()
    assert "pw-hidden" not in str(info.value) and "127.0.0.1:1/db" in str(info.value)


def test_a_bad_batch_name_is_refused() -> None:
    with pytest.raises(JournalError):
        PostgresJournal("postgresql://localhost/x", "")
    with pytest.raises(JournalError):
        PostgresJournal("postgresql://localhost/x", "a;b c")
