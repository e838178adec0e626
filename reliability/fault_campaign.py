"""Fault campaign: one journaled batch through a hostile emulator, over a real loopback socket.

``python reliability/fault_campaign.py [--quick] [--tasks N] [--seed S]``

The emulator runs in its own process (``_emulator.py``), time-compressed (``--time-scale``,
200 by default, with a matching ``AdaptivePolicy(clock_scale=...)``). The same batch runs twice:
once with no faults (the baseline wall time), once with every fault mixed together —

- 10 % of requests answered 5xx, 1 % dropped before and 1 % after processing (files included),
- 1 % of answers slower (3 s) than the client's read timeout (2 s),
- a 429 burst with ``Retry-After: 1`` every few seconds,
- 5 % of tasks failing server-side, 0.5 % never finishing (``task_timeout`` ends them),
- 3 % of finished tasks whose link is already dead when the SDK comes to download it.

Every result is classified and reconciled with the emulator's view of each task and with the
journal; then the batch is resumed once with the faults off (nothing may be created again).
Prints markdown tables; exits non-zero if an invariant fails. Every loop is bounded in count and
in time (``deadline``), so a run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import AsyncGPTunnel  # noqa: E402
from gptunnel_async.poller import AdaptivePolicy, PollerOptions, generate_many  # noqa: E402
from gptunnel_async.stores import SQLiteJournal  # noqa: E402
from reliability._common import (  # noqa: E402
    EXPIRED,
    FAILED,
    OK_FILE,
    OUTCOMES,
    TIMED_OUT,
    UNKNOWN,
    check_files,
    classify,
    machine_note,
    mark,
    md_table,
)
from reliability._emulator import API_KEY, MODEL, EmulatorProcess  # noqa: E402

FAULTS: dict[str, Any] = {
    "error_rate": 0.10,
    "error_statuses": [500, 502, 503],
    "drop_rate": 0.01,
    "drop_after_rate": 0.01,
    "slow_rate": 0.01,
    "slow_delay": 3.0,
    "task_failure_rate": 0.05,
    "include_files": True,
}
LINK_EXPIRY_RATE = 0.03
CLIENT_TIMEOUT = httpx.Timeout(2.0, connect=1.0)


@dataclass
class Settings:
    tasks: int = 2000
    seed: int = 1
    time_scale: float = 200.0
    concurrency: int = 32
    task_timeout: float = 20.0  # real seconds; the slowest image is 60/200 = 0.3 s
    deadline: float = 240.0  # the whole run, real seconds
    burst_every: float = 6.0
    burst_len: float = 0.3
    burst_retry_after: float = 1.0
    max_bursts: int = 5
    never_finish_rate: float = 0.005


@dataclass
class BatchOutcome:
    wall: float
    results: list[dict[str, Any]] = field(default_factory=list)
    bursts: int = 0


def quick_settings() -> Settings:
    """The CI size: 200 tasks, two bursts, more never-finishing tasks so some occur."""
    return Settings(
        tasks=200, deadline=60.0, task_timeout=5.0, burst_every=2.0, max_bursts=2,
        never_finish_rate=0.02,
    )  # fmt: skip


def prompts_for(s: Settings, tag: str) -> list[str]:
    return [f"rel-{tag}-{s.seed}-{i:05d}" for i in range(s.tasks)]


async def run_batch(
    url: str,
    prompts: list[str],
    s: Settings,
    workdir: Path,
    control: Any = None,
    bursts: bool = False,
) -> BatchOutcome:
    """``generate_many`` with a journal and ``download_to``; 429 bursts injected meanwhile."""
    requests = [{"model": MODEL, "prompt": p, "tag": i} for i, p in enumerate(prompts)]
    policy = AdaptivePolicy(clock_scale=s.time_scale)
    out = BatchOutcome(wall=0.0)
    done = anyio.Event()

    async def burster() -> None:
        # Bounded: at most max_bursts bursts, and it ends with the batch.
        for _ in range(s.max_bursts):
            with anyio.move_on_after(s.burst_every):
                await done.wait()
            if done.is_set():
                return
            await anyio.to_thread.run_sync(
                lambda: control("faults", burst_429=[s.burst_len, s.burst_retry_after])
            )
            out.bursts += 1

    start = time.monotonic()
    async with (
        AsyncGPTunnel(
            API_KEY, base_url=url, timeout=CLIENT_TIMEOUT, poll_policy=policy, max_connections=64
        ) as client,
        anyio.create_task_group() as tg,
    ):
        if bursts and control is not None:
            tg.start_soon(burster)
        try:
            async with generate_many(
                client,
                requests,
                PollerOptions(
                    max_concurrency=s.concurrency, task_timeout=s.task_timeout, deadline=s.deadline
                ),
                max_pending=500,
                journal=workdir / "journal.sqlite",
                download_to=workdir / "out",
            ) as run:
                async for r in run:
                    out.results.append(
                        {
                            "index": r.index,
                            "id": r.id,
                            "outcome": classify(r),
                            "error": type(r.error).__name__ if r.error else None,
                            "from_journal": r.from_journal,
                        }
                    )
        finally:
            done.set()
    out.wall = time.monotonic() - start
    return out


async def journal_states(path: Path) -> Counter[str]:
    journal = SQLiteJournal(path)
    try:
        return Counter(r.state for r in await journal.records())
    finally:
        await journal.aclose()


def reconcile(
    prompts: list[str], batch: BatchOutcome, tasks: dict[str, dict[str, Any]], creates: Counter[str]
) -> dict[str, Any]:
    """Match every result against the emulator's own record of the task it names."""
    mismatches: list[str] = []
    unknown_created = unknown_absent = late_done = 0
    client_ids = set()
    for res in batch.results:
        prompt = prompts[res["index"]]
        outcome, tid = res["outcome"], res["id"]
        if tid is not None:
            client_ids.add(tid)
        info = tasks.get(tid) if tid else None
        expected: bool
        if outcome == OK_FILE:
            expected = info is not None and info["fate"] == "done" and not info["dead_link"]
        elif outcome == FAILED:
            expected = info is not None and info["fate"] == "failed"
        elif outcome == TIMED_OUT:
            expected = info is not None
            late_done += info is not None and info["fate"] != "never"
        elif outcome == EXPIRED:
            expected = info is not None and bool(info["dead_link"])
        elif outcome == UNKNOWN:
            n = creates.get(prompt, 0)
            unknown_created += n == 1
            unknown_absent += n == 0
            expected = n <= 1
        else:
            expected = info is not None  # a reported reason for a task the emulator knows
        if info is not None and info["prompt"] != prompt:
            expected = False
        if not expected:
            mismatches.append(f"#{res['index']} {outcome} {tid} {info}")
    ours = set(prompts)
    orphans = [tid for tid, info in tasks.items() if info["prompt"] in ours]
    orphans = [tid for tid in orphans if tid not in client_ids]
    return {
        "mismatches": mismatches,
        "unknown_created": unknown_created,
        "unknown_absent": unknown_absent,
        "late_done": late_done,
        "orphans": len(orphans),
        "never_tasks": sum(
            1 for t in tasks.values() if t["prompt"] in ours and t["fate"] == "never"
        ),
        "failed_tasks": sum(
            1 for t in tasks.values() if t["prompt"] in ours and t["fate"] == "failed"
        ),
        "dead_links": sum(1 for t in tasks.values() if t["prompt"] in ours and t["dead_link"]),
    }


