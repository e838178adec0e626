"""The poller's contract, against the emulator over a real loopback socket.

Every task added is yielded exactly once whatever happens to it; limits are never exceeded
(the emulator's own counters are the judge); leaving or cancelling ends everything cleanly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from gptunnel_async import (
    AdaptivePolicy,
    AsyncGPTunnel,
    InvalidInputError,
    MediaRequest,
    Poller,
    PollerClosedError,
    PollerOptions,
    TaskFailedError,
    TaskTimeoutError,
    generate_many,
)
from gptunnel_async._errors import APIConnectionError, InternalServerError
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

pytestmark = pytest.mark.anyio

SCALE = 200.0  # emulator and policy both run 200× faster than real time
IMAGE = "google-imagen-3"


@asynccontextmanager
async def running(seed: int = 1, **config: object) -> AsyncIterator[tuple[Emulator, AsyncGPTunnel]]:
    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=seed, **config))  # type: ignore[arg-type]
    async with serve(emu) as server:
        client = AsyncGPTunnel(
            "test-key", base_url=server.url, poll_policy=AdaptivePolicy(clock_scale=SCALE)
        )
        async with client:
            yield emu, client


async def create_many(client: AsyncGPTunnel, n: int, model: str = IMAGE) -> list[str]:
    ids = []
    for i in range(n):
        task = await client.media.create(model=model, prompt=f"prompt {i}")
        ids.append(task.id)
    return ids


async def test_every_task_yielded_exactly_once_with_mixed_fates() -> None:
    async with running(seed=7) as (emu, client):
        emu.faults.task_failure_rate = 0.2
        emu.faults.never_finish_rate = 0.1
        async with Poller(
            client, PollerOptions(max_concurrency=8, task_timeout=120 / SCALE)
        ) as poller:
            added = []
            for i in range(60):
                task = await client.media.create(model=IMAGE, prompt=f"p{i}")
                added.append(poller.add(task, tag=i))
            results = [r async for r in poller]
    ids = Counter(r.id for r in results)
    assert sorted(ids) == sorted(added)
    assert set(ids.values()) == {1}
    by_fate = Counter(type(r.error).__name__ if r.error else "ok" for r in results)
    assert by_fate["ok"] and by_fate["TaskFailedError"] and by_fate["TaskTimeoutError"]
    assert sum(by_fate.values()) == 60
    for r in results:
        assert r.ok == (r.error is None)
        assert r.tag is not None
        if r.ok:
            assert r.task.is_done and r.url and r.unwrap() is r.task
        else:
            with pytest.raises((TaskFailedError, TaskTimeoutError)):
                r.unwrap()


async def test_completion_order_and_tasks_added_while_iterating() -> None:
    async with running() as (emu, client):
        emu.config.durations[IMAGE] = DurationDist.fixed(10.0)
        emu.config.durations["yandex-art"] = DurationDist.fixed(40.0)
        async with Poller(client) as poller:
            slow = poller.add(await client.media.create(model="yandex-art", prompt="slow"))
            fast = poller.add(await client.media.create(model=IMAGE, prompt="fast"))
            order = []
            async for result in poller:
                order.append(result.id)
                if result.id == fast:  # a follow-up task added from inside the loop
                    poller.add(await client.media.create(model=IMAGE, prompt="follow-up"))
    assert order[0] == fast
    assert slow in order and len(order) == 3


async def test_keep_open_waits_for_close_from_a_concurrent_producer() -> None:
    async with running() as (_, client):
        seen = []
        async with Poller(client, PollerOptions(keep_open=True)) as poller:

            async def produce() -> None:
                for i in range(5):
                    poller.add(await client.media.create(model=IMAGE, prompt=f"x{i}"))
                    await anyio.sleep(0.02)
                poller.close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                async for result in poller:
                    seen.append(result.id)
            with pytest.raises(PollerClosedError):
                poller.add("0123456789abcdef01234567")
    assert len(seen) == len(set(seen)) == 5


async def test_polls_that_keep_failing_yield_the_error() -> None:
    async with running() as (emu, client):
        ids = await create_many(client, 3)
        emu.faults.error_rate = 1.0
        emu.faults.error_statuses = (503,)
        async with Poller(client, PollerOptions(max_poll_failures=3)) as poller:
            for task_id in ids:
                poller.add(task_id)
            results = [r async for r in poller]
    assert sorted(r.id for r in results) == sorted(ids)
    assert all(isinstance(r.error, InternalServerError) and not r.ok for r in results)
    assert emu.counters.responses_by_status[503] == 9  # 3 polls each, then given up
    assert all(emu.counters.requests_by_task[i] == 3 for i in ids)
    assert poller.stats.failed_polls == 9


async def test_unknown_task_id_is_yielded_as_failure_not_raised() -> None:
    async with running() as (_, client), Poller(client) as poller:
        poller.add("ffffffffffffffffffffffff")
        (result,) = [r async for r in poller]
    assert not result.ok and result.error is not None and result.error.status_code == 404


async def test_transient_errors_are_retried_per_task_without_losing_any() -> None:
    async with running(seed=3) as (emu, client):
        ids = await create_many(client, 20)
        emu.faults.error_rate = 0.3
        emu.faults.drop_rate = 0.05
        async with Poller(client, PollerOptions(max_concurrency=4)) as poller:
            for task_id in ids:
                poller.add(task_id)
            results = [r async for r in poller]
    assert sorted(r.id for r in results) == sorted(ids)
    assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok]
    assert poller.stats.failed_polls > 0


async def test_429_pauses_all_polling_for_its_retry_after() -> None:
    async with running() as (emu, client):
        ids = await create_many(client, 12)
        emu.faults.retry_after_format = "seconds"
        async with Poller(client, PollerOptions(max_concurrency=6)) as poller:
            for task_id in ids:
                poller.add(task_id)
            emu.faults.burst_429(0.3, retry_after=0.5)
            results = [r async for r in poller]
    assert all(r.ok for r in results)
    assert poller.stats.rate_limited >= 1
    assert emu.counters.retry_after_violations == 0
    assert emu.counters.responses_by_status[429] >= 1


async def test_max_concurrency_and_rate_budget_are_never_exceeded() -> None:
    async with running() as (emu, client):
        emu.faults.latency = 0.01
        ids = await create_many(client, 40)
        emu.counters.reset()
        async with Poller(
            client, PollerOptions(max_concurrency=3, requests_per_second=40)
        ) as poller:
            for task_id in ids:
                poller.add(task_id)
            results = [r async for r in poller]
    assert len(results) == 40
    assert 1 <= emu.counters.max_in_flight <= 3
    assert emu.counters.max_requests_in_window(1.0) <= 40
    assert poller.gate is not None and poller.gate.stats.max_in_flight <= 3


async def test_run_deadline_yields_every_unfinished_task_as_timed_out() -> None:
    async with running() as (emu, client):
        emu.faults.never_finish_rate = 1.0
        ids = await create_many(client, 5)
        with anyio.fail_after(5):
            async with Poller(client, PollerOptions(deadline=0.3)) as poller:
                for task_id in ids:
                    poller.add(task_id)
                results = [r async for r in poller]
    assert sorted(r.id for r in results) == sorted(ids)
    assert all(isinstance(r.error, TaskTimeoutError) for r in results)
    assert poller.closed


async def test_cancelling_the_consumer_stops_everything_cleanly() -> None:
    async with running() as (emu, client):
        emu.faults.never_finish_rate = 1.0
        ids = await create_many(client, 10)
        with anyio.move_on_after(0.3) as scope:
            async with Poller(client) as poller:
                for task_id in ids:
                    poller.add(task_id)
                async for _ in poller:
                    pass
        assert scope.cancelled_caught
        polls_after_exit = emu.counters.api_requests_total
        await anyio.sleep(0.2)
        assert emu.counters.api_requests_total == polls_after_exit  # nothing left running


async def test_leaving_the_block_early_cancels_polling() -> None:
    async with running() as (emu, client):
        emu.faults.never_finish_rate = 1.0
        ids = await create_many(client, 4)
        async with Poller(client) as poller:
            for task_id in ids:
                poller.add(task_id)
            await anyio.sleep(0.05)
        before = emu.counters.api_requests_total
        await anyio.sleep(0.2)
        assert emu.counters.api_requests_total == before
        with pytest.raises(PollerClosedError):
            poller.add(ids[0])


async def test_bare_ids_resume_after_a_restart() -> None:
    async with running() as (emu, client):
        ids = await create_many(client, 6)
        # a "new process": a fresh client that knows only the ids
        async with (
            AsyncGPTunnel(
                "test-key",
                base_url=client.base_url,
                poll_policy=AdaptivePolicy(clock_scale=SCALE),
            ) as fresh,
            Poller(fresh) as poller,
        ):
            for task_id in ids:
                poller.add(task_id)
            results = [r async for r in poller]
    assert sorted(r.id for r in results) == sorted(ids)
    assert all(r.ok for r in results)
    assert sum(emu.counters.creates_by_prompt.values()) == 6


async def test_add_rejects_bad_input_with_typed_errors() -> None:
    async with running() as (_, client):
        async with Poller(client) as poller:
            with pytest.raises(InvalidInputError):
                poller.add("../../etc/passwd")
            with pytest.raises(InvalidInputError):
                poller.add("abc", kind="nope")
            poller.add("0123456789abcdef01234567")
            with pytest.raises(InvalidInputError):
                poller.add("0123456789abcdef01234567")  # already being polled
        with pytest.raises(InvalidInputError):
            Poller(client, PollerOptions(max_concurrency=0))
        with pytest.raises(InvalidInputError):
            Poller(client, PollerOptions(requests_per_second=0))


async def test_generate_many_streams_requests_and_yields_each_exactly_once() -> None:
    async def requests() -> AsyncIterator[object]:
        for i in range(30):
            yield {"model": IMAGE, "prompt": f"gen {i}", "tag": i}
        yield {"model": IMAGE, "prompt": "bad ar", "ar": "5:7"}  # refused locally
        yield MediaRequest(model="yandex-art", prompt="typed request")
        yield 42  # not a request at all

    async with (
        running() as (emu, client),
        generate_many(
            client, requests(), PollerOptions(max_concurrency=6), max_pending=8
        ) as results,
    ):
        out = [r async for r in results]
    assert len(out) == 33
    assert sorted(r.index for r in out if r.index is not None) == list(range(33))
    failures = [r for r in out if not r.ok]
    assert len(failures) == 2 and all(isinstance(r.error, InvalidInputError) for r in failures)
    assert all(r.id is None for r in failures)
    assert emu.counters.creates_total == 31
    assert set(emu.counters.creates_by_prompt.values()) == {1}


@pytest.mark.parametrize("slow", ["release", "mark_on_wire"])
async def test_a_429_pauses_journaled_creates_however_long_their_journal_writes_take(
    tmp_path: Path, slow: str
) -> None:
    """A journal write (a thread hop, a database round trip, a queue behind other writes) may
    take long, and a 429 may come meanwhile. The pause begins the moment a 429 is read, not
    after its create's row is given back (``release``); and the gate's last look for a pause
    comes after a create's ``sending`` write (``mark_on_wire``), right before its first byte.
    In either order the other way round, creates were sent inside the Retry-After window."""
    from gptunnel_async.stores import SQLiteJournal

    marked: list[str] = []

    class SlowJournal(SQLiteJournal):
        async def release(self, key: str) -> None:
            if slow == "release":
                await anyio.sleep(0.3)
            await super().release(key)

        async def mark_on_wire(self, key: str) -> None:
            marked.append(key)
            if slow == "mark_on_wire" and len(marked) > 1:  # the first one (the 429) goes at once
                await anyio.sleep(0.2)
            await super().mark_on_wire(key)

    n = 24
    async with running() as (emu, client):
        emu.faults.script("POST /v1/media/create", [(429, {"Retry-After": "1"})])
        reqs = [{"model": IMAGE, "prompt": f"paced {i}"} for i in range(n)]
        journal = SlowJournal(tmp_path / "journal.sqlite")
        try:
            async with generate_many(
                client, reqs, PollerOptions(max_concurrency=4), journal=journal
            ) as results:
                out = [r async for r in results]
        finally:
            await journal.aclose()
    assert all(r.ok for r in out)
    assert emu.counters.responses_by_status[429] == 1
    assert emu.counters.retry_after_violations == 0
    assert emu.counters.creates_by_prompt == Counter({f"paced {i}": 1 for i in range(n)})


async def test_generate_many_never_resends_a_create_whose_answer_was_lost() -> None:
    async with running() as (emu, client):
        emu.faults.script(
            "POST /v1/media/create", ["drop_after", "pass", (429, {"Retry-After": "0.1"})]
        )
        reqs = [{"model": IMAGE, "prompt": f"once {i}"} for i in range(5)]
        async with generate_many(client, reqs, PollerOptions(max_concurrency=1)) as results:
            out = [r async for r in results]
    assert len(out) == 5
    lost = [r for r in out if not r.ok]
    assert len(lost) == 1
    assert isinstance(lost[0].error, APIConnectionError) and lost[0].error.may_have_been_created
    assert "not re-sent" in str(lost[0].error).lower()
    # every prompt reached the server exactly once, the lost one included; the 429 was retried
    assert emu.counters.creates_by_prompt == Counter({f"once {i}": 1 for i in range(5)})


async def test_generate_many_deadline_accounts_for_every_created_task() -> None:
    async with running() as (emu, client):
        emu.faults.never_finish_rate = 1.0
        reqs = ({"model": IMAGE, "prompt": f"d{i}"} for i in range(1000))
        async with generate_many(
            client, reqs, PollerOptions(deadline=0.4), max_pending=20
        ) as results:
            out = [r async for r in results]
    created = emu.counters.creates_total
    assert 0 < created < 1000
    assert len(out) == created  # every paid task is accounted for; unread requests never ran
    assert all(isinstance(r.error, TaskTimeoutError) for r in out)


def test_policy_never_polls_before_the_earliest_plausible_finish() -> None:
    policy = AdaptivePolicy(jitter=0)
    from gptunnel_async._polling.policy import TaskHint

    assert policy.first_delay("google-imagen-3", TaskHint()) >= 4.5
    assert policy.first_delay("glabs-veo-3-1-fast", TaskHint()) >= 55
    # learning: a model that always takes ~100 s moves its first poll close to 100 s
    for _ in range(300):  # as the poller reports it: still running at 99 s, done at 101 s
        policy.observe_running("google-imagen-3", 0.0, 99.0)
        policy.observe("google-imagen-3", 99.0, 101.0)
    assert 80 < policy.first_delay("google-imagen-3", TaskHint()) < 103


def test_policy_hits_its_delay_target_with_far_fewer_polls_than_a_fixed_loop() -> None:
    """Simulated (no I/O): durations log-uniform 60–300 s, the issue's wide video spread."""
    import random

    from gptunnel_async._polling.policy import TaskHint

    rng = random.Random(5)
    policy = AdaptivePolicy(rng=random.Random(1))
    model = "glabs-veo-3-1-fast"
    polls_total = delay_total = 0.0
    naive_total = 0.0
    n = 2000
    for _ in range(n):
        duration = math.exp(rng.uniform(math.log(60), math.log(300)))
        t = policy.first_delay(model, TaskHint())
        polls, last = 1, 0.0
        while t < duration:
            policy.observe_running(model, last, t)
            last = t
            t += policy.next_delay(model, t, polls, TaskHint())
            polls += 1
        policy.observe(model, last, t)
        polls_total += polls
        delay_total += t - duration
        naive_total += math.ceil(duration)
    mean_delay = delay_total / n
    assert mean_delay <= 3.0
    assert naive_total / polls_total >= 9.0  # deterministic (seeded); 9.5 when written


