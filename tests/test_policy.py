"""The default poll schedule learns any model's durations, follows drift, and keeps what it
learned across a restart. Simulated through the policy's own protocol (no I/O, no clock):
every figure here is deterministic for its seed."""

from __future__ import annotations

import heapq
import json
import logging
import math
import random
from pathlib import Path

import pytest

from gptunnel_async import AdaptivePolicy
from gptunnel_async._polling.policy import (
    _EDGES,
    TaskHint,
    _bin_of,
    _Schedule,
    report_running,
)
from gptunnel_async.poll_state import keep_poll_state, load_poll_state, save_poll_state

VIDEO = "glabs-veo-3"  # prior: 60-300 s
IMAGE = "flux-dev"  # prior: 5-60 s
HINT = TaskHint()


def batch(policy: AdaptivePolicy, model: str, durations: list[float]) -> tuple[float, float]:
    """(polls per task, mean detection delay): every task created at 0, all in flight, driven
    exactly as the poller drives the policy."""
    heap = [(policy.first_delay(model, HINT), i, 0.0, 1) for i in range(len(durations))]
    heapq.heapify(heap)
    polls, delays = 0, []
    while heap:
        now, i, last, n = heapq.heappop(heap)
        polls += 1
        if now >= durations[i]:
            policy.observe(model, last, now)
            delays.append(now - durations[i])
        else:
            report_running(policy, model, last, now)
            heapq.heappush(heap, (now + policy.next_delay(model, now, n, HINT), i, now, n + 1))
    return polls / len(durations), sum(delays) / len(delays)


def log_uniform(rng: random.Random, lo: float, hi: float, n: int = 100) -> list[float]:
    return [math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(n)]


def naive_polls(durations: list[float]) -> float:
    return sum(max(1, math.ceil(d)) for d in durations) / len(durations)


def test_a_model_much_faster_than_its_prior_is_learned() -> None:
    """Videos that take 10-30 s against a 60-300 s prior: every task is done at its first poll
    at first, and the first poll used never to move earlier (45 s late in every batch)."""
    policy = AdaptivePolicy(rng=random.Random(1))
    rng = random.Random(2)
    target = policy.target_delay["video"]
    results = [batch(policy, VIDEO, log_uniform(rng, 10, 30)) for _ in range(3)]
    first_delay = results[0][1]
    assert first_delay > 10 * target  # the prior was wrong: batch 1 pays for it
    durations = log_uniform(rng, 10, 30)
    polls, delay = batch(policy, VIDEO, durations)
    assert delay <= 1.25 * target
    assert polls <= naive_polls(durations)
    assert policy.schedule_for(VIDEO).first_poll < 20


def test_sub_second_tasks_never_cost_more_than_the_naive_loop() -> None:
    policy = AdaptivePolicy(rng=random.Random(3))
    rng = random.Random(4)
    for _ in range(3):
        durations = log_uniform(rng, 0.3, 0.9)
        polls, delay = batch(policy, IMAGE, durations)
    assert polls <= naive_polls(durations)  # = 1 poll per task
    assert delay <= 1.25 * policy.target_delay["image"]


@pytest.mark.parametrize("factor", [1 / 3, 3.0])
def test_a_drift_either_way_is_followed_within_200_tasks(factor: float) -> None:
    policy = AdaptivePolicy(rng=random.Random(5))
    rng = random.Random(6)
    for _ in range(3):
        batch(policy, IMAGE, log_uniform(rng, 5, 60))
    lo, hi = 5 * factor, 60 * factor
    batch(policy, IMAGE, log_uniform(rng, lo, hi))
    batch(policy, IMAGE, log_uniform(rng, lo, hi))
    durations = log_uniform(rng, lo, hi)  # tasks 201-300 after the change
    polls, delay = batch(policy, IMAGE, durations)
    assert delay <= 1.25 * policy.target_delay["image"]
    assert polls <= naive_polls(durations)


def test_a_drift_is_detected_and_old_records_forgotten() -> None:
    policy = AdaptivePolicy(rng=random.Random(7))
    rng = random.Random(8)
    for _ in range(3):
        batch(policy, VIDEO, log_uniform(rng, 60, 300))
    stats = policy.model_stats(VIDEO)
    steady = stats.drifts
    batch(policy, VIDEO, log_uniform(rng, 60, 300))
    assert stats.drifts == steady  # no false alarm on the same distribution
    batch(policy, VIDEO, log_uniform(rng, 20, 100))
    assert stats.drifts > steady


