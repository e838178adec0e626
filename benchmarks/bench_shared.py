"""Limits shared by several processes through PostgreSQL, checked by the emulator's counters.

Four worker processes poll never-finishing tasks every 0.2 s (demand far above the budget) with
one key against one emulator (its own process); mid-run the emulator answers everything 429
with a Retry-After twice. For each budget R:

- **shared**: every worker uses ``AsyncGPTunnel(limits=SharedLimits(dsn, requests_per_second=R,
  max_concurrency=C))``. The emulator must see at most 1.05·R requests in any 1 s, no request
  inside an announced Retry-After window, at most C in flight.
- **local (baseline)**: the same workers with their own ``requests_per_second=R`` each, as
  before shared limits: what N processes did to one key (≈ N·R per second, and requests inside
  the other workers' pauses).

It also reports the coordinator's cost: PostgreSQL round trips per request and their latency
(p50/p99), and the requests each run achieved (shared vs. a local gate of R/N per worker, which
needs no coordinator but cannot share a pause or lend unused budget).

    python benchmarks/bench_shared.py [--quick] [--rates 20,100,250] [--dsn postgresql://...]

The DSN defaults to ``GPTUNNEL_BENCH_POSTGRES_DSN`` or ``postgresql://postgres@127.0.0.1:5432/
postgres``; each run uses a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from common import (
    API_KEY,
    IMAGE_MODEL,
    EmulatorProcess,
    create_tasks,
    ctl,
    machine_note,
    mark,
    md_table,
    percentile,
)

from gptunnel_async.testing._counters import max_in_window

HERE = Path(__file__).resolve().parent
WORKERS = 4
PER_WORKER = 8  # each worker's own bound (its poller's workers and connections)
CONCURRENCY = WORKERS * PER_WORKER  # the shared bound: what the four had together before
GRACE = 0.05  # the emulator's Retry-After grace (EmulatorConfig.retry_after_grace)
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------------------------
# one worker process
# --------------------------------------------------------------------------------------------


class RequestLog:
    """What one worker did, on ``time.monotonic()`` (one clock for every process on a machine,
    the emulator's too): each request's ask, grant and send, when it learned of a pause and how,
    and when its own 429 reports reached PostgreSQL. Wraps the gate's methods; reads only."""

    def __init__(self, gate: Any) -> None:
        from gptunnel_async._polling.limits import current_slot
        from gptunnel_async._retry import RequestKind

        self.requests: list[list[float | None]] = []  # [asked, granted, sent]
        self.learned: list[tuple[float, str, float]] = []  # (when, how, seconds)
        self.recorded: list[tuple[float, float]] = []  # own pause report: (sent, answered)
        by_slot: dict[int, list[float | None]] = {}
        slot, before_send, note_pause = gate.slot, gate.before_send, gate._note_pause

        @asynccontextmanager
        async def logged_slot(kind: Any = RequestKind.READ) -> AsyncIterator[None]:
            asked = time.monotonic()
            async with slot(kind):
                rec: list[float | None] = [asked, time.monotonic(), None]
                self.requests.append(rec)
                key = id(current_slot())
                by_slot[key] = rec
                try:
                    yield
                finally:
                    by_slot.pop(key, None)

        async def logged_before_send(started: float) -> float:
            out: float = await before_send(started)  # (raises if the request must not go)
            rec = by_slot.get(id(current_slot()))
            if rec is not None:
                rec[2] = time.monotonic()
            return out

        def logged_note_pause(seconds: float) -> None:
            gen = gate._pause_gen
            note_pause(seconds)
            if gate._pause_gen != gen:
                how = sys._getframe(1).f_code.co_name
                self.learned.append((time.monotonic(), how, seconds))

        gate.slot, gate.before_send, gate._note_pause = (
            logged_slot,
            logged_before_send,
            logged_note_pause,
        )
        learn_in_thread = gate._learn_pause_in_thread

        def logged_learn_in_thread(seconds: float) -> None:
            learn_in_thread(seconds)
            how = sys._getframe(1).f_code.co_name  # NOTIFY read, or our own report answered
            self.learned.append((time.monotonic(), f"thread:{how}", seconds))

        gate._learn_pause_in_thread = logged_learn_in_thread
        conn = gate._pause_conn
        pause = conn.pause

        def logged_pause(*args: Any) -> float:
            sent = time.monotonic()
            out: float = pause(*args)
            self.recorded.append((sent, time.monotonic()))
            return out

        conn.pause = logged_pause

    def dump(self) -> dict[str, Any]:
        return {"requests": self.requests, "learned": self.learned, "recorded": self.recorded}


async def worker_main(args: argparse.Namespace) -> None:
    from gptunnel_async import AsyncGPTunnel, SharedLimits
    from gptunnel_async.poller import FixedIntervalPolicy, Poller, PollerOptions

    ids = json.loads(await anyio.Path(args.ids).read_text())
    limits = None
    local_rps: float | None = args.rps  # "local" and "split": each worker's own budget
    if args.mode == "shared":
        limits = SharedLimits(
            args.dsn,
            schema=args.schema,
            requests_per_second=args.rps,
            max_concurrency=CONCURRENCY,
        )
        local_rps = None
    client = AsyncGPTunnel(
        API_KEY, base_url=args.url, limits=limits, max_connections=PER_WORKER, max_retries=0
    )
    poller = Poller(
        client,
        PollerOptions(
            max_concurrency=PER_WORKER,
            requests_per_second=local_rps,
            policy=FixedIntervalPolicy(0.2),
            max_poll_failures=10_000,
        ),
    )
    async with client:
        log = RequestLog(client.shared_gate) if client.shared_gate is not None else None
        async with poller:
            await _work(args, poller, ids, log)


async def _work(args: argparse.Namespace, poller: Any, ids: list[str], log: Any) -> None:
    for task_id in ids:
        poller.add(task_id)
    print("ready", flush=True)
    await anyio.sleep(args.seconds)
    gate: Any = poller.gate
    out: dict[str, Any] = {"polls": poller.stats.polls, "gate": vars(gate.stats)}
    coordinator = getattr(gate, "coordinator", None)
    if coordinator is not None:
        lat = list(coordinator.latencies)
        out["round_trips"] = coordinator.round_trips
        out["late_grants"] = coordinator.late_grants + coordinator.late_sends
        out["rt_p50_ms"] = percentile(lat, 50) * 1000
        out["rt_p99_ms"] = percentile(lat, 99) * 1000
    if log is not None:
        out["log"] = log.dump()
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------
# which requests came inside a Retry-After window, and why
# --------------------------------------------------------------------------------------------


def violating_arrivals(arrivals: list[float], sent_429: list[Any], grace: float) -> list[float]:
    """The emulator's own rule (``Counters.on_request``) replayed on its timeline: an arrival
    more than ``grace`` after a 429 was sent and before that 429's Retry-After has passed."""
    pending = sorted((t, ra) for t, ra in sent_429 if ra is not None)
    out: list[float] = []
    banned_until = 0.0
    i = 0
    for a in sorted(arrivals):
        while i < len(pending) and pending[i][0] + grace <= a:
            banned_until = max(banned_until, pending[i][0] + pending[i][1])
            i += 1
        if a < banned_until:
            out.append(a)
    return out


def explain(timeline: dict[str, Any], outs: list[dict[str, Any]], grace: float) -> list[str]:
    """One line per violating request: which worker sent it, when (ms after the first 429 of
    its burst was sent), when it was granted, when that worker learned of the pause, and when
    the pause was first recorded in PostgreSQL."""
    firsts: list[float] = []
    for t, _ in sorted(timeline["sent_429"]):
        if not firsts or t - firsts[-1] > 1.0:
            firsts.append(t)
    recorded = sorted(r for o in outs for r in o["log"]["recorded"])
    # the k-th request sent (by any worker) is the k-th to arrive: loopback keeps the order
    sends = sorted(
        (rec[2], w, rec) for w, o in enumerate(outs) for rec in o["log"]["requests"] if rec[2]
    )
    arrivals = sorted(timeline["arrivals"])
    rank = {a: k for k, a in enumerate(arrivals)}
    lines = []
    for a in violating_arrivals(arrivals, timeline["sent_429"], grace):
        first = max((t for t in firsts if t <= a), default=a)
        pg = next(((s_, e) for s_, e in recorded if e >= first), None)
        got = min(
            (t for o in outs for t, how, _ in o["log"]["learned"] if how == "rate_limited"),
            key=lambda t: (t < first - 0.01, t),
            default=None,
        )
        if rank[a] >= len(sends):
            lines.append(f"  arrival +{(a - first) * 1e3:.0f} ms: no matching request")
            continue
        sent, w, rec = sends[rank[a]]
        learned = next(
            ((t, how) for t, how, _ in outs[w]["log"]["learned"] if t >= first - 0.01), None
        )

        def ms(t: float | None, first: float = first) -> str:
            return "-" if t is None else f"{(t - first) * 1e3:+.0f}"

        lines.append(
            f"  worker {w}: arrived {ms(a)} ms after the first 429 was sent; asked {ms(rec[0])},"
            f" granted {ms(rec[1])}, sent {ms(sent)}; worker learned of the pause "
            f"{ms(learned[0] if learned else None)} ({learned[1] if learned else '-'}); "
            f"a worker got the 429 {ms(got)}; "
            f"recorded in PG {ms(pg[0] if pg else None)}..{ms(pg[1] if pg else None)}"
        )
    return lines


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


def _spawn(mode: str, rps: float, url: str, dsn: str, schema: str, ids: Path, seconds: float):  # type: ignore[no-untyped-def]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--mode", mode]
    cmd += ["--rps", str(rps), "--url", url, "--dsn", dsn, "--schema", schema]
    cmd += ["--ids", str(ids), "--seconds", str(seconds)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent, env=env)


async def run_case(
    emu: EmulatorProcess, mode: str, rps: float, dsn: str, seconds: float, tmp: Path
) -> dict[str, Any]:
    url = emu.url
    schema = f"bench_{secrets.token_hex(4)}"
    n = int(max(200, 2 * WORKERS * rps))  # demand n / 0.2 s: far above any budget here
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as http:
        await ctl(http, url, "reset", seed=5)
        await ctl(http, url, "faults", never_finish_rate=1.0)
        ids = await create_tasks(http, url, n, prefix=f"s{rps:g}")
        files = []
        for w in range(WORKERS):
            f = tmp / f"ids-{w}.json"
            f.write_text(json.dumps(ids[w::WORKERS]))
            files.append(f)
        await ctl(http, url, "faults", latency=0.02)
        await ctl(http, url, "reset_counters")
        procs = [_spawn(mode, rps, url, dsn, schema, f, seconds) for f in files]
        try:
            for p in procs:  # every worker polling before the clock starts
                assert p.stdout is not None
                line = await anyio.to_thread.run_sync(p.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"a worker failed to start: {line!r}")
            t0 = time.monotonic()
            for at, duration, retry_after in [(0.35, 0.4, 1.0), (0.7, 0.3, 1.5)]:
                await anyio.sleep(max(0.0, t0 + at * seconds - time.monotonic()))
                await ctl(http, url, "faults", burst_429=[duration, retry_after])
            outs = []
            for p in procs:
                stdout, _ = await anyio.to_thread.run_sync(p.communicate)
                outs.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        counters = await ctl(http, url, "counters")
        timeline = await ctl(http, url, "timeline")
    if mode == "shared":
        await anyio.to_thread.run_sync(_drop_schema, dsn, schema)
    requests = sum(o["gate"]["requests"] for o in outs)
    result: dict[str, Any] = {
        "requests": counters["api_requests_total"],
        "busiest_second": counters["max_requests_in_window_1s"],
        "violations": counters["retry_after_violations"],
        "max_in_flight": counters["max_in_flight"],
        "sent_429": counters["sent_429"],
        "gate_requests": requests,
    }
    if mode == "shared":
        trips = sum(o["round_trips"] for o in outs)
        result["trips_per_request"] = trips / max(requests, 1)
        result["late_grants"] = sum(o["late_grants"] for o in outs)
        result["rt_p50_ms"] = max(o["rt_p50_ms"] for o in outs)
        result["rt_p99_ms"] = max(o["rt_p99_ms"] for o in outs)
        result["explained"] = explain(timeline, outs, GRACE)
        sent = sorted(rec[2] for o in outs for rec in o["log"]["requests"] if rec[2])
        result["busiest_sent"] = max_in_window(sent, 1.0)
    return result


# --------------------------------------------------------------------------------------------
# the coordinator's cost, beside the SQLite journal's (one process, same run)
# --------------------------------------------------------------------------------------------


async def cost_creates(url: str, dsn: str, mode: str, n: int, tmp: Path) -> dict[str, Any]:
    """``n`` creates, 8 at a time: with no limits and the SQLite journal's writes around each
    (claim, on the wire, created: what a batch writes), or with shared limits and no journal."""
    from gptunnel_async import AsyncGPTunnel, SharedLimits
    from gptunnel_async.stores.sqlite import SQLiteJournal

    schema = f"bench_{secrets.token_hex(4)}"
    limits = SharedLimits(dsn, schema=schema, max_concurrency=CONCURRENCY)
    create_s: list[float] = []
    journal_s: list[float] = []  # each create's three writes together
    write_s: list[float] = []  # each write
    journal = SQLiteJournal(str(tmp / f"cost-{secrets.token_hex(4)}.sqlite"))
    async with AsyncGPTunnel(
        API_KEY, base_url=url, limits=limits if mode == "shared" else None, max_retries=0
    ) as client:
        if mode == "journal":
            await journal.acquire()
        cpu = time.process_time()
        wall = time.perf_counter()

        async def creator(k: int) -> None:
            for i in range(k, n, 8):
                key, body = f"k{i}", {"model": IMAGE_MODEL, "prompt": f"cost {i}"}
                t0 = time.perf_counter()
                if mode == "journal":
                    await journal.claim(key, i, body)
                    write_s.append(time.perf_counter() - t0)
                    await journal.mark_on_wire(key)
                    write_s.append(time.perf_counter() - t0 - write_s[-1])
                t1 = time.perf_counter()
                task = await client.media.create(**body)
                t2 = time.perf_counter()
                if mode == "journal":
                    await journal.record(key, "created", task_id=task.id, kind=task.poll_kind)
                    write_s.append(time.perf_counter() - t2)
                journal_s.append(t1 - t0 + time.perf_counter() - t2)
                create_s.append(t2 - t1)

        async with anyio.create_task_group() as tg:
            for k in range(8):
                tg.start_soon(creator, k)
        out: dict[str, Any] = {
            "per_create_ms": (time.perf_counter() - wall) / n * 1e3,
            "cpu_ms": (time.process_time() - cpu) / n * 1e3,
            "create_p50": percentile(create_s, 50) * 1e3,
            "create_p99": percentile(create_s, 99) * 1e3,
        }
        if mode == "journal":
            await journal.aclose()
            out["writes"] = len(write_s) / n
            out["rt_p50"] = percentile(write_s, 50) * 1e3
            out["rt_p99"] = percentile(write_s, 99) * 1e3
            out["ms_per_create"] = sum(journal_s) / n * 1e3
        gate: Any = client.shared_gate
        if gate is not None:
            c = gate.coordinator
            lat = list(c.latencies)
            out["writes"] = (c.round_trips + c.pause_reports) / n
            out["rt_p50"] = percentile(lat, 50) * 1e3
            out["rt_p99"] = percentile(lat, 99) * 1e3
            out["ms_per_create"] = sum(lat) / n * 1e3
    if mode == "shared":
        await anyio.to_thread.run_sync(_drop_schema, dsn, schema)
    return out


async def cost_polls(url: str, dsn: str, mode: str, ids: list[str], rps: float) -> dict[str, Any]:
    """One process polling ``ids`` (never finishing) within ``rps``: a local gate, or shared."""
    from gptunnel_async import AsyncGPTunnel, SharedLimits
    from gptunnel_async.poller import FixedIntervalPolicy, Poller, PollerOptions

    schema = f"bench_{secrets.token_hex(4)}"
    shared = mode == "shared"
    limits = SharedLimits(dsn, schema=schema, requests_per_second=rps, max_concurrency=CONCURRENCY)
    client = AsyncGPTunnel(
        API_KEY, base_url=url, limits=limits if shared else None, max_connections=PER_WORKER
    )
    options = PollerOptions(
        max_concurrency=PER_WORKER,
        requests_per_second=None if shared else rps,
        policy=FixedIntervalPolicy(0.2),
        max_poll_failures=10_000,
    )
    async with client, Poller(client, options) as poller:
        for task_id in ids:
            poller.add(task_id)
        await anyio.sleep(1.0)  # warmed up
        polls, cpu = poller.stats.polls, time.process_time()
        gate: Any = poller.gate
        trips = gate.coordinator.round_trips if shared else 0
        seen = len(gate.coordinator.latencies) if shared else 0
        await anyio.sleep(6.0)
        polls = poller.stats.polls - polls
        out: dict[str, Any] = {"polls": polls, "cpu_us": (time.process_time() - cpu) / polls * 1e6}
        if shared:
            lat = list(gate.coordinator.latencies)[seen:]
            out["writes"] = (gate.coordinator.round_trips - trips) / polls
            out["rt_p50"] = percentile(lat, 50) * 1e3
            out["rt_p99"] = percentile(lat, 99) * 1e3
    if shared:
        await anyio.to_thread.run_sync(_drop_schema, dsn, schema)
    return out


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def cost_section(emu: EmulatorProcess, dsn: str, quick: bool, tmp: Path) -> str:
    n = 200 if quick else 600
    rps = 200.0
    async with httpx.AsyncClient() as http:
        await ctl(http, emu.url, "reset", seed=7)
        await ctl(http, emu.url, "faults", never_finish_rate=1.0)
        journal = await cost_creates(emu.url, dsn, "journal", n, tmp)
        shared = await cost_creates(emu.url, dsn, "shared", n, tmp)
        ids = await create_tasks(http, emu.url, 1000, prefix="cost")
        local_polls = await cost_polls(emu.url, dsn, "local", ids, rps)
        shared_polls = await cost_polls(emu.url, dsn, "shared", ids, rps)
    j, sh, lp, sp = journal, shared, local_polls, shared_polls
    rows = [
        [
            f"create ({n}, 8 at a time)",
            "SQLite journal (claim, on the wire, created)",
            f"{j['writes']:.2f}",
            f"{j['rt_p50']:.2f} / {j['rt_p99']:.2f}",
            f"{j['ms_per_create']:.2f}",
            f"{j['create_p50']:.1f} / {j['create_p99']:.1f}",
            "1.00",
        ],
        [
            "",
            "shared limits (PostgreSQL), no journal",
            f"{sh['writes']:.2f}",
            f"{sh['rt_p50']:.2f} / {sh['rt_p99']:.2f}",
            f"{sh['ms_per_create']:.2f}",
            f"{sh['create_p50']:.1f} / {sh['create_p99']:.1f}",
            f"{sh['ms_per_create'] / j['ms_per_create']:.2f}",
        ],
        [
            f"poll (1000 tasks, R={rps:g})",
            "local gate",
            "0",
            "-",
            f"CPU {lp['cpu_us']:.0f} µs/poll",
            f"{lp['polls'] / 6:.0f} polls/s",
            "1.00",
        ],
        [
            "",
            "shared limits (PostgreSQL)",
            f"{sp['writes']:.2f}",
            f"{sp['rt_p50']:.2f} / {sp['rt_p99']:.2f}",
            f"CPU {sp['cpu_us']:.0f} µs/poll",
            f"{sp['polls'] / 6:.0f} polls/s",
            f"{sp['cpu_us'] / lp['cpu_us']:.2f}",
        ],
    ]
    table = md_table(
        [
            "operation",
            "coordination",
            "round trips (writes) per op",
            "each: p50 / p99 ms",
            "coordination ms per op (sum) / CPU per poll",
            "op latency p50 / p99 ms (or rate)",
            "ratio (vs the row above)",
        ],
        rows,
    )
    head = "### Cost of the coordinator, beside the SQLite journal (one process, same run)\n"
    return "\n".join([head, machine_note() + "\n", table])


async def main_async(args: argparse.Namespace) -> str:
    seconds = 5.0 if args.quick else 12.0
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    checks = []
    ok_all = True
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_shared_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    cost = ""
    with EmulatorProcess(time_scale=1.0) as emu:
        if args.only in ("", "cost"):
            cost = await cost_section(emu, args.dsn, args.quick, tmp)
            print(cost, flush=True)
            if args.only == "cost":
                return cost
        for rps in rates:
            for mode, label in [
                ("shared", "shared R"),
                ("split", f"local R/{WORKERS} each (no coordinator)"),
                ("local", "local R each (before)"),
            ]:
                if mode not in args.modes.split(","):
                    continue
                if mode != "shared" and args.quick and rps != rates[0]:
                    continue
                worker_rps = rps / WORKERS if mode == "split" else rps
                r = await run_case(emu, mode, worker_rps, args.dsn, seconds, tmp)
                busiest = r["busiest_second"]
                ok_r = busiest <= 1.05 * rps
                ok_v = r["violations"] == 0
                ok_c = r["max_in_flight"] <= CONCURRENCY
                ok = ok_r and ok_v and ok_c
                if mode == "shared":
                    ok_all = ok_all and ok
                rows.append(
                    [
                        f"{rps:g}",
                        label,
                        r["requests"],
                        f"{r['requests'] / seconds:.0f}",
                        busiest,
                        f"{1.05 * rps:g}",
                        r["violations"],
                        r["max_in_flight"],
                        r["sent_429"],
                        f"{r['trips_per_request']:.2f}" if mode == "shared" else "-",
                        f"{r['rt_p50_ms']:.1f} / {r['rt_p99_ms']:.1f}" if mode == "shared" else "-",
                        mark(ok)
                        if mode == "shared"
                        else ("(expected to fail)" if not ok else mark(ok)),
                    ]
                )
                checks.append(
                    f"- R={rps:g} {label}: busiest second {busiest} (≤ {1.05 * rps:g} "
                    f"{mark(ok_r)}), Retry-After violations {r['violations']} {mark(ok_v)}, "
                    f"max in flight {r['max_in_flight']} ≤ {CONCURRENCY} {mark(ok_c)}"
                    + (
                        f"; grants re-timed (late) {r['late_grants']}; busiest 1 s by the "
                        f"workers' send times {r['busiest_sent']}"
                        if mode == "shared"
                        else ""
                    )
                )
                print(checks[-1], flush=True)
                for line in r.get("explained", []):
                    print(line, flush=True)
    table = md_table(
        [
            "R",
            "limits",
            "API requests",
            "req/s",
            "busiest 1 s (emulator)",
            "≤ 1.05 R",
            "Retry-After violations",
            "max in flight",
            "429s sent",
            "PG round trips / request",
            "round trip p50 / p99 ms",
            "result",
        ],
        rows,
    )
    head = (
        f"### Shared limits: {WORKERS} processes, one key, C={CONCURRENCY} "
        f"({seconds:g} s per case, two 429 bursts)\n"
    )
    verdict = "every shared case held its bounds" if ok_all else "a shared case broke a bound"
    parts = [head, machine_note() + "\n", table, "", *checks, "", f"**{verdict}**"]
    return "\n\n".join([cost, "\n".join(parts)]) if cost else "\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rates", default="20,100,250")
    p.add_argument("--only", default="", choices=["", "cost", "limits"], help="one part")
    p.add_argument("--modes", default="shared,split,local", help="which cases to run")
    p.add_argument("--dsn", default=os.environ.get("GPTUNNEL_BENCH_POSTGRES_DSN", DEFAULT_DSN))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="shared", help=argparse.SUPPRESS)
    p.add_argument("--rps", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--schema", help=argparse.SUPPRESS)
    p.add_argument("--ids", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        anyio.run(worker_main, args)
        return
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