def test_policy_uses_progress_percent_to_aim_at_the_finish() -> None:
    from gptunnel_async._polling.policy import TaskHint

    policy = AdaptivePolicy(jitter=0)
    # at 20 s the task said 90 %: it should be done in ~2 s, so poll soon
    soon = policy.next_delay("mj", 20.0, 3, TaskHint(percent=90, percent_elapsed=20.0))
    # at 20 s it said 10 %: ~180 s to go, so there's no point polling every few seconds
    later = policy.next_delay("mj", 20.0, 3, TaskHint(percent=10, percent_elapsed=20.0))
    assert soon < later
    assert later <= policy.max_interval


def test_learning_counts_tasks_still_running_so_early_finishers_do_not_bias_it() -> None:
    """400 tasks created together, durations log-uniform 60–300 s, observed up to 160 s.

    Only the shorter half has finished by then; an estimate from finished tasks alone would put
    the median near 100 s. Counting the still-running ones (survival analysis) finds the true
    median, √(60·300) ≈ 134 s.
    """
    import random

    from gptunnel_async._polling.policy import DurationModel
    from gptunnel_async.catalog import DurationPrior

    rng = random.Random(3)
    durations = [math.exp(rng.uniform(math.log(60), math.log(300))) for _ in range(400)]
    stats = DurationModel(DurationPrior(5, 15, 60), prior_weight=1.0)  # a wrong prior, on purpose
    last = dict.fromkeys(range(len(durations)), 0.0)
    for t in range(60, 161, 5):
        for i, duration in enumerate(durations):
            if i not in last:
                continue
            if duration <= t:
                stats.finished(last[i], float(t))
                del last[i]
            else:
                stats.running(last[i], float(t))
                last[i] = float(t)
    assert 0.3 < len(last) / len(durations) < 0.6  # many still running
    assert 120 < stats.quantile(0.5) < 150


