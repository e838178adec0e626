"""The journal: a batch that is cut off resumes without re-creating, re-downloading or losing."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gptunnel_async import (
    AdaptivePolicy,
    AsyncGPTunnel,
    CreateOutcomeUnknownError,
    GPTunnelError,
    NotFoundError,
    PollerOptions,
    RetryPolicy,
    TaskFailedError,
    generate_many,
)
from gptunnel_async._errors import JournalError, JournalInUseError
from gptunnel_async.poller.results import BatchResult
from gptunnel_async.stores import SQLiteJournal, State, body_digest
from gptunnel_async.testing import (
    DurationDist,
    Emulator,
    EmulatorConfig,
    EmulatorTransport,
    offline_client,
    serve,
)

pytestmark = pytest.mark.anyio
SCALE = 200.0
MODEL = "google-imagen-3"


@asynccontextmanager
async def emulator() -> AsyncIterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=4))
    async with serve(emu) as server:
        yield emu, server.url


def client_for(url: str) -> AsyncGPTunnel:
    return AsyncGPTunnel("journal-key", base_url=url, poll_policy=AdaptivePolicy(clock_scale=SCALE))


def prompts(n: int) -> list[dict[str, Any]]:
    return [{"model": MODEL, "prompt": f"journal prompt {i}"} for i in range(n)]


async def run_batch(
    url: str, reqs: list[dict[str, Any]], tmp: Path, options: PollerOptions | None = None
) -> list[BatchResult]:
    async with (
        client_for(url) as client,
        generate_many(
            client, reqs, options, journal=tmp / "journal.sqlite", download_to=tmp / "out"
        ) as run,
    ):
        return [r async for r in run]


def files(tmp: Path) -> list[Path]:
    out = tmp / "out"
    return sorted(out.iterdir()) if out.exists() else []


async def test_sqlite_journal_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = SQLiteJournal(path)
    assert (await journal.claim("k#0", 0, {"model": "m", "prompt": "p"})).won
    await journal.mark_on_wire("k#0")
    await journal.record("k#0", "created", task_id="a" * 24, kind="media")
    assert (await journal.claim("k#1", 1, {"model": "m", "prompt": "q"})).won
    await journal.aclose()
    reopened = SQLiteJournal(path)
    record = await reopened.get("k#0")
    assert record is not None and (record.state, record.task_id) == ("created", "a" * 24)
    assert [r.state for r in await reopened.records()] == ["created", "claimed"]
    assert await reopened.get("missing") is None
    with pytest.raises(ValueError, match="unknown journal fields"):
        await reopened.record("k#0", "done", colour="red")
    with pytest.raises(ValueError, match="writes outcomes"):
        await reopened.record("k#0", "sending")
    await reopened.aclose()


def test_identical_bodies_share_a_digest_but_not_a_key() -> None:
    a = body_digest({"model": "m", "prompt": "p", "ar": "1:1"})
    assert a == body_digest({"ar": "1:1", "prompt": "p", "model": "m"})
    assert a != body_digest({"model": "m", "prompt": "p", "ar": "16:9"})


async def test_a_batch_with_journal_and_downloads_saves_every_file(tmp_path: Path) -> None:
    async with emulator() as (emu, url):
        results = await run_batch(url, prompts(12), tmp_path)
    assert len(results) == 12 and all(r.ok for r in results)
    assert all(r.path is not None and r.path.is_file() for r in results)
    assert len(files(tmp_path)) == 12
    assert not [p for p in files(tmp_path) if p.suffix == ".part"]
    journal = SQLiteJournal(tmp_path / "journal.sqlite")
    states = Counter(r.state for r in await journal.records())
    await journal.aclose()
    assert states == Counter({"saved": 12})
    assert sum(emu.counters.creates_by_prompt.values()) == 12


async def test_a_create_is_marked_on_the_wire_just_before_it_is_sent(tmp_path: Path) -> None:
    seen_on_wire: list[int] = []

    class Spy(SQLiteJournal):
        async def mark_on_wire(self, key: str) -> None:
            seen_on_wire.append(sum(emu.counters.creates_by_prompt.values()))
            await super().mark_on_wire(key)

    async with emulator() as (emu, url), client_for(url) as client:
        journal = Spy(tmp_path / "j.sqlite")
        async with generate_many(
            client, prompts(5), PollerOptions(max_concurrency=1), journal=journal
        ) as run:
            assert len([r async for r in run]) == 5
        await journal.aclose()
    assert seen_on_wire == [0, 1, 2, 3, 4]  # each one before its own create, after the last


async def test_a_cut_off_batch_resumes_without_creating_or_fetching_twice(tmp_path: Path) -> None:
    reqs = prompts(30)
    async with emulator() as (emu, url):
        emu.config.durations[MODEL] = DurationDist.log_uniform(5, 60)
        async with (
            client_for(url) as client,
            generate_many(
                client, reqs, PollerOptions(max_concurrency=4),
                journal=tmp_path / "journal.sqlite", download_to=tmp_path / "out",
            ) as run,
        ):  # fmt: skip
            async for _ in run:
                if run.progress.saved >= 2:
                    break  # "the process dies" part-way through: the rest is cancelled
        created_first = sum(emu.counters.creates_by_prompt.values())
        saved_first = len(files(tmp_path))
        assert created_first > 0 and saved_first < 30
        file_requests_first = emu.counters.requests_by_route["GET /files"]

        results = await run_batch(url, reqs, tmp_path, PollerOptions(max_concurrency=4))
    assert len(results) == 30
    assert all(r.ok for r in results), [
        (r.id, r.from_journal, str(r.error)) for r in results if not r.ok
    ]
    assert emu.counters.creates_by_prompt == Counter({r["prompt"]: 1 for r in reqs})
    assert len(files(tmp_path)) == 30
    # every task the first run created comes back marked as resumed, re-polled or not
    assert sum(r.from_journal for r in results) == created_first
    # files saved by the first run were not fetched again
    assert emu.counters.requests_by_route["GET /files"] - file_requests_first == 30 - saved_first


async def test_a_create_with_unknown_outcome_is_reported_not_resent(tmp_path: Path) -> None:
    reqs = prompts(3)
    async with emulator() as (emu, url):
        emu.faults.script("POST /v1/media/create", ["drop_after"])
        first = await run_batch(url, reqs, tmp_path, PollerOptions(max_concurrency=1))
        lost = [r for r in first if not r.ok]
        assert len(lost) == 1 and lost[0].error is not None
        assert getattr(lost[0].error, "may_have_been_created", False)

        second = await run_batch(url, reqs, tmp_path, PollerOptions(max_concurrency=1))
    unknown = [r for r in second if not r.ok]
    assert len(unknown) == 1
    assert isinstance(unknown[0].error, CreateOutcomeUnknownError) and unknown[0].from_journal
    assert "not sent again" in str(unknown[0].error)
    assert emu.counters.creates_by_prompt == Counter({r["prompt"]: 1 for r in reqs})


async def test_a_refused_create_is_sent_again_on_resume(tmp_path: Path) -> None:
    reqs = prompts(2)
    async with emulator() as (emu, url):
        emu.org_balance = 0.0  # 402: nothing was created
        first = await run_batch(url, reqs, tmp_path)
        assert not any(r.ok for r in first)
        emu.org_balance = 1000.0
        second = await run_batch(url, reqs, tmp_path)
    assert all(r.ok for r in second)
    assert emu.counters.creates_by_prompt == Counter({r["prompt"]: 1 for r in reqs})


async def test_a_deleted_file_is_fetched_again_without_a_new_create(tmp_path: Path) -> None:
    reqs = prompts(2)
    async with emulator() as (emu, url):
        first = await run_batch(url, reqs, tmp_path)
        assert first[0].path is not None
        first[0].path.unlink()
        fetched = emu.counters.requests_by_route["GET /files"]
        second = await run_batch(url, reqs, tmp_path)
        assert emu.counters.requests_by_route["GET /files"] - fetched == 1
    assert all(r.ok for r in second) and len(files(tmp_path)) == 2
    assert all(r.from_journal for r in second)
    assert emu.counters.creates_by_prompt == Counter({r["prompt"]: 1 for r in reqs})


async def test_identical_prompts_stay_separate_tasks_across_resume(tmp_path: Path) -> None:
    reqs = [{"model": MODEL, "prompt": "same"}] * 3
    async with emulator() as (emu, url):
        await run_batch(url, reqs, tmp_path)
        again = await run_batch(url, reqs, tmp_path)
    assert emu.counters.creates_by_prompt["same"] == 3
    assert len({r.id for r in again}) == 3 and all(r.from_journal for r in again)


def test_state_names_are_the_documented_ones() -> None:
    assert set(State.__args__) == {  # type: ignore[attr-defined]
        "claimed", "sending", "created", "rejected", "unknown", "done", "failed", "saved",
    }  # fmt: skip


async def test_a_rerun_removes_temporaries_a_killed_run_left_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".0123456789abcdef01234567.x1y2.part").write_bytes(b"half a file")
    async with emulator() as (_, url):
        results = await run_batch(url, prompts(2), tmp_path)
    assert all(r.ok for r in results)
    assert not list(out.glob("*.part")) and len(files(tmp_path)) == 2


def journal_states_now(path: Path) -> Counter[str]:
    """The rows' states as another reader sees them (what a kill at this moment would leave)."""
    # closing(): a Connection's own ``with`` only commits (3.13 warns of one left open)
    with closing(sqlite3.connect(path)) as conn:
        return Counter(state for (state,) in conn.execute("SELECT state FROM requests"))


