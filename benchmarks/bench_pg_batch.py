"""Work shared: 4 worker processes on one PostgreSQL batch against 1 worker on the same batch.

Each worker is the real command a user runs on each machine, ``gptunnel batch prompts.txt -o
OUT_k --journal postgresql://... --batch NAME`` (a subprocess each; the emulator in a process
of its own): what is measured is what users get, process start, journal, downloads and the
wait for the other workers at the end included, with nothing of the benchmark inside the
workers. Every case is a fresh batch of the same prompts, in the same run, against the same
emulator (reset between cases).

The setting. The machine has 2 cores, so 4 workers can only beat 1 if one worker is bound by
something other than CPU. Against the real API it is: answers take hundreds of ms, and a
worker keeps at most ``--concurrency`` requests in flight, so one worker does at most
C / latency requests per second whatever its CPU. Here every API answer of the emulator is
delayed by ``LATENCY`` (0.2 s) and each worker has ``-c 8``: one worker is capped near 40
requests/s and uses a fraction of a core for them (the CPU each case used is reported, with
how busy the whole machine was). Tasks are short, 3-6 s, in real time (time scale 1): the
emulator's latency is real seconds, so a compressed clock would make the answers as slow as the
tasks are short (0.2 s at time scale 10 is 2 s of a task's time), and the polling schedule
would chase that instead of the tasks.

Every worker starts from the polling schedule an untimed warm-up batch (300 other prompts)
learned, as workers that have run before do (``--cold``: each learns alone, and 4 workers,
each learning from a quarter of the tasks, poll more per task than 1).

- **budget large enough**: no rate limit; 4 workers must finish in <= 0.35x the wall time of 1.
- **small shared budget**: ``--limits postgresql://... --rps R -c 16`` (one budget for every
  process using the key: R requests/s and 16 in flight in all, more than the 6 that R = 30 at
  0.2 s keeps in flight, so the rate is what binds), R below what one worker does
  alone (checked against the large-budget case); 4 workers must be no slower than 1 (<= 1.05x:
  run-to-run noise) and the emulator's busiest second within 1.05 R.

Every case also checks the batch's exactly-once: the emulator saw one create per prompt and
one download per file; the journal, exported with ``gptunnel manifest`` (as any machine
would), has every request saved once, each file on disk in the folder of the worker whose
pid the journal names; the workers' own manifests together list every request once.

    python benchmarks/bench_pg_batch.py [--quick] [--tasks 2000] [--rps 30] [--dsn URL]

``--quick``: 200 tasks (~2 min), a smoke run: its ratios mean nothing (process start and the
last tasks' 3-6 s dominate it). The DSN (default ``GPTUNNEL_BENCH_POSTGRES_DSN`` or
``postgresql://postgres@127.0.0.1:5432/postgres``) is a server where a database can be created:
the run makes its own and drops it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
from common import API_KEY, IMAGE_MODEL, EmulatorProcess, ctl, machine_note, mark, md_table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
WORKERS = 4
PER_WORKER = 8  # -c: each worker's own concurrency bound
# -c with --limits: one bound for all the processes. Over twice R x latency, so that the rate
# is the budget that binds, not the shared concurrency (a lease is held a round trip longer).
SHARED_CONCURRENCY = 16
LATENCY = 0.2  # s added to every API answer (the real API's take hundreds of ms)
TIME_SCALE = 1.0
DURATION = (3.0, 6.0)  # seconds, log-uniform
FAST_ENOUGH = 0.35  # 4 workers / 1 worker, large budget
NO_SLOWER = 1.05  # 4 workers / 1 worker, small shared budget
MEDIA_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".mp4", ".mp3", ".wav", ".gif")


# --------------------------------------------------------------------------------------------
# machine and database
# --------------------------------------------------------------------------------------------


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine so far (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def with_dbname(dsn: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(dsn), "dbname": name})


class Database:
    """A database of this run's own on the server at ``dsn``, dropped at the end."""

    def __init__(self, dsn: str) -> None:
        self.server = dsn
        self.name = f"bench_pg_batch_{os.getpid()}_{secrets.token_hex(3)}"
        self.dsn = with_dbname(dsn, self.name)

    def __enter__(self) -> Database:
        import psycopg

        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# one case: N workers on one fresh batch
# --------------------------------------------------------------------------------------------


def bench_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPTUNNEL_API_KEY": API_KEY}
    env.pop("GPTUNNEL_LIMITS", None)
    return env