def test_exploration_costs_little_when_the_prior_is_right() -> None:
    rng = random.Random(9)
    batches = [log_uniform(rng, 60, 300) for _ in range(6)]
    off_policy = AdaptivePolicy(rng=random.Random(1), explore=0.0)
    on_policy = AdaptivePolicy(rng=random.Random(1))
    off = [batch(off_policy, VIDEO, durations) for durations in batches]
    on = [batch(on_policy, VIDEO, durations) for durations in batches]
    polls_off, polls_on = (sum(p for p, _ in runs) / len(runs) for runs in (off, on))
    assert polls_on <= polls_off * 1.02
    assert sum(d for _, d in on) / len(on) <= 3.0
    assert sum(naive_polls(b) for b in batches) / len(batches) / polls_on >= 9.0


def test_probes_come_below_the_first_poll_and_only_at_the_exploration_rate() -> None:
    policy = AdaptivePolicy(rng=random.Random(10), jitter=0.0, explore=0.1)
    first = policy.schedule_for(VIDEO).first_poll
    delays = [policy.first_delay(VIDEO, HINT) for _ in range(100)]
    probes = [d for d in delays if d < first]
    assert len(probes) == 10  # every 10th task, not a coin toss
    assert all(first / 4 <= d < first for d in probes)
    assert AdaptivePolicy(explore=0.0).explore_rate(VIDEO) == 0.0


def test_a_task_polled_off_the_table_keeps_the_tables_gaps() -> None:
    """A task polled on an older table is out of phase with the new one; skipping the next
    table time when it is near used to stretch that gap to 1.5x the table's, past ``max_gap``
    (a drifting model rebuilds often: mean delay 1.40x the target on 3-6 s images)."""
    sched = _Schedule((1.0, 0.25, 2.0, 1.0), (10.0, 12.0, 14.0, 16.0, 18.0), 1.0, 5.0)
    for k in range(100):
        elapsed = 10.0 + 6.0 * k / 100
        due = sched.next_time(elapsed)
        assert due is not None
        assert elapsed < due <= elapsed + 2.0  # the table's gap is 2 s


@pytest.mark.parametrize("start", [36.0, 38.0, 39.5])
def test_a_table_starting_below_the_first_finishes_meets_its_target(start: float) -> None:
    """The table starts below anything seen (where the lower edge may really lie), in bins
    holding nothing. Their gap was max_gap, which no spacing shortens: a first step of 20 s
    there put the first poll past most finishes, and that table (4x the target late) still
    won the choice of first poll, on polls alone."""
    counts = [0.0] * (len(_EDGES) - 1)
    first, last = _bin_of(40.0), _bin_of(60.0)
    for i in range(first, last + 1):
        counts[i] = 1.0 / (last - first + 1)
    sched = _Schedule.build(counts, 2.0, start, 0.25, 20.0)
    assert sched.expected_delay <= 2.0 * (1 + 1e-6)
    assert sched.first_poll < 40.0 + 6.0


@pytest.mark.parametrize("seed", range(4))
def test_images_of_one_to_two_seconds_settle_instead_of_oscillating(seed: int) -> None:
    """Every task running at the first look shares the bracket up to the second poll, split by
    what the estimate already believes, so what lies inside it is never seen. A wide gap out of
    a thin bin just above the first poll (1-2 s images: polls at 1.0 s and 2.9 s) jumped past
    the bulk batch after batch: one batch in three was 1.3-1.6x the target late. The gap after
    the first poll no longer steps over bins whose own gap is shorter."""
    policy = AdaptivePolicy(rng=random.Random(seed))
    rng = random.Random(200 + seed)
    delays = [batch(policy, IMAGE, log_uniform(rng, 1.0, 2.0))[1] for _ in range(8)]
    assert max(delays[2:]) <= 1.25 * 0.93


@pytest.mark.parametrize("seed", range(4))
def test_tasks_near_the_lower_edge_are_not_left_waiting_before_the_first_poll(seed: int) -> None:
    """Two hundred finishes place the lower edge only roughly, and a task done before the
    first poll waits all of it: a table starting at the edge they suggest left ~1 % of
    100-400 s images done before their first poll (200-1000 s: 6 of 100 waiting 7 s each, at
    a 0.93 s target). It starts below by a margin now."""
    policy = AdaptivePolicy(rng=random.Random(seed))
    rng = random.Random(100 + seed)
    lo, hi = 100.0, 400.0
    for _ in range(2):
        batch(policy, IMAGE, log_uniform(rng, lo, hi))
    first = policy.schedule_for(IMAGE).first_poll
    done_before = math.log(max(first, lo) / lo) / math.log(hi / lo)  # F(first poll)
    assert done_before <= 0.005


def test_a_third_done_at_the_first_poll_sets_off_probes() -> None:
    """Videos of 50-150 s against a 60-300 s prior: a quarter to a third of first polls find
    the task done. Their finishes are shared just below that poll (nothing lower is known),
    so the estimate seems to agree, and an absolute bar of 30 % done never probed below:
    those tasks waited ~5 s each, batch after batch. What the schedule expects counts only
    up to 10 %; more done than that is a surprise."""
    policy = AdaptivePolicy(rng=random.Random(12))
    first = policy.schedule_for(VIDEO).first_poll
    for k in range(96):
        if k % 3 == 0:
            policy.observe(VIDEO, 0.0, first)
        else:
            policy.observe_running(VIDEO, 0.0, first)
    assert policy.explore_rate(VIDEO) > 2 * policy.explore