async def test_a_kill_during_a_429_pause_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path,
) -> None:
    """Requests waiting out a 429 are 'claimed', not 'sending': a kill leaves no unknowns."""
    reqs = prompts(8)
    journal = tmp_path / "journal.sqlite"
    async with emulator() as (emu, url):
        emu.faults.script("POST /v1/media/create", ["pass"] * 3 + [(429, {"Retry-After": "30"})])
        with anyio.fail_after(20):
            async with (
                client_for(url) as client,
                generate_many(
                    client,
                    reqs,
                    PollerOptions(max_concurrency=2),
                    journal=journal,
                    create_retries=5,
                ) as run,
            ):
                # wait until the 429 has come and every create is back to waiting
                while (  # noqa: ASYNC110 (two conditions, no event to wait on)
                    emu.counters.responses_by_status[429] < 1
                    or (journal_states_now(journal)["sending"])
                ):
                    await anyio.sleep(0.01)
                states = journal_states_now(journal)
                run.poller.close()  # "the process dies" (a cancellation leaves the same)
        assert states["sending"] == 0 and states["claimed"] >= 1, states
        assert 3 <= sum(emu.counters.creates_by_prompt.values()) < len(reqs)

        results = await run_batch(url, reqs, tmp_path)
    assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok]
    assert emu.counters.creates_by_prompt == Counter({r["prompt"]: 1 for r in reqs})