async def campaign(s: Settings, workroot: Path) -> tuple[str, bool, dict[str, Any]]:
    """Run the baseline and the faulty batch; the markdown report, PASS/FAIL and the figures."""
    with EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu:
        ctl = emu.control
        # 1. baseline: the same batch, no faults
        ctl("reset", seed=s.seed)
        base = await run_batch(emu.url, prompts_for(s, "base"), s, workroot / "base")
        # 2. everything at once
        ctl("reset", seed=s.seed)
        ctl("faults", **FAULTS, never_finish_rate=s.never_finish_rate)
        ctl("link_expiry", rate=LINK_EXPIRY_RATE)
        prompts = prompts_for(s, "faults")
        work = workroot / "faults"
        batch = await run_batch(emu.url, prompts, s, work, control=ctl, bursts=True)
        ctl("faults", reset=True)
        counters = ctl("counters")
        tasks = ctl("tasks")
        files = check_files(work / "out", tasks)
        states = await journal_states(work / "journal.sqlite")
        # 3. resume the same batch with the faults off: nothing may be created again
        resume = await run_batch(emu.url, prompts, s, work)
        after = ctl("counters")
        tasks_after = ctl("tasks")
    creates = Counter[str](counters["creates_by_prompt"])
    seen = Counter(r["index"] for r in batch.results)
    once = sum(1 for i in range(s.tasks) if seen[i] == 1)
    twice = sum(1 for c in seen.values() if c > 1)
    lost = s.tasks - len(seen)
    dup_creates = sum(1 for p in prompts if creates.get(p, 0) > 1)
    outcomes = Counter(r["outcome"] for r in batch.results)
    rec = reconcile(prompts, batch, tasks, creates)
    resume_outcomes = Counter(r["outcome"] for r in resume.results)
    rec2 = reconcile(prompts, resume, tasks_after, Counter(after["creates_by_prompt"]))
    files2 = check_files(work / "out", tasks_after)
    resume_seen = Counter(r["index"] for r in resume.results)
    new_creates = after["creates_total"] - counters["creates_total"]
    dup_after = sum(1 for p in prompts if after["creates_by_prompt"].get(p, 0) > 1)
    status = counters["responses_by_status"]
    ratio = batch.wall / base.wall if base.wall else float("nan")
    checks = {
        "yielded exactly once": once == s.tasks and twice == 0,
        "lost": lost == 0,
        "created twice": dup_creates == 0 and dup_after == 0,
        "retry-after": counters["retry_after_violations"] == 0,
        "reconciled": not rec["mismatches"],
        "files whole": files["bad"] == 0 and files["unknown"] == 0,
        "files = ok results": files["whole"] == outcomes[OK_FILE],
        "resume: no new create": new_creates == 0,
        "resume: each once": len(resume_seen) == s.tasks and max(resume_seen.values()) == 1,
        "resume: reconciled": not rec2["mismatches"] and rec2["late_done"] == 0,
        "resume: files whole": files2["bad"] == 0 and files2["whole"] == resume_outcomes[OK_FILE],
        "baseline all ok": Counter(r["outcome"] for r in base.results)[OK_FILE] == s.tasks,
        "emulator errors": not counters["internal_errors"],
    }
    fig = [
        ("requests in the batch", s.tasks, ""),
        ("results yielded", len(batch.results), ""),
        ("tasks yielded exactly once", once, mark(once == s.tasks)),
        ("tasks yielded more than once", twice, mark(twice == 0)),
        ("tasks lost (never yielded)", lost, mark(lost == 0)),
        ("creates sent more than once (`creates_by_prompt` > 1)", dup_creates,
         mark(dup_creates == 0)),
        ("requests inside a Retry-After window (s after the last 429: "
         f"{counters['violation_lags']})", counters["retry_after_violations"],
         mark(counters["retry_after_violations"] == 0)),
        ("results that disagree with the emulator", len(rec["mismatches"]),
         mark(not rec["mismatches"])),
        ("files on disk: whole / damaged / unknown", f"{files['whole']} / {files['bad']} / "
         f"{files['unknown']}", mark(checks["files whole"] and checks["files = ok results"])),
        ("leftover temp `.part` files", files["temps"], ""),
        ("wall time, no faults (s)", round(base.wall, 2), ""),
        ("wall time, all faults (s)", round(batch.wall, 2), ""),
        ("wall-time ratio faults / no faults", round(ratio, 2), ""),
    ]  # fmt: skip
    injected = [
        ("API+file requests seen", counters["requests_total"]),
        ("answered 5xx", sum(v for k, v in status.items() if k.startswith("5"))),
        ("answered 429 (bursts)", status.get("429", 0)),
        ("429 bursts injected", batch.bursts),
        ("connections dropped (before + after processing)", counters["drops"]),
        ("tasks fated to fail / never finish", f"{rec['failed_tasks']} / {rec['never_tasks']}"),
        ("tasks with a dead link", rec["dead_links"]),
        ("tasks created (emulator)", counters["creates_total"]),
    ]
    res_never = outcomes[TIMED_OUT] - rec["late_done"]
    emu_view = {
        OK_FILE: "task done, link alive, file size + magic checked",
        FAILED: "task fated `failed`",
        TIMED_OUT: f"{res_never} fated `never` (still processing); {rec['late_done']} finished "
        "server-side after the client's `task_timeout` (a resume fetches them)",
        EXPIRED: "task's link dead (ttl 0 or revoked)",
        UNKNOWN: f"{rec['unknown_created']} created once (billed, id never seen), "
        f"{rec['unknown_absent']} never reached the server",
    }
    rows = [(o, outcomes[o], emu_view.get(o, "")) for o in OUTCOMES if outcomes[o]]
    report = [
        f"### Fault campaign: {s.tasks} tasks, time scale {s.time_scale:g}, seed {s.seed}",
        "",
        machine_note(),
        "",
        md_table(("figure", "value", "check"), fig),
        "",
        "Faults injected (emulator counters):",
        "",
        md_table(("fault", "count"), injected),
        "",
        "Outcome of every request, reconciled with the emulator:",
        "",
        md_table(("outcome", "results", "emulator's view"), rows),
        "",
        f"Orphans (tasks the emulator created whose id the client never saw): {rec['orphans']} "
        f"(= the {rec['unknown_created']} unknown creates that did land).",
        "",
        "Journal states after the run: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
        "",
        f"Resume with faults off: {len(resume.results)} results in {resume.wall:.2f} s, "
        f"new creates {new_creates} ({mark(new_creates == 0)}), prompts created twice "
        f"{dup_after}; outcomes: "
        + ", ".join(f"{k} {v}" for k, v in resume_outcomes.items())
        + f"; files whole {files2['whole']}, damaged {files2['bad']}, results that disagree "
        f"with the emulator {len(rec2['mismatches'])}.",
    ]
    if rec["mismatches"]:
        report += ["", "Mismatches (first 10):", "", *[f"- {m}" for m in rec["mismatches"][:10]]]
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
    figures = {
        "checks": checks,
        "outcomes": dict(outcomes),
        "ratio": ratio,
        "counters": {k: v for k, v in counters.items() if k != "creates_by_prompt"},
        "files": files,
        "reconcile": {k: v for k, v in rec.items() if k != "mismatches"},
        "mismatches": rec["mismatches"][:20] + rec2["mismatches"][:20],
        "resume_outcomes": dict(resume_outcomes),
    }
    return "\n".join(report), not failed, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 tasks (the CI size)")
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--time-scale", type=float, default=200.0)
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = p.parse_args(argv)
    logging.getLogger("gptunnel_async").setLevel(logging.ERROR)  # unknown creates warn, by design
    s = quick_settings() if args.quick else Settings()
    s.seed, s.time_scale = args.seed, args.time_scale
    if args.tasks:
        s.tasks = args.tasks
    with tempfile.TemporaryDirectory(prefix="gptunnel-faults-") as tmp:
        report, ok, figures = anyio.run(campaign, s, Path(tmp))
    print(report)
    if args.json:
        print(json.dumps(figures, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