def learned_policy(seed: int = 11) -> AdaptivePolicy:
    policy = AdaptivePolicy(rng=random.Random(seed))
    rng = random.Random(seed + 1)
    for _ in range(2):
        batch(policy, VIDEO, log_uniform(rng, 15, 40))
        batch(policy, IMAGE, log_uniform(rng, 2, 8))
    return policy


def test_export_and_restore_round_trip_through_json() -> None:
    policy = learned_policy()
    state = json.loads(json.dumps(policy.export_state()))
    assert state["version"] == 1 and set(state["models"]) == {VIDEO, IMAGE}
    assert len(json.dumps(state)) < 20_000  # small: a few KB per model
    fresh = AdaptivePolicy()
    assert fresh.restore_state(state) is True
    assert fresh.export_state() == state
    for model in (VIDEO, IMAGE):
        restored, learned = fresh.schedule_for(model), policy.schedule_for(model)
        assert restored.first_poll == pytest.approx(learned.first_poll, rel=0.05)
        assert restored.first_poll < AdaptivePolicy().schedule_for(model).first_poll


def test_a_restored_policy_starts_warm() -> None:
    """What the restart is for: the first batch after it is already on target."""
    state = learned_policy().export_state()
    warm, cold = AdaptivePolicy(rng=random.Random(1)), AdaptivePolicy(rng=random.Random(1))
    warm.restore_state(state)
    durations = log_uniform(random.Random(12), 15, 40)
    _, warm_delay = batch(warm, VIDEO, durations)
    _, cold_delay = batch(cold, VIDEO, durations)
    assert warm_delay <= 1.25 * warm.target_delay["video"] < cold_delay


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "not a state",
        lambda s: None,
        lambda s: {**s, "format": "something-else"},
        lambda s: {**s, "version": 99},
        lambda s: {**s, "clock_scale": 20.0},
        lambda s: {**s, "bins": {**s["bins"], "per_decade": 10}},
        lambda s: {**s, "models": []},
        lambda s: {**s, "models": {VIDEO: {**s["models"][VIDEO], "observed": -1}}},
        lambda s: {**s, "models": {VIDEO: {**s["models"][VIDEO], "first_done": "x"}}},
        lambda s: {**s, "models": {VIDEO: {**s["models"][VIDEO], "bins": [[10_000, 1, 1]]}}},
        lambda s: {**s, "models": {VIDEO: {**s["models"][VIDEO], "bins": [[3, float("nan"), 1]]}}},
        lambda s: {**s, "models": {VIDEO: {**s["models"][VIDEO], "bins": [[3, 1]]}}},
        lambda s: {**s, "models": {IMAGE: s["models"][IMAGE], VIDEO: 7}},
    ],
)
def test_a_corrupt_or_foreign_state_is_ignored_with_a_warning(
    mangle: object, caplog: pytest.LogCaptureFixture
) -> None:
    state = learned_policy().export_state()
    policy = AdaptivePolicy()
    before = policy.schedule_for(IMAGE).times
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        assert policy.restore_state(mangle(state)) is False  # type: ignore[operator]
    assert "poll state ignored" in caplog.text
    assert policy.export_state()["models"] == {}  # all or nothing: not even the good model
    assert policy.schedule_for(IMAGE).times == before


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    policy = learned_policy()
    assert save_poll_state(policy, path) is True
    fresh = AdaptivePolicy()
    assert load_poll_state(fresh, path) is True
    assert fresh.export_state() == json.loads(path.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left over


@pytest.mark.parametrize(
    "content", [b"{not json", b"\xff\xfe\x00garbage", b"[]", b'{"format": "x"}', b"", b" " * 2**21]
)
def test_a_corrupt_state_file_is_ignored_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    policy = AdaptivePolicy()
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        assert load_poll_state(policy, path) is False
    assert "poll state" in caplog.text and "ignored" in caplog.text
    assert policy.export_state()["models"] == {}


def test_a_missing_state_file_is_a_first_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        assert load_poll_state(AdaptivePolicy(), tmp_path / "none.json") is False
    assert caplog.text == ""


def test_policies_without_state_are_skipped(tmp_path: Path) -> None:
    from gptunnel_async.poller import FixedIntervalPolicy

    path = tmp_path / "state.json"
    assert save_poll_state(FixedIntervalPolicy(), path) is False
    assert not path.exists()
    assert load_poll_state(FixedIntervalPolicy(), path) is False


def test_an_unwritable_state_file_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        assert save_poll_state(learned_policy(), tmp_path / "missing-dir" / "s.json") is False
    assert "not saved" in caplog.text


def test_a_long_run_keeps_its_poll_state_current_and_writes_only_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``keep_poll_state`` (what a killed batch relies on): a write once the state changed,
    none while it does not, however many intervals pass."""
    import anyio
    import anyio.from_thread

    from gptunnel_async import poll_state

    path = tmp_path / "state.json"
    policy = learned_policy()
    writes: list[str] = []
    written: list[anyio.Event] = []  # set by each write (from its thread)
    real_write = poll_state._write_state

    def write(text: str, file: Path) -> bool:
        writes.append(text)
        anyio.from_thread.run_sync(written[min(len(writes), 3) - 1].set)
        return real_write(text, file)

    monkeypatch.setattr(poll_state, "_write_state", write)

    async def scenario() -> None:
        nonlocal written
        written = [anyio.Event(), anyio.Event(), anyio.Event()]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_poll_state, policy, path, 0.01)
                await written[0].wait()
                await anyio.sleep(0.1)  # ten intervals, nothing learned
                batch(policy, IMAGE, log_uniform(random.Random(5), 2, 8))
                await written[1].wait()
                await anyio.sleep(0.1)
                tg.cancel_scope.cancel()

    anyio.run(scenario)
    assert len(writes) == 2
    assert json.loads(writes[0]) != json.loads(writes[1])
    assert json.loads(path.read_text()) == policy.export_state()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left over
    with pytest.raises(ValueError, match="interval"):
        anyio.run(keep_poll_state, policy, path, 0)


def test_the_cli_batch_keeps_the_learned_state_beside_its_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from click.testing import CliRunner

    from gptunnel_async.cli._app import cli
    from gptunnel_async.cli._batch import JOURNAL_NAME, POLL_STATE_NAME
    from gptunnel_async.testing import Emulator, EmulatorConfig, run_in_thread

    source = tmp_path / "prompts.txt"
    source.write_text("".join(f"a fox {i}\n" for i in range(6)), encoding="utf-8")
    out = tmp_path / "out"
    state = out / POLL_STATE_NAME

    def run_batch() -> int:
        args = ["--base-url", url, "--api-key", "test-key-0123456789", "--clock-scale", "200"]
        args += ["batch", str(source), "-o", str(out), "--no-progress"]
        return CliRunner().invoke(cli, args, catch_exceptions=False).exit_code

    with run_in_thread(Emulator(EmulatorConfig(time_scale=200))) as url:
        assert run_batch() == 0
        assert (out / JOURNAL_NAME).exists() and state.exists()
        learned = json.loads(state.read_text())
        assert sum(m["observed"] for m in learned["models"].values()) == 6
        state.write_text("{corrupt")  # a broken state costs a warm start, never the batch
        (out / JOURNAL_NAME).unlink()
        with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
            assert run_batch() == 0
    assert "poll state" in caplog.text
    assert json.loads(state.read_text())["version"] == 1  # rewritten whole


def test_the_live_finishes_are_shared_as_each_would_be_alone() -> None:
    """The rebuild's one-pass sharing (prefix sums, difference arrays) gives what sharing each
    finish over its own bracket and summing gives; bracket kinds keep their own floor share."""
    from gptunnel_async._polling.policy import _N_BINS, _Finish, _Live, _log_uniform

    rng = random.Random(13)
    live, kept = _Live(), []
    while len(kept) < 300:
        lower = 0.0 if rng.random() < 0.4 else math.exp(rng.uniform(-1, 5))
        upper = (lower or 0.5) * math.exp(rng.uniform(0.05, 2.5))
        finish = _Finish.make(lower, upper, rng.uniform(0.5, 2), 4 ** rng.uniform(1, 3))
        if finish.first < finish.last:
            live.add(finish)
            kept.append(finish)
    for _ in range(40):  # the oldest leave
        assert live.pop() is kept.pop(0)
    # mass on 2-50 s and a little on 3-12 s: brackets below 2 s get no estimate (floor only)
    density = [p + (1e-3 if 120 <= i < 140 else 0.0) for i, p in enumerate(_log_uniform(2, 50))]
    live.share(density, 0.3, 0.1)
    events, exposure = [0.0] * _N_BINS, [0.0] * _N_BINS
    for finish in kept:
        e, x = finish.split(density, 0.1 if finish.between else 0.3)
        for k, (de, dx) in enumerate(zip(e, x, strict=True)):
            events[finish.first + k] += de
            exposure[finish.first + k] += dx
    assert sum(events) == pytest.approx(sum(f.weight for f in kept))
    assert live.events == pytest.approx(events, abs=1e-9)
    assert live.exposure == pytest.approx(exposure, abs=1e-9)