def gptunnel(*args: str) -> list[str]:
    return [sys.executable, "-m", "gptunnel_async.cli", *args]


def worker_command(
    url: str, prompts: Path, out: Path, dsn: str, batch: str, rps: float | None, shared_c: int
) -> list[str]:
    cmd = gptunnel("--base-url", url, "--clock-scale", f"{TIME_SCALE:g}", "batch", str(prompts))
    concurrency = PER_WORKER if rps is None else shared_c
    cmd += ["-o", str(out), "-m", IMAGE_MODEL, "--no-progress", "-c", str(concurrency)]
    cmd += ["--journal", dsn, "--batch", batch]
    if rps is not None:  # one budget for all, R/s and C in flight, through PostgreSQL
        cmd += ["--rps", f"{rps:g}", "--limits", dsn]
    return cmd


WARM_UP = 300  # tasks of the untimed batch whose learned schedule every worker starts from
POLL_STATE = ".gptunnel-poll-state.json"  # what `gptunnel batch` learned, in its -o folder


async def warm_up(emu: EmulatorProcess, tmp: Path, env: dict[str, str]) -> Path:
    """One untimed batch (other prompts, a journal file): its learned polling schedule, which
    every timed worker then starts from, as workers that have run before do. Cold, each of 4
    workers would learn alone from a quarter of the tasks (more polls than 1 worker), and the
    figure would mix that into the sharing of the work."""
    async with httpx.AsyncClient() as http:
        await ctl(http, emu.url, "reset", seed=3, durations={IMAGE_MODEL: list(DURATION)})
        await ctl(http, emu.url, "faults", latency=LATENCY)
    prompts = tmp / "warm.txt"
    prompts.write_text("".join(f"warm-up prompt {i}\n" for i in range(WARM_UP)), "utf-8")
    out = tmp / "warm"
    cmd = gptunnel("--base-url", emu.url, "--clock-scale", f"{TIME_SCALE:g}", "batch", str(prompts))
    cmd += ["-o", str(out), "-m", IMAGE_MODEL, "--no-progress", "-c", str(PER_WORKER)]
    done = await anyio.run_process(cmd, env=env, check=False)
    state = out / POLL_STATE
    if done.returncode or not state.is_file():
        raise RuntimeError(f"the warm-up batch failed: {done.stderr.decode()[-600:]}")
    return state


async def run_case(
    emu: EmulatorProcess, db: Database, prompts: Path, n: int, workers: int,
    rps: float | None, shared_c: int, warm: Path | None, tmp: Path,
) -> dict[str, Any]:  # fmt: skip
    url = emu.url
    label = f"{workers}w-{'rps' if rps else 'free'}"
    batch = f"bench-{label}-{secrets.token_hex(3)}"
    case_dir = tmp / label
    env = bench_env()
    async with httpx.AsyncClient() as http:
        await ctl(http, url, "reset", seed=7, durations={IMAGE_MODEL: list(DURATION)})
        await ctl(http, url, "faults", latency=LATENCY)
        folders = [case_dir / f"w{k}" for k in range(workers)]
        logs = [case_dir / f"w{k}.log" for k in range(workers)]
        case_dir.mkdir(parents=True)
        for folder in folders:
            folder.mkdir()
            if warm is not None:
                shutil.copy(warm, folder / POLL_STATE)
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        emu_cpu0 = emu.cpu_seconds()
        busy0 = busy_jiffies()
        t0 = time.monotonic()
        procs: list[Any] = []
        ends: list[float] = []

        async def wait(proc: Any) -> None:
            await proc.wait()
            ends.append(time.monotonic() - t0)

        try:
            async with anyio.create_task_group() as tg:
                for folder, log in zip(folders, logs, strict=True):
                    with log.open("w") as err:
                        cmd = worker_command(url, prompts, folder, db.dsn, batch, rps, shared_c)
                        proc = await anyio.open_process(
                            cmd, stdout=subprocess.DEVNULL, stderr=err, env=env
                        )
                    procs.append(proc)
                    tg.start_soon(wait, proc)
        finally:
            for proc in procs:  # only if something above failed
                if proc.returncode is None:
                    proc.kill()
                    with anyio.CancelScope(shield=True):
                        await proc.wait()
        wall = max(ends)
        busy1 = busy_jiffies()
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        emu_cpu = emu.cpu_seconds() - emu_cpu0
        counters = await ctl(http, url, "counters", prompts=True)
    codes = [p.returncode for p in procs]
    if any(codes):
        tails = [log.read_text()[-600:] for log in logs]
        raise RuntimeError(f"{label}: workers exited {codes}:\n" + "\n".join(tails))
    folder_of_pid = {p.pid: folder for p, folder in zip(procs, folders, strict=True)}
    journal = check_journal(db.dsn, batch, n, folder_of_pid, case_dir, env)
    creates = counters["creates_by_prompt"] or {}
    routes = counters["requests_by_route"]
    polls = sum(v for k, v in routes.items() if "/result" in k)
    own_lines = Counter()
    for folder in folders:
        text = (folder / "manifest.jsonl").read_text("utf-8")
        own_lines.update(json.loads(line)["index"] for line in text.splitlines())
    on_disk = [f for folder in folders for f in folder.iterdir() if f.suffix in MEDIA_SUFFIXES]
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    worker_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    shutil.rmtree(case_dir, ignore_errors=True)
    return {
        "label": label,
        "workers": workers,
        "rps": rps,
        "wall": wall,
        "ends": sorted(ends),
        "creates_total": counters["creates_total"],
        "prompts_created": len(creates),
        "most_creates_per_prompt": max(creates.values(), default=0),
        "downloads": routes.get("GET /files", 0),
        "files_on_disk": len(on_disk),
        "distinct_files": len({f.name for f in on_disk}),
        "manifests_cover_once": sorted(own_lines) == list(range(n))
        and set(own_lines.values()) == {1},
        "api_requests": counters["api_requests_total"],
        "polls_per_task": polls / n,
        "routes": routes,
        "busiest_second": counters["max_requests_in_window_1s"],
        "max_in_flight": counters["max_in_flight"],
        "worker_cpu": worker_cpu,
        "emulator_cpu": emu_cpu,
        "machine_busy": busy,
        **journal,
    }


