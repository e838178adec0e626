"""Several ``generate_many`` runs on one PostgreSQL journal work one batch together: every
request is created once, comes out of one run, and a run that dies leaves its work to the
others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel
from gptunnel_async._errors import JournalError
from gptunnel_async.poller import BatchRun, PollerOptions, generate_many
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

pytestmark = pytest.mark.anyio
pytest_plugins = ["pg_support"]  # the pg_dsn fixture

SCALE = 20.0
MODEL = "google-imagen-3"


@asynccontextmanager
async def running(**config: Any) -> AsyncIterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(time_scale=SCALE, **config))
    async with serve(emu) as server:
        yield emu, server.url


def _client(url: str) -> AsyncGPTunnel:
    return AsyncGPTunnel("test-key", base_url=url, poll_policy=AdaptivePolicy(clock_scale=SCALE))


def _requests(n: int) -> list[dict[str, Any]]:
    return [{"model": MODEL, "prompt": f"prompt {i}", "tag": i} for i in range(n)]


async def test_two_runs_share_one_batch_and_create_each_request_once(
    pg_dsn: str, pg_schema: str
) -> None:
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 30
    results: dict[str, list[int]] = {"a": [], "b": []}
    async with running() as (emu, url):

        async def run_with(name: str) -> None:
            journal = PostgresJournal(pg_dsn, "shared-1", schema=pg_schema)
            await journal.acquire()
            try:
                async with (
                    _client(url) as client,
                    generate_many(
                        client, _requests(n), PollerOptions(max_concurrency=4), journal=journal
                    ) as batch,
                ):
                    async for r in batch:
                        assert r.ok, r.error
                        results[name].append(r.index)  # type: ignore[arg-type]
            finally:
                await journal.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_with, "a")
            tg.start_soon(run_with, "b")
        creates = dict(emu.counters.creates_by_prompt)
    assert sorted(results["a"] + results["b"]) == list(range(n))  # each once, from one run
    assert len(creates) == n and set(creates.values()) == {1}  # each created exactly once


async def test_a_run_that_dies_leaves_its_work_to_the_others(pg_dsn: str, pg_schema: str) -> None:
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 12
    # tasks long enough (in emulator seconds) to be in flight when the first run dies
    durations = {MODEL: DurationDist(40.0, 60.0)}
    async with running(durations=durations) as (emu, url):
        first = PostgresJournal(pg_dsn, "shared-2", schema=pg_schema)
        second = PostgresJournal(pg_dsn, "shared-2", schema=pg_schema)
        await first.acquire()
        await second.acquire()
        survived: list[int] = []
        survivors: list[BatchRun] = []
        try:
            async with (
                _client(url) as client_a,
                _client(url) as client_b,
                anyio.create_task_group() as tg,
            ):
                first_in = anyio.Event()
                doom = anyio.CancelScope()

                async def doomed() -> None:
                    with doom:
                        async with generate_many(client_a, _requests(n), journal=first) as run:
                            while run.progress.created < n:  # noqa: ASYNC110
                                await anyio.sleep(0.02)
                            first_in.set()
                            await anyio.sleep_forever()

                async def survivor() -> None:
                    await first_in.wait()
                    async with generate_many(client_b, _requests(n), journal=second) as run:
                        survivors.append(run)
                        async for r in run:
                            assert r.ok, r.error
                            survived.append(r.index)  # type: ignore[arg-type]
                        assert run.progress.elsewhere == n
                        assert run.progress.taken_over == n

                tg.start_soon(doomed)
                tg.start_soon(survivor)
                await first_in.wait()
                with anyio.fail_after(30):  # the survivor has read its input: all elsewhere
                    while not survivors or survivors[0].progress.elsewhere < n:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                doom.cancel()  # the first run dies with every task in flight ...
                await first.aclose()  # ... and its session (with its lock) ends
                with anyio.fail_after(30):
                    while len(survived) < n:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
        finally:
            await second.aclose()
        creates = dict(emu.counters.creates_by_prompt)
    assert sorted(survived) == list(range(n))
    assert len(creates) == n and set(creates.values()) == {1}  # polled again, never re-created


async def test_a_postgresql_journal_needs_a_batch_name(pg_dsn: str) -> None:
    async with running() as (_, url), _client(url) as client:
        with pytest.raises(JournalError, match="batch"):
            async with generate_many(client, _requests(1), journal=pg_dsn):
                pass


async def test_rows_of_another_input_taken_over_keep_their_own_outcomes(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """One batch name, two inputs: a run saving files takes over the done rows another
    input's run left (its indexes 0..n-1, as this run's own). Each outcome is written to the
    row of the task it came from (it once went by index: a taken-over task's outcome landed on
    this run's own row, which then refused its create and ended the run)."""
    from gptunnel_async.stores.postgres import PostgresJournal

    n = 16
    first = [{"model": MODEL, "prompt": f"first input {i}"} for i in range(n)]
    second = [{"model": MODEL, "prompt": f"second input {i}"} for i in range(n)]
    async with running() as (emu, url), _client(url) as client:
        journal = PostgresJournal(pg_dsn, "two-inputs", schema=pg_schema)
        await journal.acquire()
        try:  # no folder: its rows stay "done", work left for a run that saves files
            async with generate_many(client, first, journal=journal) as batch:
                assert all([r.ok async for r in batch])
        finally:
            await journal.aclose()
        journal = PostgresJournal(pg_dsn, "two-inputs", schema=pg_schema)
        await journal.acquire()
        try:
            async with generate_many(
                client, second, PollerOptions(max_concurrency=4), journal=journal,
                download_to=tmp_path,
            ) as batch:  # fmt: skip
                results = [r async for r in batch]
            rows = await journal.records()
        finally:
            await journal.aclose()
        prompt_of = {
            r.task_id: emu.task(r.task_id).prompt  # type: ignore[union-attr]
            for r in rows
            if r.task_id is not None
        }
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len(emu.counters.creates_by_prompt) == 2 * n
    assert set(emu.counters.creates_by_prompt.values()) == {1}
    assert sorted(r.state for r in rows) == ["saved"] * (2 * n)
    for result in results:  # each result is its own request's task, saved under its own id
        assert result.request is not None and result.path is not None
        assert prompt_of[result.id] == result.request["prompt"]
        assert result.id in result.path.name
    for row in rows:  # and each row holds its own task's file
        assert row.path is not None and row.task_id in row.path
