"""Exactly once under kills, on one PostgreSQL batch: 4 workers, SIGKILL one every few seconds.

``python reliability/pg_kill_campaign.py [--quick] [--prompts N] [--seed S] [--dsn DSN]
[--no-outage]``

Four ``gptunnel batch prompts.txt -o wN --journal postgresql://... --batch NAME`` processes
(the real command, each with its own output folder) work one batch in a database made for the
run (dropped after). Every few seconds a random live worker is SIGKILLed (its own pid) and
started again, into the same folder, after a short pause, until the batch's rows are all
final; ``--quick`` also kills at least once per 13th of the batch saved, so a fast machine,
which saves it in fewer kill intervals, is not spared. The emulator runs in its own process
(``_emulator.py``'s campaign emulator, plus a log of every result poll) with 429 bursts about
every second, and 5xx answers and dropped connections on polls and downloads; creates meet
only the bursts and latency, so every "outcome unknown" must come from a kill. Once, mid-run,
the database goes away for a few seconds (``ALLOW_CONNECTIONS false`` and
``pg_terminate_backend`` of every session of the workers), then comes back.

A trigger the campaign adds to the journal table records every change of every row (state,
owner, server time), so the audit knows, for each kill, exactly which rows the killed worker
held (its owner id carries its pid) and when another worker took each over. Audit:

- every prompt created at most once (the emulator's ``creates_by_prompt``); the rows the killed
  worker held ``sending`` are its creates on the wire at the kill: they are exactly the rows
  reported ``unknown`` (split: arrived at the server / never arrived); every other prompt was
  created exactly once and is ``saved`` exactly once: one whole file under its task id across
  all folders, at the path the journal records;
- no ``.part`` left in any folder, and the batch's rows are all final at the end;
- takeover: for each row the killed worker held unfinished, the time from the kill until
  another worker owned it (journal), and for created tasks until their first poll by the new
  owner (emulator), p50/p99/max;
- the outage: no create reached the server that was not marked ``sending`` before the
  database went away; polls during it counted; nothing created twice.

Every loop is bounded (kills, a whole-run timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability._common import check_files, machine_note, mark, md_table  # noqa: E402
from reliability._emulator import API_KEY, CampaignEmulator  # noqa: E402
from reliability._emulator import EmulatorProcess as CampaignEmulatorProcess  # noqa: E402
from reliability.kill_campaign import _bursts  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN_ENV = "GPTUNNEL_TEST_POSTGRES_DSN"
SCHEMA = "gptunnel"  # the CLI's journal schema
RESULT_PATH = "/v1/media/result"
UNFINISHED = ("claimed", "sending", "created", "done")  # done: the file is not saved yet
FINAL = ("saved", "failed", "unknown", "rejected")
UNKNOWN = "CreateOutcomeUnknownError"


@dataclass
class Settings:
    prompts: int = 2000
    workers: int = 4
    seed: int = 1
    time_scale: float = 20.0  # images take 0.25..3 s
    kill_every: tuple[float, float] = (2.0, 5.0)  # seconds between two kills
    restart_after: tuple[float, float] = (0.5, 3.0)  # a killed worker is started again after
    max_kills: int = 400
    min_kills: int = 0  # ... and at least one each time another 1/(min_kills + 1) is saved
    concurrency: int = 8
    max_pending: int = 40
    timeout: float = 1800.0  # the whole run (a loaded 2-core machine is slow)
    outage_after: float | None = 0.35  # share of the batch saved when the database goes away
    outage_seconds: float = 3.0
    bursts: bool = True  # 429 bursts about every second (each pauses a worker's whole gate)
    dsn: str = field(default_factory=lambda: os.environ.get(DSN_ENV) or DEFAULT_DSN)
    faults: dict[str, Any] = field(
        default_factory=lambda: {
            "faulty_creates": False,  # a 5xx/dropped create is "unknown" by design: kills only
            "error_rate": 0.06,
            "drop_rate": 0.02,
            "include_files": True,
            "slow_rate": 0.05,
            "slow_delay": 0.5,
            "latency": [0.005, 0.04],
        }
    )


def quick_settings() -> Settings:
    """The CI size: 160 prompts, a kill every 1-2.5 s and at least 12 whatever the machine's
    speed (a fast one saves the batch in less than 12 kill intervals), one short outage."""
    return Settings(
        prompts=160, kill_every=(1.0, 2.5), restart_after=(0.3, 1.5), timeout=240.0,
        outage_seconds=2.0, min_kills=12,
    )  # fmt: skip


# -- the emulator, with a log of every result poll ----------------------------------------------


def _task_id(request: Any) -> str | None:
    for k in ("task_id", "taskId", "id"):
        if k in request.query:
            return str(request.query[k])
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    if isinstance(body, dict):
        for k in ("task_id", "taskId", "id"):
            if isinstance(body.get(k), str):
                return str(body[k])
    return None


class PollLogEmulator(CampaignEmulator):
    """The campaign emulator, plus the arrival time (monotonic) of every result poll by task."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.poll_log: dict[str, list[float]] = defaultdict(list)

    async def handle(self, request: Any) -> Any:
        if request.path.rstrip("/") == RESULT_PATH:
            task_id = _task_id(request)
            if task_id is not None:
                self.poll_log[task_id].append(time.monotonic())
        return await super().handle(request)

    def control(self, op: str, body: dict[str, Any]) -> Any:
        if op == "poll_log":
            return self.poll_log
        if op == "reset":
            self.poll_log.clear()
        return super().control(op, body)