async def test_a_second_run_on_a_journal_in_use_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    first = SQLiteJournal(path)
    await first.acquire()
    try:
        async with emulator() as (emu, url), client_for(url) as client:
            batch = generate_many(client, prompts(2), journal=path)
            with pytest.raises(JournalInUseError, match=rf"pid {os.getpid()}\b"):
                await batch.__aenter__()
        assert emu.counters.creates_total == 0
    finally:
        await first.aclose()
    second = SQLiteJournal(path)  # given up: the next run may take it
    await second.acquire()
    await second.aclose()


def test_a_journal_whose_owner_was_killed_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_JOURNAL, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def try_acquire() -> None:
            journal = SQLiteJournal(path)
            try:
                await journal.acquire()
            finally:
                await journal.aclose()

        with pytest.raises(JournalInUseError, match=rf"in use by pid {holder.pid} "):
            anyio.run(try_acquire)
        holder.send_signal(signal.SIGKILL)  # our own child, by pid
        holder.wait(10)
        anyio.run(try_acquire)  # the kernel released the dead owner's lock
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


HOLD_JOURNAL = """
import sys, time, anyio
from gptunnel_async.stores import SQLiteJournal
async def main():
    journal = SQLiteJournal(sys.argv[1])
    await journal.acquire()
    print("held", flush=True)
    await anyio.sleep(60)
anyio.run(main)
"""


