"""The journal: a batch that is cut off resumes without re-creating, re-downloading or losing."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel, CreateOutcomeUnknownError
from gptunnel_async.journal import JournalRecord, SQLiteJournal, State, body_digest
from gptunnel_async.poller.results import PollResult
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

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


async def run_batch(url: str, reqs: list[dict[str, Any]], tmp: Path, **kw: Any) -> list[PollResult]:
    async with (
        client_for(url) as client,
        client.media.generate_many(
            reqs, journal=tmp / "journal.sqlite", download_to=tmp / "out", **kw
        ) as run,
    ):
        return [r async for r in run]


def files(tmp: Path) -> list[Path]:
    out = tmp / "out"
    return sorted(out.iterdir()) if out.exists() else []


async def test_sqlite_journal_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = SQLiteJournal(path)
    await journal.sending("k#0", 0, {"model": "m", "prompt": "p"})
    await journal.update("k#0", "created", task_id="a" * 24, kind="media")
    await journal.sending("k#1", 1, {"model": "m", "prompt": "q"})
    await journal.aclose()
    reopened = SQLiteJournal(path)
    assert await reopened.get("k#0") == JournalRecord("k#0", 0, "created", "a" * 24, "media")
    assert [r.state for r in await reopened.records()] == ["created", "sending"]
    assert await reopened.get("missing") is None
    with pytest.raises(ValueError, match="unknown journal fields"):
        await reopened.update("k#0", "done", colour="red")
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


async def test_the_request_is_journaled_before_its_create_is_sent(tmp_path: Path) -> None:
    seen_at_sending: list[int] = []

    class Spy(SQLiteJournal):
        async def sending(self, key: str, index: int, body: Mapping[str, Any]) -> None:
            seen_at_sending.append(emu.counters.creates_by_prompt[body["prompt"]])
            await super().sending(key, index, body)

    async with emulator() as (emu, url), client_for(url) as client:
        journal = Spy(tmp_path / "j.sqlite")
        async with client.media.generate_many(prompts(5), journal=journal) as run:
            assert len([r async for r in run]) == 5
        await journal.aclose()
    assert seen_at_sending == [0] * 5


async def test_a_cut_off_batch_resumes_without_creating_or_fetching_twice(tmp_path: Path) -> None:
    reqs = prompts(30)
    async with emulator() as (emu, url):
        emu.config.durations[MODEL] = DurationDist.log_uniform(5, 60)
        with anyio.move_on_after(0.25) as scope:  # "the process dies" part-way through
            await run_batch(url, reqs, tmp_path, max_concurrency=4)
        assert scope.cancelled_caught
        created_first = sum(emu.counters.creates_by_prompt.values())
        saved_first = len(files(tmp_path))
        assert created_first > 0 and saved_first < 30
        file_requests_first = emu.counters.requests_by_route["GET /files"]

        results = await run_batch(url, reqs, tmp_path, max_concurrency=4)
    assert len(results) == 30
    assert all(r.ok for r in results), [
        (r.id, r.from_journal, str(r.error)) for r in results if not r.ok
    ]
    assert emu.counters.creates_by_prompt == Counter({r["prompt"]: 1 for r in reqs})
    assert len(files(tmp_path)) == 30
    resumed_saved = [r for r in results if r.from_journal]
    assert len(resumed_saved) == saved_first
    # files saved by the first run were not fetched again
    assert emu.counters.requests_by_route["GET /files"] - file_requests_first == 30 - saved_first


async def test_a_create_with_unknown_outcome_is_reported_not_resent(tmp_path: Path) -> None:
    reqs = prompts(3)
    async with emulator() as (emu, url):
        emu.faults.script("POST /v1/media/create", ["drop_after"])
        first = await run_batch(url, reqs, tmp_path, max_concurrency=1)
        lost = [r for r in first if not r.ok]
        assert len(lost) == 1 and lost[0].error is not None
        assert getattr(lost[0].error, "may_have_been_created", False)

        second = await run_batch(url, reqs, tmp_path, max_concurrency=1)
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
        second = await run_batch(url, reqs, tmp_path)
    assert all(r.ok for r in second) and len(files(tmp_path)) == 2
    assert sum(1 for r in second if r.from_journal) == 1
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
        "sending", "created", "rejected", "unknown", "done", "failed", "saved",
    }  # fmt: skip


async def test_a_rerun_removes_temporaries_a_killed_run_left_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".0123456789abcdef01234567.x1y2.part").write_bytes(b"half a file")
    async with emulator() as (_, url):
        results = await run_batch(url, prompts(2), tmp_path)
    assert all(r.ok for r in results)
    assert not list(out.glob("*.part")) and len(files(tmp_path)) == 2