def check_journal(
    dsn: str, batch: str, n: int, folder_of_pid: dict[int, Path], case_dir: Path,
    env: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """The batch's manifest exported from the journal with ``gptunnel manifest``, checked."""
    out = case_dir / "journal.jsonl"
    cmd = gptunnel("manifest", "--journal", dsn, "--batch", batch, "-o", str(out))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"gptunnel manifest failed: {done.stderr.strip()}")
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    saved = [line for line in lines if line["state"] == "saved"]
    in_own_folder = 0
    per_worker: Counter[int] = Counter()
    for line in saved:
        pid = int(line["worker"].split(":")[-2])  # host:pid:nonce
        per_worker[pid] += 1
        path = Path(line["file"])
        if path.is_file() and path.parent == folder_of_pid.get(pid):
            in_own_folder += 1
    return {
        "journal_rows": len(lines),
        "journal_indexes_once": [line["index"] for line in lines] == list(range(n)),
        "journal_saved": len(saved),
        "journal_distinct_files": len({line["file"] for line in saved}),
        "saved_in_savers_folder": in_own_folder,
        "saved_per_worker": sorted(per_worker.values(), reverse=True),
    }


def exactly_once(r: dict[str, Any], n: int) -> bool:
    return (
        r["creates_total"] == n == r["prompts_created"]
        and r["most_creates_per_prompt"] == 1
        and r["downloads"] == n == r["files_on_disk"] == r["distinct_files"]
        and r["journal_rows"] == n == r["journal_saved"] == r["journal_distinct_files"]
        and r["journal_indexes_once"]
        and r["saved_in_savers_folder"] == n
        and r["manifests_cover_once"]
    )


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> str:
    n = args.tasks or (200 if args.quick else 2000)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pg_batch_"))
    prompts = tmp / "prompts.txt"
    prompts.write_text("".join(f"bench prompt {i}\n" for i in range(n)), encoding="utf-8")
    results: dict[tuple[int, float | None], dict[str, Any]] = {}
    note = machine_note()
    try:
        with Database(args.dsn) as db, EmulatorProcess(time_scale=TIME_SCALE, seed=7) as emu:
            warm = None if args.cold else await warm_up(emu, tmp, bench_env())
            for rps in (None, args.rps):
                for workers in (1, WORKERS):
                    if args.cases and f"{workers}{'rps' if rps else 'free'}" not in args.cases:
                        continue
                    r = await run_case(emu, db, prompts, n, workers, rps, args.shared_c, warm, tmp)
                    results[workers, rps] = r
                    print(
                        f"- {r['label']}: {r['wall']:.1f} s, {r['api_requests']} API requests "
                        f"({r['api_requests'] / r['wall']:.1f}/s, {r['polls_per_task']:.2f} polls "
                        f"per task), exactly once "
                        f"{mark(exactly_once(r, n))}, saved per worker {r['saved_per_worker']}, "
                        f"cores used {(r['worker_cpu'] + r['emulator_cpu']) / r['wall']:.2f}, "
                        f"machine busy {100 * r['machine_busy']:.0f} %",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.cases:
        return "(--cases: no verdict)"
    return report(results, n, args.rps, args.shared_c, note)


def report(results: dict[tuple[int, float | None], dict[str, Any]], n: int, rps: float,
           shared_c: int, note: str) -> str:  # fmt: skip
    rows = []
    for (workers, budget), r in results.items():
        rows.append(
            [
                "none" if budget is None else f"{budget:g} req/s shared",
                workers,
                f"{r['wall']:.1f}",
                " / ".join(f"{t:.1f}" for t in r["ends"]),
                r["api_requests"],
                f"{r['api_requests'] / r['wall']:.1f}",
                r["busiest_second"],
                r["max_in_flight"],
                f"{r['polls_per_task']:.2f}",
                "/".join(str(k) for k in r["saved_per_worker"]),
                f"{r['worker_cpu']:.1f}",
                f"{r['emulator_cpu']:.1f}",
                f"{(r['worker_cpu'] + r['emulator_cpu']) / r['wall']:.2f}",
                f"{100 * r['machine_busy']:.0f} %",
                f"{r['prompts_created']}×{r['most_creates_per_prompt']}",
                f"{r['downloads']} / {r['files_on_disk']}",
                mark(exactly_once(r, n)),
            ]
        )
    table = md_table(
        [
            "budget", "workers", "wall s", "each worker's exit s", "API requests", "req/s",
            "busiest 1 s", "max in flight", "polls / task", "saved per worker",
            "workers' CPU s", "emulator CPU s", "cores used (workers + emulator)",
            "machine busy (all processes)", "prompts created × max",
            "downloads / files", "exactly once",
        ],
        rows,
    )  # fmt: skip
    free = results[WORKERS, None]["wall"] / results[1, None]["wall"]
    small = results[WORKERS, rps]["wall"] / results[1, rps]["wall"]
    busiest = max(results[w, rps]["busiest_second"] for w in (1, WORKERS))
    once = all(exactly_once(r, n) for r in results.values())
    alone = results[1, None]["api_requests"] / results[1, None]["wall"]
    checks = [
        f"- budget large enough: {WORKERS} workers / 1 worker = {free:.2f} "
        f"(≤ {FAST_ENOUGH}) {mark(free <= FAST_ENOUGH)}",
        f"- small shared budget ({rps:g} req/s): {WORKERS} workers / 1 worker = {small:.2f} "
        f"(≤ {NO_SLOWER}) {mark(small <= NO_SLOWER)}; busiest second {busiest} "
        f"(≤ {1.05 * rps:g}) {mark(busiest <= 1.05 * rps)}; the budget binds: {rps:g} req/s "
        f"< {alone:.1f} req/s, what 1 worker did alone {mark(rps < alone)}",
        f"- every case: each prompt created once, each file downloaded and saved once, the "
        f"journal's {n} rows saved once each in the saver's folder {mark(once)}",
    ]
    head = (
        f"### Work shared: {n} tasks, 1 vs {WORKERS} `gptunnel batch` workers on one "
        f"PostgreSQL batch\n\nEach worker `-c {PER_WORKER}` (small budget: `--limits --rps "
        f"{rps:g} -c {shared_c}`, shared); every API answer delayed {LATENCY:g} s; tasks "
        f"{DURATION[0]:g}-{DURATION[1]:g} s at time scale {TIME_SCALE:g}.\n"
    )
    return "\n".join([head, note + "\n", table, "", *checks])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--rps", type=float, default=30.0, help="the small shared budget")
    p.add_argument(
        "--shared-c", type=int, default=SHARED_CONCURRENCY, help="-c with --limits (shared)"
    )
    p.add_argument("--cold", action="store_true", help="no warm-up: every worker learns alone")
    p.add_argument("--dsn", default=os.environ.get("GPTUNNEL_BENCH_POSTGRES_DSN", DEFAULT_DSN))
    p.add_argument("--cases", type=lambda t: t.split(","), help="e.g. 1free,4rps (no verdict)")
    args = p.parse_args()
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