async def test_a_claim_is_won_by_one_handle_only_even_without_the_lock(tmp_path: Path) -> None:
    """The row-level compare-and-set holds by itself (a shared store relies on it)."""

    class Unlocked(SQLiteJournal):
        def _take_lock(self) -> None:
            pass

    path = tmp_path / "journal.sqlite"
    handles = [Unlocked(path) for _ in range(4)]
    wins: list[str] = []

    async def claim(handle: SQLiteJournal, key: str) -> None:
        if (await handle.claim(key, 0, {"prompt": key})).won:
            wins.append(key)

    try:
        for handle in handles:
            await handle.acquire()
        async with anyio.create_task_group() as tg:
            for key in ("a#0", "b#0", "c#0"):
                for handle in handles:
                    tg.start_soon(claim, handle, key)
    finally:
        for handle in handles:
            await handle.aclose()
    assert sorted(wins) == ["a#0", "b#0", "c#0"]


async def test_a_journal_location_that_is_a_url_is_refused_without_its_password(
    tmp_path: Path,
) -> None:
    async with emulator() as (emu, url), client_for(url) as client:
        with pytest.raises(JournalError, match="postgresql:// URL") as caught:
            async with generate_many(
                client, prompts(1), journal="postgresql://user:s3cret@127.0.0.1/db"
            ):
                pass
    assert "s3cret" not in str(caught.value)
    assert not await anyio.Path("postgresql:").exists()
    assert emu.counters.creates_total == 0


async def test_a_task_the_server_no_longer_knows_is_reported_once_not_polled_for_ever(
    tmp_path: Path,
) -> None:
    reqs = prompts(2)
    async with emulator() as (_, url):
        first = await run_batch(url, reqs, tmp_path / "a")
    assert all(r.ok for r in first)
    for path in (tmp_path / "a" / "out").iterdir():
        path.unlink()  # files gone: a rerun must poll the tasks again
    async with emulator() as (emu, url):  # another server: it never heard of those tasks
        second = await run_batch(url, reqs, tmp_path / "a")
        polls = emu.counters.requests_by_route["GET /v1/media/result"]
        third = await run_batch(url, reqs, tmp_path / "a")
        assert emu.counters.requests_by_route["GET /v1/media/result"] == polls
        assert emu.counters.creates_total == 0
    for result in second + third:
        assert not result.ok and result.from_journal
        assert isinstance(result.error, TaskFailedError)
        assert "does not know task" in str(result.error) and "\n" not in str(result.error)


async def test_a_full_disk_fails_its_requests_one_line_each_and_the_batch_goes_on(
    tmp_path: Path,
) -> None:
    reqs = prompts(6)
    async with emulator() as (emu, url), client_for(url) as client:
        real_download = client.download
        calls = 0

        async def download(task: Any, destination: Any, **kw: Any) -> Path:
            nonlocal calls
            calls += 1
            if calls % 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(destination))
            return await real_download(task, destination, **kw)

        client.download = download  # type: ignore[method-assign]
        async with generate_many(
            client, reqs, journal=tmp_path / "journal.sqlite", download_to=tmp_path / "out"
        ) as run:
            results = [r async for r in run]
        client.download = real_download  # type: ignore[method-assign]
        failed = [r for r in results if not r.ok]
        assert len(results) == 6 and len(failed) == 3
        for result in failed:
            assert isinstance(result.error, GPTunnelError) and result.id is not None
            assert "No space left on device" in str(result.error)
            assert "\n" not in str(result.error)
        async with generate_many(
            client, reqs, journal=tmp_path / "journal.sqlite", download_to=tmp_path / "out"
        ) as run:
            again = [r async for r in run]
    assert all(r.ok for r in again) and len(files(tmp_path)) == 6
    assert sum(emu.counters.creates_by_prompt.values()) == 6