def _serve_main(argv: list[str]) -> int:
    from gptunnel_async.testing import EmulatorConfig, serve_forever

    p = argparse.ArgumentParser()
    p.add_argument("--time-scale", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    config = EmulatorConfig(api_keys={API_KEY}, time_scale=args.time_scale, seed=args.seed)
    serve_forever(PollLogEmulator(config))
    return 0


class EmulatorProcess(CampaignEmulatorProcess):
    """The poll-logging emulator in its own process (same control route as ``_emulator.py``)."""

    def __init__(self, *, time_scale: float, seed: int) -> None:
        super().__init__(time_scale=time_scale, seed=seed)
        self.command = [sys.executable, str(Path(__file__).resolve()), "--serve-emulator"]
        self.command += ["--time-scale", str(time_scale), "--seed", str(seed)]


# -- the database -------------------------------------------------------------------------------

HISTORY_SQL = f"""
CREATE TABLE {SCHEMA}.journal_history (
    n bigserial PRIMARY KEY,
    at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    key text NOT NULL, idx integer, state text, owner text, task_id text, path text,
    old_state text, old_owner text
);
CREATE FUNCTION {SCHEMA}.journal_history_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {SCHEMA}.journal_history (key, idx, state, owner, task_id, path)
            VALUES (NEW.key, NEW.idx, NEW.state, NEW.owner, NEW.task_id, NEW.path);
    ELSIF NEW.state IS DISTINCT FROM OLD.state OR NEW.owner IS DISTINCT FROM OLD.owner THEN
        INSERT INTO {SCHEMA}.journal_history
            (key, idx, state, owner, task_id, path, old_state, old_owner)
            VALUES (NEW.key, NEW.idx, NEW.state, NEW.owner, NEW.task_id, NEW.path,
                    OLD.state, OLD.owner);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_history AFTER INSERT OR UPDATE ON {SCHEMA}.journal
    FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.journal_history_log();
"""


@contextmanager
def database(server_dsn: str) -> Iterator[tuple[str, str]]:
    """A database made for this run (its DSN and name), dropped at the end."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"gptunnel_pgkill_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params), name
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def install(dsn: str, batch: str) -> None:
    """The journal's schema (as the workers would make it), and the history trigger."""
    import anyio
    import psycopg

    from gptunnel_async.stores.postgres import PostgresJournal

    async def make() -> None:
        journal = PostgresJournal(dsn, batch, schema=SCHEMA)
        await journal.acquire()
        await journal.aclose()

    anyio.run(make)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(HISTORY_SQL)


def _progress(dsn: str, batch: str) -> tuple[int, int, int]:
    """(rows, unfinished rows, saved rows) of the batch."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE state = ANY(%s)),"
            f" count(*) FILTER (WHERE state = 'saved') FROM {SCHEMA}.journal WHERE batch = %s",
            (list(UNFINISHED), batch),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _fetch(dsn: str, batch: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The batch's final rows, and the history of every change."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            f"SELECT key, idx, state, task_id, path, owner, body FROM {SCHEMA}.journal"
            " WHERE batch = %s ORDER BY idx",
            (batch,),
        ).fetchall()
        history = conn.execute(f"SELECT * FROM {SCHEMA}.journal_history ORDER BY at, n").fetchall()
    return rows, history


# -- the workers --------------------------------------------------------------------------------


@dataclass
class Worker:
    slot: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    finished: bool = False
    runs: list[tuple[int, float]] = field(default_factory=list)  # pid, wall time started
    exits: list[tuple[int, int, bool]] = field(default_factory=list)  # pid, code, batch complete


@dataclass
class Kill:
    slot: int
    pid: int
    wall: float  # time.time() of the signal (PostgreSQL's clock_timestamp() is the same clock)
    mono: float
    parts: int  # .part files in the worker's folder right after the kill


@dataclass
class Outage:
    start_wall: float = 0.0
    end_wall: float = 0.0
    terminated: int = 0
    saved_at_start: int = 0


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "GPTUNNEL_API_KEY": API_KEY}


def _command(url: str, prompts: Path, folder: Path, dsn: str, batch: str, s: Settings) -> list[str]:
    return [
        sys.executable, "-m", "gptunnel_async.cli", "--base-url", url, "batch", str(prompts),
        "-o", str(folder), "--journal", dsn, "--batch", batch, "--no-progress",
        "-c", str(s.concurrency), "--max-pending", str(s.max_pending), "--task-timeout", "60",
    ]  # fmt: skip


def _start(w: Worker, cmd: list[str], work: Path) -> None:
    with (work / f"stderr-w{w.slot}.txt").open("ab") as err:
        w.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env())
    w.runs.append((w.proc.pid, time.time()))


def _outage_begin(server_dsn: str, db: str, outage: Outage) -> None:
    """The database goes away: no new session, and every session of the workers ends."""
    import psycopg

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        outage.start_wall = time.time()
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        ).fetchone()
    outage.terminated = int(row[0]) if row else 0


def _outage_end(server_dsn: str, db: str, outage: Outage) -> None:
    import psycopg

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
    outage.end_wall = time.time()


def run_workers(
    s: Settings, work: Path, url: str, dsn: str, db: str, batch: str, rng: random.Random
) -> tuple[list[Worker], list[Kill], Outage | None, bool]:
    """Start the workers, kill and restart them until the batch is final; the workers, the
    kills, the outage, and whether it all ended in time."""
    prompts = work / "prompts.txt"
    workers = [Worker(i, work / f"w{i}") for i in range(s.workers)]
    cmd = {w.slot: _command(url, prompts, w.folder, dsn, batch, s) for w in workers}
    for w in workers:
        _start(w, cmd[w.slot], work)
    kills: list[Kill] = []
    outage: Outage | None = None
    complete = False
    saved = 0
    deadline = time.monotonic() + s.timeout
    next_kill = time.monotonic() + rng.uniform(*s.kill_every)
    next_check = 0.0
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            in_outage = outage is not None and not outage.end_wall
            if not in_outage and now >= next_check:
                rows, unfinished, saved = _progress(dsn, batch)
                complete = rows == s.prompts and unfinished == 0
                next_check = now + 0.3
                due = s.outage_after is not None and saved >= s.outage_after * s.prompts
                if due and outage is None:
                    outage = Outage(saved_at_start=saved)
                    _outage_begin(s.dsn, db, outage)
                    continue
            if (
                outage is not None
                and in_outage
                and time.time() >= outage.start_wall + s.outage_seconds
            ):
                _outage_end(s.dsn, db, outage)
            for w in workers:
                if w.proc is not None and w.proc.poll() is not None:  # it ended by itself
                    done = False
                    if not in_outage:
                        rows, unfinished, _ = _progress(dsn, batch)
                        done = rows == s.prompts and unfinished == 0
                    w.exits.append((w.proc.pid, w.proc.returncode, done))
                    w.proc = None
                    if done:
                        w.finished = True
                    else:  # ended with the batch unfinished (the outage, or a bug): again
                        w.restart_at = now + rng.uniform(*s.restart_after)
                if w.proc is None and not w.finished and now >= w.restart_at and not in_outage:
                    _start(w, cmd[w.slot], work)
            if all(w.finished for w in workers):
                return workers, kills, outage, True
            live = [w for w in workers if w.proc is not None]
            owed = min(s.min_kills, saved * (s.min_kills + 1) // s.prompts) > len(kills)
            if (now >= next_kill or owed) and not complete and live and len(kills) < s.max_kills:
                w = rng.choice(live)
                assert w.proc is not None
                pid = w.proc.pid
                os.kill(pid, signal.SIGKILL)  # only a worker we started, by its pid
                wall, mono = time.time(), time.monotonic()
                w.proc.wait(10)
                w.exits.append((pid, -9, False))
                w.proc = None
                parts = len(list(w.folder.glob(".*.part"))) if w.folder.exists() else 0
                kills.append(Kill(w.slot, pid, wall, mono, parts))
                w.restart_at = now + rng.uniform(*s.restart_after)
                next_kill = now + rng.uniform(*s.kill_every)
            time.sleep(0.02)
        return workers, kills, outage, False
    finally:
        if outage is not None and not outage.end_wall:
            _outage_end(s.dsn, db, outage)
        for w in workers:
            if w.proc is not None:
                w.proc.kill()
                w.proc.wait(10)


# -- the audit ----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"{_pct(values, 0.5):.2f} / {_pct(values, 0.99):.2f} / {max(values):.2f} s"
        f" (n={len(values)})"
    )


def _pid(owner: str | None) -> int | None:
    try:
        return int((owner or "").rsplit(":", 2)[1])
    except (IndexError, ValueError):
        return None


def takeovers(
    kills: list[Kill],
    history: list[dict[str, Any]],
    polls: dict[str, list[float]],
    creates: dict[str, list[float]],
    workers: list[Worker],
    mono_offset: float,
) -> dict[str, Any]:
    """For each kill, the rows its worker held unfinished, and when others took each over."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    owners_by_pid: dict[int, str] = {}
    for h in history:
        by_key[h["key"]].append(h)
        pid = _pid(h["owner"])
        if pid is not None:
            owners_by_pid.setdefault(pid, h["owner"])
    slot_of = {pid: w.slot for w in workers for pid, _ in w.runs}
    owner_lat: list[float] = []
    poll_lat: list[float] = []
    after_take: list[float] = []  # from the takeover itself to that first poll
    create_lat: list[float] = []
    by_restart = by_other = never = 0
    held: Counter[str] = Counter()
    sending: set[str] = set()  # keys held `sending` by a killed worker
    worst: list[tuple[float, str, str]] = []
    for kill in kills:
        owner = owners_by_pid.get(kill.pid)
        if owner is None:  # killed before it wrote a row
            continue
        for key, entries in by_key.items():
            mine = [i for i, e in enumerate(entries) if e["owner"] == owner]
            if not mine:
                continue
            last = entries[mine[-1]]
            if last["state"] not in UNFINISHED:
                continue
            later = entries[mine[-1] + 1 :]
            if later and later[0]["at"] < kill.wall - 0.5:
                continue  # taken from it while it lived (the outage), not at this kill
            held[last["state"]] += 1
            if last["state"] == "sending":
                sending.add(key)
            if not later:
                never += 1
                continue
            took = later[0]
            lat = took["at"] - kill.wall
            owner_lat.append(lat)
            worst.append((lat, last["state"], key))
            if slot_of.get(_pid(took["owner"]) or -1) == kill.slot:
                by_restart += 1
            else:
                by_other += 1
            took_mono = took["at"] - mono_offset
            if last["state"] == "created" and last["task_id"]:
                first = next((t for t in polls.get(last["task_id"], []) if t >= took_mono), None)
                if first is not None:
                    poll_lat.append(first - kill.mono)
                    after_take.append(first - took_mono)
            if last["state"] == "claimed":
                prompt = last.get("prompt")
                first = next((t for t in creates.get(prompt or "", []) if t >= took_mono), None)
                if first is not None:
                    create_lat.append(first - kill.mono)
    worst.sort(reverse=True)
    return {
        "held": dict(held),
        "sending": sending,
        "owner": owner_lat,
        "poll": poll_lat,
        "after_take": after_take,
        "create": create_lat,
        "by_restart": by_restart,
        "by_other": by_other,
        "never": never,
        "worst": worst[:5],
    }


def audit(
    s: Settings,
    work: Path,
    workers: list[Worker],
    kills: list[Kill],
    outage: Outage | None,
    rows: list[dict[str, Any]],
    history: list[dict[str, Any]],
    emu: dict[str, Any],
    mono_offset: float,
) -> tuple[dict[str, bool], list[tuple[str, Any, str]], dict[str, Any]]:
    prompts = (work / "prompts.txt").read_text().split()
    counters, log, tasks, polls = emu["counters"], emu["log"], emu["tasks"], emu["polls"]
    creates = Counter[str](counters["creates_by_prompt"])
    prompt_of = {r["key"]: json.loads(r["body"])["prompt"] for r in rows}
    for h in history:
        h["prompt"] = prompt_of.get(h["key"])
    create_times: dict[str, list[float]] = defaultdict(list)
    for e in log:
        create_times[e["prompt"]].append(e["arrived"])
    tk = takeovers(kills, history, polls, create_times, workers, mono_offset)
    by_prompt = {prompt_of[r["key"]]: r for r in rows}
    states = Counter(r["state"] for r in rows)
    unknown = {p for p, r in by_prompt.items() if r["state"] == "unknown"}
    on_wire = {prompt_of[k] for k in tk["sending"]}
    arrived = {p for p in on_wire if creates.get(p, 0) > 0}
    twice = sorted(p for p in prompts if creates.get(p, 0) > 1)
    # files: every final file of every folder, by task id
    files = [check_files(w.folder, tasks) for w in workers]
    names: Counter[str] = Counter()
    where: dict[str, Path] = {}
    for w in workers:
        for p in w.folder.iterdir() if w.folder.exists() else []:
            if not p.name.startswith(".") and p.name != "manifest.jsonl":
                names[p.stem] += 1
                where[p.stem] = p
    not_once = []
    for p in prompts:
        if p in unknown:
            continue
        r = by_prompt.get(p)
        ok = (
            r is not None
            and creates.get(p, 0) == 1
            and r["state"] == "saved"
            and names.get(r["task_id"], 0) == 1
            and Path(r["path"]) == where.get(r["task_id"])
        )
        if not ok:
            not_once.append(p)
    extra_files = sum(n - 1 for n in names.values() if n > 1)
    temps = sum(f["temps"] for f in files)
    bad = sum(f["bad"] + f["unknown"] for f in files)
    # manifests (the final one of each folder): every prompt comes out somewhere
    lines: list[dict[str, Any]] = []
    torn = 0
    for w in workers:
        path = w.folder / "manifest.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                lines.append(json.loads(line))
            except ValueError:
                torn += 1
    reported = Counter(line["prompt"] for line in lines)
    missing = [p for p in prompts if not reported.get(p)]
    # the outage: every create that reached the server while the database was away had been
    # marked `sending` before it went away
    outage_creates = outage_polls = outage_late = 0
    if outage is not None and outage.end_wall:
        start = outage.start_wall - mono_offset
        end = outage.end_wall - mono_offset
        sending_at: dict[str, float] = {}
        for h in history:
            if h["state"] == "sending" and h["prompt"] is not None:
                sending_at.setdefault(h["prompt"], h["at"])
        for e in log:
            if start <= e["arrived"] < end and e.get("status") != 429:
                outage_creates += 1
                if sending_at.get(e["prompt"], 1e18) >= outage.start_wall:
                    outage_late += 1
        outage_polls = sum(1 for ts in polls.values() for t in ts if start <= t < end)
    unexpected_exits = [
        (w.slot, pid, code)
        for w in workers
        for pid, code, done in w.exits
        if code != -9 and not done
    ]
    crashes = sum(
        (work / f"stderr-w{w.slot}.txt").read_text(errors="replace").count("Traceback")
        for w in workers
        if (work / f"stderr-w{w.slot}.txt").exists()
    )
    checks = {
        "the batch finished in time": all(w.finished for w in workers),
        "no prompt created twice": not twice,
        "unknown == held `sending` by a killed worker": unknown == on_wire,
        "every other prompt created once, saved once": not not_once,
        "no task saved twice (files across folders)": extra_files == 0,
        "files whole, none partial": bad == 0,
        "no .part left": temps == 0,
        "rows all final": set(states) <= set(FINAL) and len(rows) == len(prompts),
        "every prompt in some final manifest, lines whole": not missing and torn == 0,
        "every held row taken over": tk["never"] == 0,
        "no create sent during the outage unless marked before it": outage_late == 0,
        "no worker exited early outside the outage": not [
            e for e in unexpected_exits if outage is None or not outage.end_wall
        ],
        "no traceback in the workers' stderr": crashes == 0,
        "emulator errors": not counters["internal_errors"],
    }
    held = tk["held"]
    fig = [
        ("prompts / workers", f"{len(prompts)} / {s.workers}", ""),
        ("SIGKILLs (restarts after 0.5-3 s)", len(kills), ""),
        ("... with a download in progress (`.part` present)", sum(1 for k in kills if k.parts), ""),
        ("rows the killed workers held (claimed/sending/created/done)",
         "/".join(str(held.get(st, 0)) for st in UNFINISHED), ""),
        ("create requests received (emulator, incl. 429s)", len(log), ""),
        ("tasks created (emulator)", counters["creates_total"], ""),
        ("prompts created more than once", len(twice), mark(not twice)),
        ("creates on the wire at a kill (`sending`): arrived / never arrived",
         f"{len(arrived)} / {len(on_wire) - len(arrived)}", ""),
        ("reported outcome unknown (journal)", len(unknown),
         mark(checks["unknown == held `sending` by a killed worker"])),
        ("other prompts not created once + saved once", len(not_once), mark(not not_once)),
        ("tasks saved more than once (extra files)", extra_files, mark(extra_files == 0)),
        ("files whole / damaged or unknown", f"{sum(f['whole'] for f in files)} / {bad}",
         mark(bad == 0)),
        ("`.part` files at the end", temps, mark(temps == 0)),
        ("final row states", dict(sorted(states.items())), mark(checks["rows all final"])),
        ("manifest lines (all folders) / prompts reported more than once",
         f"{len(lines)} / {sum(1 for n in reported.values() if n > 1)}", ""),
        ("takeover: kill -> owned by a live worker (p50/p99/max)", _stats(tk["owner"]), ""),
        ("takeover: kill -> first poll of a created task by its new owner",
         _stats(tk["poll"]), ""),
        ("... of which: takeover -> that first poll", _stats(tk["after_take"]), ""),
        ("takeover: kill -> create of a claimed row by its new owner", _stats(tk["create"]), ""),
        ("rows taken over by the restarted worker / by another live one",
         f"{tk['by_restart']} / {tk['by_other']}", ""),
        ("rows never taken over", tk["never"], mark(tk["never"] == 0)),
        ("429s answered / 5xx / drops (emulator)",
         f"{counters['sent_429']} / "
         f"{sum(v for k, v in counters['responses_by_status'].items() if k.startswith('5'))} / "
         f"{counters['drops']}", ""),
    ]  # fmt: skip
    if outage is not None:
        fig += [
            ("outage: seconds / sessions terminated / saved rows when it began",
             f"{outage.end_wall - outage.start_wall:.1f} / {outage.terminated} / "
             f"{outage.saved_at_start}", ""),
            ("outage: creates arriving during it / not marked `sending` before it",
             f"{outage_creates} / {outage_late}", mark(outage_late == 0)),
            ("outage: polls arriving during it", outage_polls, ""),
            ("worker exits with the batch unfinished (not kills): slot, pid, code",
             unexpected_exits[:8], ""),
        ]  # fmt: skip
    figures = {
        "kills": len(kills),
        "twice": twice[:10],
        "not_once": not_once[:10],
        "unknown": len(unknown),
        "on_wire": len(on_wire),
        "arrived": len(arrived),
        "owner_latency": tk["owner"],
        "poll_latency": tk["poll"],
        "after_take": tk["after_take"],
        "create_latency": tk["create"],
        "worst": tk["worst"],
        "held": held,
        "outage_creates": outage_creates,
        "outage_late": outage_late,
        "outage_polls": outage_polls,
        "unexpected_exits": unexpected_exits,
        "states": dict(states),
    }
    return checks, fig, figures


def campaign(s: Settings, work: Path) -> tuple[str, bool, dict[str, Any]]:
    rng = random.Random(s.seed)
    batch = f"pgkill-{s.seed}-{secrets.token_hex(3)}"
    prompts = [f"pgkill-{s.seed}-{i:05d}" for i in range(s.prompts)]
    (work / "prompts.txt").write_text("\n".join(prompts) + "\n")
    note = machine_note()
    started = time.monotonic()
    mono_offset = time.time() - time.monotonic()
    with (
        database(s.dsn) as (dsn, db),
        EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu,
    ):
        install(dsn, batch)
        emu.control("reset", seed=s.seed)
        emu.control("faults", **s.faults)
        stop = threading.Event()
        bursts = threading.Thread(target=_bursts, args=(emu, random.Random(s.seed + 1), stop))
        if s.bursts:
            bursts.start()
        try:
            workers, kills, outage, in_time = run_workers(s, work, emu.url, dsn, db, batch, rng)
        finally:
            stop.set()
            if s.bursts:
                bursts.join()
        wall = time.monotonic() - started
        emu_data = {
            "counters": emu.control("counters"),
            "log": emu.control("create_log"),
            "tasks": emu.control("tasks"),
            "polls": emu.control("poll_log"),
        }
        rows, history = _fetch(dsn, batch)
    checks, fig, figures = audit(s, work, workers, kills, outage, rows, history, emu_data,
                                 mono_offset)  # fmt: skip
    checks["the batch finished in time"] = checks["the batch finished in time"] and in_time
    fig.insert(1, ("wall time", f"{wall:.0f} s", mark(in_time)))
    report = [
        f"### PostgreSQL batch under kills: {s.prompts} prompts, {s.workers} workers, "
        f"{len(kills)} SIGKILLs, time scale {s.time_scale:g}, seed {s.seed}",
        "",
        note,
        "",
        md_table(("figure", "value", "check"), fig),
    ]
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
        if figures["not_once"]:
            report += [f"not created once + saved once: {figures['not_once'][:5]}"]
    figures["checks"] = checks
    return "\n".join(report), not failed, figures


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--serve-emulator"]:
        return _serve_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="160 prompts, a kill every 1-2.5 s")
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dsn", default=None, help=f"a server (default: ${DSN_ENV} or local)")
    p.add_argument("--no-outage", action="store_true", help="no database outage mid-run")
    p.add_argument("--no-bursts", action="store_true", help="no 429 bursts (5xx and drops stay)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    s = quick_settings() if args.quick else Settings()
    s.seed = args.seed
    if args.prompts:
        s.prompts = args.prompts
    if args.dsn:
        s.dsn = args.dsn
    if args.no_outage:
        s.outage_after = None
    if args.no_bursts:
        s.bursts = False
    with tempfile.TemporaryDirectory(prefix="gptunnel-pgkill-") as tmp:
        report, ok, figures = campaign(s, Path(tmp))
    print(report)
    if args.json:
        print(json.dumps({k: v for k, v in figures.items() if k != "checks"}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