async def test_rate_budget_paces_starts_instead_of_sending_them_in_a_burst() -> None:
    """30 requests ready at once under R=100/s leave evenly, ~10.5 ms apart, not as one burst:
    a server counting arrivals by its own clock must never see more than R in any second."""
    from gptunnel_async._polling.limits import RequestGate

    gate = RequestGate(max_concurrency=30, requests_per_second=100)
    starts: list[float] = []

    async def one() -> None:
        async with gate.slot():
            starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(one)
    spacing = 1.05 / 100
    assert starts[-1] - starts[0] >= (30 - 3) * spacing * 0.999
    for i, t in enumerate(starts):  # at most a catch-up burst of 3 plus the paced ones
        assert sum(1 for u in starts[i:] if u - t < 0.1) <= 3 + 0.1 / spacing


class _ThreeMethodPolicy:
    """A user's own schedule with only the required methods (no ``observe_running``)."""

    def __init__(self) -> None:
        self.finished = 0

    def first_delay(self, model: str | None, hint: object) -> float:
        return 0.02

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: object) -> float:
        return 0.02

    def observe(self, model: str | None, lower: float, upper: float) -> None:
        self.finished += 1


async def test_a_policy_with_only_the_required_methods_drives_poller_and_wait() -> None:
    policy = _ThreeMethodPolicy()
    emu = Emulator(EmulatorConfig(time_scale=SCALE))
    async with (
        serve(emu) as server,
        AsyncGPTunnel("test-key", base_url=server.url, poll_policy=policy) as client,
    ):
        tasks = [await client.media.create(model=IMAGE, prompt=f"p{i}") for i in range(5)]
        async with Poller(client) as poller:
            for task in tasks:
                poller.add(task)
            results = [r async for r in poller]
        assert sorted(r.id for r in results) == sorted(t.id for t in tasks)
        assert all(r.ok for r in results)
        assert policy.finished == 5
        task = await client.media.create(model=IMAGE, prompt="alone")
        done = await client.media.wait(task)
    assert done.is_finished and policy.finished == 6