async def test_an_offline_emulator_with_a_state_file_knows_an_earlier_process_tasks(
    tmp_path: Path,
) -> None:
    state = tmp_path / "emulator-tasks.jsonl"
    async with offline_client(time_scale=SCALE, state_file=state) as client:
        task = await client.media.create(model=MODEL, prompt="kept across processes")
    (tmp_path / "torn.jsonl").write_text(state.read_text() + '{"id": "cut sh')
    async with offline_client(time_scale=SCALE, state_file=state) as client:
        done = await client.media.wait(task.id, timeout=30)
        path = await client.download(done, tmp_path / "out/")
    assert done.status == "done" and path.stat().st_size > 0
    async with offline_client(time_scale=SCALE, state_file=tmp_path / "torn.jsonl") as client:
        assert (await client.media.result(task.id)).id == task.id  # a torn last line is skipped
    async with offline_client(time_scale=SCALE) as client:  # no state: a fresh emulator
        with pytest.raises(NotFoundError):
            await client.media.result(task.id)


async def test_a_create_whose_connection_is_refused_is_never_on_the_wire(tmp_path: Path) -> None:
    """Marked at the first byte (httpcore's trace), not before connecting: nothing to fear."""
    marks: list[str] = []

    class Spy(SQLiteJournal):
        async def mark_on_wire(self, key: str) -> None:
            marks.append(key)
            await super().mark_on_wire(key)

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    journal = Spy(tmp_path / "j.sqlite")
    async with client_for(url) as client:
        client.retry_policy = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.01)
        batch = generate_many(client, prompts(2), journal=journal, create_retries=1)
        async with batch as run:
            results = [r async for r in run]
    states = Counter(r.state for r in await journal.records())
    await journal.aclose()
    assert [type(r.error).__name__ for r in results] == ["APIConnectionError"] * 2
    assert marks == [] and states == Counter({"rejected": 2})


async def test_a_transport_that_may_not_report_sends_gets_the_create_after_the_journal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    seen: list[Counter[str]] = []

    class Watching(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/media/create":
                seen.append(journal_states_now(path))
            return await self.inner.handle_async_request(request)

    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=4))
    transport = Watching(EmulatorTransport(emu))
    async with AsyncGPTunnel("k", base_url="http://127.0.0.1:9", transport=transport) as client:
        batch = generate_many(client, prompts(3), PollerOptions(max_concurrency=1), journal=path)
        async with batch as run:
            assert all([r.ok async for r in run])
    assert [s["sending"] for s in seen] == [1, 1, 1]


@pytest.mark.parametrize("durable", [False, True])
async def test_the_sending_mark_leaves_nothing_between_its_commit_and_the_send(
    tmp_path: Path, durable: bool
) -> None:
    """``mark_on_wire`` returns to its caller (who sends the create's first byte next) without
    letting any other task run after its commit: it commits on the event loop's own thread.
    Other journal work queued meanwhile runs first. With ``durable=True`` (an fsync per
    commit) the mark stays in a worker thread, off the event loop."""
    import threading

    import anyio.lowlevel

    journal = SQLiteJournal(tmp_path / "j.sqlite", durable=durable)
    for i in range(4):
        assert (await journal.claim(f"k#{i}", i, {"model": "m", "prompt": str(i)})).won
    commits: list[tuple[int, int]] = []  # (thread, ticks of the other task) at its COMMIT
    ticks = 0
    marking: set[int] = set()  # threads inside the mark's transaction

    def on_sql(sql: str) -> None:
        if sql.startswith("UPDATE") and "'sending'" in sql:
            marking.add(threading.get_ident())
        elif sql == "COMMIT" and threading.get_ident() in marking:
            marking.discard(threading.get_ident())
            commits.append((threading.get_ident(), ticks))

    assert journal._conn is not None
    journal._conn.set_trace_callback(on_sql)
    stop = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        tg.start_soon(journal.record, "k#1", "rejected")  # queued journal work goes first
        await anyio.lowlevel.checkpoint()
        await journal.mark_on_wire("k#0")
        returned = ticks
        stop.set()
    [(thread, at_commit)] = commits
    assert (await journal.get("k#0")).state == "sending"  # type: ignore[union-attr]
    if durable:
        assert thread != threading.get_ident()
    else:
        assert thread == threading.get_ident()
        assert returned == at_commit  # no other task ran between the commit and the return
    await journal.aclose()
