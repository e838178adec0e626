"""The per-task polling state machine that ``wait()`` and the ``Poller`` both drive.

Pure: no I/O, no clock (every event is given its ``now``), so each rule is checked exactly —
the first due time, what an answer or a failed poll means, and the deadline's last look.
The end-to-end checks (the same rules through ``wait()`` and the poller) close the file.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from gptunnel_async import (
    AdaptivePolicy,
    AsyncGPTunnel,
    Poller,
    PollerOptions,
    TaskFailedError,
    TaskTimeoutError,
)
from gptunnel_async._errors import (
    APIConnectionError,
    AuthenticationError,
    InternalServerError,
    RateLimitError,
)
from gptunnel_async._polling.policy import TaskHint
from gptunnel_async._polling.task import (
    Finished,
    PollAt,
    PollRules,
    Step,
    TaskPolling,
    percent_of,
)
from gptunnel_async._retry import RetryPolicy
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

FIRST = 10.0  # the recording policy's first delay
NEXT = 2.0  # and its every later delay


@dataclass
class RecordingPolicy:
    """A fixed schedule that records what it was taught and what hints it was given."""

    observed: list[tuple[str | None, float, float]] = field(default_factory=list)
    hints: list[TaskHint] = field(default_factory=list)

    def first_delay(self, model: str | None, hint: TaskHint) -> float:
        return FIRST

    def next_delay(self, model: str | None, elapsed: float, polls: int, hint: TaskHint) -> float:
        self.hints.append(hint)
        return NEXT

    def observe(self, model: str | None, last_running: float, finished_by: float) -> None:
        self.observed.append((model, last_running, finished_by))


@dataclass
class FakeTask:
    id: str = "t1"
    status: str = "processing"
    model: str | None = "m"
    percent: Any = None
    created_at: datetime | None = None
    failure_reason: str | None = None


def rules(policy: Any = None, max_failures: float = math.inf) -> PollRules:
    retry = RetryPolicy(initial_delay=1.0, max_delay=8.0, jitter=False)
    return PollRules(policy or RecordingPolicy(), retry, max_failures=max_failures)


def at(step: Step) -> float:
    assert isinstance(step, PollAt), step
    return step.at


def finished(step: Step) -> Finished:
    assert isinstance(step, Finished), step
    return step


# -- the first due time --


def test_a_task_of_known_age_is_first_polled_after_the_policys_first_delay() -> None:
    polling = TaskPolling("t1", now=100.0, origin=95.0)
    assert at(polling.start(rules(), now=100.0)) == 95.0 + FIRST


def test_a_bare_id_is_polled_at_once_and_its_created_at_gives_its_origin() -> None:
    policy = RecordingPolicy()
    polling = TaskPolling("t1", now=100.0)
    assert at(polling.start(rules(policy), now=100.0)) == 100.0
    created = datetime.now(timezone.utc) - timedelta(seconds=30)
    polling.answered(FakeTask(created_at=created), rules(policy), now=100.0)
    assert polling.origin == pytest.approx(70.0, abs=2.0)
    # an origin from a wall clock is not trusted enough to teach the policy
    polling.answered(FakeTask(status="done"), rules(policy), now=101.0)
    assert policy.observed == []


def test_an_implausible_created_at_is_ignored() -> None:
    polling = TaskPolling("t1", now=100.0)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    polling.answered(FakeTask(created_at=future), rules(), now=100.0)
    assert polling.origin == 100.0


def test_a_task_already_finished_when_added_needs_no_poll() -> None:
    done = FakeTask(status="done")
    step = finished(TaskPolling("t1", now=0.0, snapshot=done, origin=0.0).start(rules(), 0.0))
    assert step.task is done and step.error is None
    failed = FakeTask(status="failed", failure_reason="nsfw")
    step = finished(TaskPolling("t1", now=0.0, snapshot=failed, origin=0.0).start(rules(), 0.0))
    assert isinstance(step.error, TaskFailedError) and step.error.task is failed


# -- answers --


def test_done_is_returned_and_teaches_the_policy() -> None:
    policy = RecordingPolicy()
    polling = TaskPolling("t1", now=0.0, origin=0.0, model="m")
    polling.answered(FakeTask(), rules(policy), now=10.0)
    task = FakeTask(status="done")
    step = finished(polling.answered(task, rules(policy), now=12.0))
    assert step.task is task and step.error is None
    assert policy.observed == [("m", 10.0, 12.0)]
    assert polling.polls == 2


def test_failed_is_one_task_failed_error_with_the_servers_reason() -> None:
    task = FakeTask(status="error", failure_reason="content policy")
    step = finished(TaskPolling("t1", now=0.0, origin=0.0).answered(task, rules(), now=10.0))
    assert isinstance(step.error, TaskFailedError)
    assert str(step.error) == "task t1 failed: content policy"
    assert step.error.task is task


def test_running_schedules_the_next_poll_from_the_policy() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    assert at(polling.answered(FakeTask(), rules(), now=10.0)) == 10.0 + NEXT


def test_a_percent_becomes_a_hint_but_a_boolean_is_not_a_percent() -> None:
    policy = RecordingPolicy()
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.answered(FakeTask(percent=40), rules(policy), now=10.0)
    polling.answered(FakeTask(percent=True), rules(policy), now=12.0)
    polling.answered(FakeTask(percent=40), rules(policy), now=14.0)  # unchanged: keeps its time
    assert policy.hints == [TaskHint(40.0, 10.0)] * 3
    assert percent_of(FakeTask(percent=False)) is None
    assert percent_of(FakeTask(percent=float("nan"))) is None
    assert percent_of(FakeTask(percent=55.5)) == 55.5


# -- failed polls --


def test_transient_errors_back_off_exponentially() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    assert at(polling.failed(APIConnectionError("reset"), rules(), now=10.0)) == 11.0
    assert at(polling.failed(APIConnectionError("reset"), rules(), now=11.0)) == 13.0
    error = InternalServerError("busy", status_code=503)
    assert at(polling.failed(error, rules(), now=13.0)) == 17.0
    assert polling.failures == 3
    polling.answered(FakeTask(), rules(), now=18.0)
    assert polling.failures == 0  # an answer resets the count


def test_a_non_transient_error_ends_the_task_with_that_error() -> None:
    error = AuthenticationError("bad key", status_code=401)
    step = finished(TaskPolling("t1", now=0.0, origin=0.0).failed(error, rules(), now=1.0))
    assert step.error is error


def test_polls_that_keep_failing_are_given_up_after_max_failures() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    error = APIConnectionError("down")
    assert isinstance(polling.failed(error, rules(max_failures=2), now=1.0), PollAt)
    assert finished(polling.failed(error, rules(max_failures=2), now=2.0)).error is error


def test_a_429_waits_its_retry_after_and_does_not_count_towards_giving_up() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    for i in range(5):
        error = RateLimitError("slow down", status_code=429, retry_after=3.0)
        assert at(polling.failed(error, rules(max_failures=2), now=float(i))) == i + 3.0
    assert polling.failures == 0


# -- the deadline --


def test_a_poll_is_never_scheduled_past_the_deadline_and_the_last_one_is_at_it() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.limit(5.0, "5 s")
    assert at(polling.start(rules(), now=0.0)) == 5.0  # the policy said 10 s
    done = FakeTask(status="done")
    assert finished(polling.answered(done, rules(), now=5.0)).task is done


def test_still_running_at_the_last_look_times_out_with_the_last_state() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.limit(5.0, "5 s")
    polling.start(rules(), now=0.0)
    running = FakeTask()
    step = finished(polling.answered(running, rules(), now=5.0))
    assert isinstance(step.error, TaskTimeoutError)
    assert "within 5 s" in str(step.error) and step.error.task is running


def test_the_last_look_counts_even_if_the_clock_fires_a_hair_early() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.limit(5.0, "5 s")
    polling.start(rules(), now=0.0)
    step = finished(polling.answered(FakeTask(), rules(), now=4.999))
    assert isinstance(step.error, TaskTimeoutError)


def test_timeout_zero_means_exactly_one_poll() -> None:
    polling = TaskPolling("t1", now=50.0, origin=49.0)
    polling.limit(50.0, "0 s")
    assert at(polling.start(rules(), now=50.0)) == 50.0
    assert isinstance(
        finished(polling.answered(FakeTask(), rules(), 50.01)).error, TaskTimeoutError
    )


def test_a_failed_last_look_times_out_and_says_why() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.limit(5.0, "5 s")
    polling.start(rules(), now=0.0)
    cause = APIConnectionError("reset")
    step = finished(polling.failed(cause, rules(), now=5.0))
    assert isinstance(step.error, TaskTimeoutError) and step.error.__cause__ is cause
    assert "reset" in str(step.error)


def test_a_backoff_is_cut_short_by_the_deadline() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.limit(3.0, "3 s")
    error = RateLimitError("slow down", status_code=429, retry_after=30.0)
    assert at(polling.failed(error, rules(), now=1.0)) == 3.0


def test_the_earliest_limit_wins() -> None:
    polling = TaskPolling("t1", now=0.0, origin=0.0)
    polling.limit(8.0, "8 s (its timeout)")
    polling.limit(6.0, "the poller's deadline")
    polling.limit(math.inf, "nothing")
    assert (polling.deadline, polling.deadline_what) == (6.0, "the poller's deadline")


# -- the same rules through wait() and the poller, on the emulator --

VIDEO = "glabs-veo-3"  # its prior says a minute or more


@asynccontextmanager
async def video_taking(seconds: float) -> AsyncIterator[tuple[Emulator, AsyncGPTunnel]]:
    """An emulator at real time whose video tasks take ``seconds``, and a client for it."""
    config = EmulatorConfig(time_scale=1.0, seed=3, durations={VIDEO: DurationDist.fixed(seconds)})
    async with serve(Emulator(config)) as server:
        policy = AdaptivePolicy()
        async with AsyncGPTunnel("test-key", base_url=server.url, poll_policy=policy) as client:
            yield server.emulator, client


@pytest.mark.anyio
async def test_wait_with_a_timeout_shorter_than_the_prior_looks_before_giving_up() -> None:
    async with video_taking(0.2) as (emu, client):
        assert client.poll_policy.first_delay(VIDEO, TaskHint()) > 5.0
        task = await client.media.create(model=VIDEO, prompt="a wave")
        done = await client.media.wait(task, timeout=1.0)
        assert done.is_done
        assert emu.counters.requests_by_route["GET /v1/media/result"] == 1


@pytest.mark.anyio
async def test_wait_timeout_zero_polls_exactly_once() -> None:
    async with video_taking(60.0) as (emu, client):
        task = await client.media.create(model=VIDEO, prompt="a wave")
        with pytest.raises(TaskTimeoutError) as caught:
            await client.media.wait(task, timeout=0)
        assert caught.value.task is not None and caught.value.task.id == task.id
        assert emu.counters.requests_by_route["GET /v1/media/result"] == 1


@pytest.mark.anyio
async def test_poller_task_timeout_and_deadline_look_before_giving_up() -> None:
    async with video_taking(0.2) as (_, client):
        for options in (PollerOptions(task_timeout=1.0), PollerOptions(deadline=1.0)):
            task = await client.media.create(model=VIDEO, prompt="a wave")
            with anyio.fail_after(30):
                async with Poller(client, options) as poller:
                    poller.add(task)
                    results = [r async for r in poller]
            assert [r.ok for r in results] == [True], results
            assert results[0].polls == 1
