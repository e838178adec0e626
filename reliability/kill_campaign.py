"""Kill anywhere: SIGKILL `gptunnel batch` at random moments, rerun the same command, audit.

``python reliability/kill_campaign.py [--quick] [--kills K] [--prompts N] [--seed S]``

The emulator runs in its own long-lived process (``_emulator.py``) with 429 bursts (random,
about every second), 5xx answers and dropped connections on polls and downloads, and slow
downloads; creates meet only the 429 bursts and latency, so every "outcome unknown" must come
from a kill. Each batch (a prompt file, an output folder with its journal) is run with the
real command, ``gptunnel batch prompts.txt -o out``; each run is SIGKILLed (its own pid) at a
random moment after it took its journal, and the same command is started again, until one
run finishes by itself. Batches follow each other until at least ``--kills`` runs were killed.

Audit of every batch, against the emulator's log of every create (arrival and answer times,
on the monotonic clock both processes share) and the journal read right after each kill:

- every prompt was created at most once (``creates_by_prompt``);
- the creates *on the wire at a kill* — the server received them before the kill and the
  killed run had not journaled their answer (not answered before the kill, or the row still
  ``sending``) — are exactly the prompts the final run reports as outcome unknown, apart from
  rows journaled ``sending`` whose create never reached the server (counted; the window
  between the journal write and the send);
- every other prompt was created exactly once and saved exactly once: ok in the final
  manifest, one whole file (size and magic bytes) under its task id;
- no partial file under a final name, no ``.part`` temp file after the final run, and the
  manifest's lines are whole JSON.

Every loop is bounded (kills, batches, per-run timeouts).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability._common import check_files, machine_note, mark, md_table  # noqa: E402
from reliability._emulator import API_KEY, EmulatorProcess  # noqa: E402

JOURNAL = ".gptunnel-journal.sqlite"
UNKNOWN = "CreateOutcomeUnknownError"


@dataclass
class Settings:
    kills: int = 50  # at least this many SIGKILLs in all
    prompts: int = 120  # per batch
    seed: int = 1
    time_scale: float = 20.0  # images take 0.25..3 s
    kill_within: float = 2.5  # a kill lands uniformly within this long after the journal is taken
    concurrency: int = 8
    max_pending: int = 40
    run_timeout: float = 120.0
    max_batches: int = 40
    load: int = 0  # CPU-bound helper processes beside the campaign (a busy, shared machine)
    # After this many kills a batch's next run is left to finish: on a busy machine a run can
    # take longer than ``kill_within`` just to start and exit, and would be killed for ever.
    kills_per_batch: int = 30
    faults: dict[str, Any] = field(
        default_factory=lambda: {
            "faulty_creates": False,  # a 5xx/dropped create is "unknown" by design: kills only
            "error_rate": 0.06,
            "drop_rate": 0.02,
            "include_files": True,  # the above, and slowness, for downloads too
            "slow_rate": 0.08,
            "slow_delay": 0.8,
            "latency": [0.005, 0.06],
        }
    )


def quick_settings() -> Settings:
    """The CI size: at least 6 kills over batches of 40 prompts."""
    return Settings(kills=6, prompts=40, run_timeout=60.0, max_batches=10)


@dataclass
class Kill:
    batch: int
    at: float  # monotonic time of the signal
    started: float  # monotonic time the run was started
    rows: dict[str, tuple[str, str]]  # journal key -> (state, prompt), read after the kill
    parts: int  # .part temp files right after the kill
    creates: list[dict[str, Any]]  # every create of the killed run that reached the server whole
    cut_off: list[dict[str, Any]]  # ... and those cut off midway (bytes arrived, never processed)


def _command(url: str, folder: Path, s: Settings) -> list[str]:
    return [
        sys.executable, "-m", "gptunnel_async.cli", "--base-url", url, "batch",
        str(folder / "prompts.txt"), "-o", str(folder / "out"), "--no-progress",
        "-c", str(s.concurrency), "--max-pending", str(s.max_pending), "--task-timeout", "60",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "GPTUNNEL_API_KEY": API_KEY}


def _journal_rows(path: Path) -> dict[str, tuple[str, str]]:
    """Every row as another process sees it (what the killed run left durable)."""
    if not path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT key, state, body FROM requests").fetchall()
    return {key: (state, json.loads(body).get("prompt")) for key, state, body in rows}


def _wait_until_started(lock: Path, pid: int, proc: subprocess.Popen[bytes]) -> bool:
    """True once the run holds its journal (its pid is in the lock file); False if it ended."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if f"pid {pid} " in lock.read_text():
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def _drain(port: int, timeout: float = 20.0) -> bool:
    """Wait until the server holds no connection but ours (the control client's).

    The run is dead and reaped, so the kernel has closed its sockets: whatever it had written
    is in the server's buffers, and the server closes each connection once it has read (and
    logged) all of it, a request cut off midway included. So afterwards the emulator's log holds
    every byte the run sent, and each entry belongs to the run it came from, whatever the delay
    between a byte leaving and the server reading it. Unaccepted connections count too."""
    own = psutil.Process()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ours = {
            c.laddr.port for c in own.net_connections("tcp") if c.raddr and c.raddr.port == port
        }
        foreign = [
            c
            for c in psutil.net_connections("tcp")
            if c.laddr.port == port
            and c.raddr
            and c.raddr.port not in ours
            and c.status in (psutil.CONN_ESTABLISHED, psutil.CONN_CLOSE_WAIT, psutil.CONN_SYN_RECV)
        ]
        if not foreign:
            return True
        time.sleep(0.01)
    return False


class WireLog:
    """Reads the emulator's create logs run by run (each run's slice once it is drained)."""

    def __init__(self, emu: EmulatorProcess) -> None:
        self.emu = emu
        self.port = int(emu.url.rsplit(":", 1)[1])
        self.next = [0, 0]
        self.undrained = 0  # runs after which the server still held a connection (bounded wait)

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every create (whole, cut off) logged since the last call: the last run's."""
        if not _drain(self.port):
            self.undrained += 1
        got = self.emu.control("wire_log", since=self.next)
        self.next = got["next"]
        return got["creates"], got["cut_off"]


def _busy(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes spinning on the CPU at normal priority, so that every process of the
    campaign (the client, the emulator) is descheduled now and then, as on a shared machine."""
    spin = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]


def _bursts(emu: EmulatorProcess, rng: random.Random, stop: threading.Event) -> None:
    """429 bursts at random moments for as long as the campaign runs."""
    while not stop.wait(rng.uniform(0.4, 1.5)):
        emu.control("faults", burst_429=[rng.uniform(0.1, 0.4), rng.uniform(0.3, 1.5)])


def run_batch(
    emu: EmulatorProcess, s: Settings, work: Path, batch: int, rng: random.Random, wire: WireLog
) -> tuple[list[Kill], int, float]:
    """Kill-and-rerun one batch until a run finishes; the kills, the last exit code, wall."""
    folder = work / f"batch{batch:02d}"
    folder.mkdir()
    prompts = [f"kill-{s.seed}-{batch:02d}-{i:04d}" for i in range(s.prompts)]
    (folder / "prompts.txt").write_text("\n".join(prompts) + "\n")
    journal = folder / "out" / JOURNAL
    cmd = _command(emu.url, folder, s)
    kills: list[Kill] = []
    for _ in range(200):  # bounded: a batch always finishes long before
        started = time.monotonic()
        with (folder / "stderr.txt").open("ab") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env())
        lock = journal.with_name(JOURNAL + ".lock")
        if len(kills) < s.kills_per_batch and _wait_until_started(lock, proc.pid, proc):
            try:
                code = proc.wait(rng.uniform(0.0, s.kill_within))
                wire.take()
                return kills, code, time.monotonic() - started
            except subprocess.TimeoutExpired:
                at = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)  # only the run we started
                proc.wait(10)
                parts = len(list((folder / "out").glob(".*.part")))
                rows = _journal_rows(journal)
                creates, cut_off = wire.take()  # before the next run can send anything
                kills.append(Kill(batch, at, started, rows, parts, creates, cut_off))
                continue
        try:
            code = proc.wait(s.run_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = -9
        wire.take()
        return kills, code, time.monotonic() - started
    raise RuntimeError("a batch did not finish in 200 runs")


def _manifest(path: Path) -> tuple[list[dict[str, Any]], int]:
    lines, torn = [], 0
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            lines.append(json.loads(line))
        except ValueError:
            torn += 1
    return lines, torn


def wire_at_kill(kill: Kill, ours: set[str], before: set[str]) -> dict[str, set[str] | int]:
    """Where the creates the killed run had journaled ``sending`` really were.

    Only the rows this run wrote ``sending`` count: ``before`` holds the rows already
    ``sending`` after the previous kill of the batch (a dead run's create, never re-sent;
    ``inherited``: still ``sending`` because this run was killed before it reported them).
    A create was *on the wire at the kill* when its row was still ``sending`` (its answer not
    journaled) and its bytes had reached the server from that run: whole (in the emulator's
    log, whenever the server read them: ``late`` counts those read after the signal), or cut
    off midway (the prompt read from what arrived; a request cut off before its prompt did is
    matched by count). A ``sending`` row of which no byte ever arrived is a kill between the
    journal's write and the first byte (``never``). A create that reached the server and made
    a task while its row was still ``claimed`` would have been sent without its write-ahead
    (``unmarked``; the campaign fails on any)."""
    all_sending = {p for state, p in kill.rows.values() if state == "sending" and p in ours}
    sending = all_sending - before
    claimed = {p for state, p in kill.rows.values() if state == "claimed" and p in ours}
    whole = {e["prompt"] for e in kill.creates if e["prompt"] in ours}
    late = {e["prompt"] for e in kill.creates if e["prompt"] in ours and e["arrived"] >= kill.at}
    named = {e["prompt"] for e in kill.cut_off if e["prompt"] in ours}
    anonymous = sum(1 for e in kill.cut_off if e["prompt"] is None)
    on_wire = sending & (whole | named)
    rest = sorted(sending - on_wire)
    matched = set(rest[:anonymous])  # cut off before the prompt arrived: which one is unknown
    made = {e["prompt"] for e in kill.creates if e["prompt"] in ours and e.get("status") == 200}
    return {
        "sending": sending,
        "inherited": all_sending & before,
        "on_wire": on_wire | matched,
        "cut_off": (sending & named) | matched,
        "late": sending & late,
        "never": set(rest[anonymous:]),
        "unmarked": claimed & made,
        "reached": len(kill.creates) + len(kill.cut_off),
    }


def former_rule(kills: list[Kill]) -> int:
    """What the campaign's first audit counted as "journaled ``sending`` but never reached the
    server": every row ``sending`` after a kill whose create the server had not handled
    between the run's start and the signal. It took rows inherited from an earlier kill for
    the killed run's own, had no record of a request cut off midway, and missed a byte read by
    a busy server after the signal; kept to show what those made of the same record."""
    found: set[tuple[int, str]] = set()
    for kill in kills:
        sending = {p for state, p in kill.rows.values() if state == "sending"}
        handled = {e["prompt"] for e in kill.creates if kill.started <= e["handled"] < kill.at}
        found |= {(kill.batch, p) for p in sending - handled}
    return len(found)


def audit_batch(
    s: Settings,
    work: Path,
    batch: int,
    kills: list[Kill],
    creates: Counter[str],
    tasks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    folder = work / f"batch{batch:02d}"
    prompts = (folder / "prompts.txt").read_text().split()
    ours = set(prompts)
    lines, torn = _manifest(folder / "out" / "manifest.jsonl")
    by_prompt = {line["prompt"]: line for line in lines}
    unknown = {p for p, line in by_prompt.items() if line["error_type"] == UNKNOWN}
    wire: dict[str, set[str]] = {
        k: set() for k in ("on_wire", "cut_off", "late", "never", "unmarked", "inherited")
    }
    before: set[str] = set()
    wire_kills = 0
    for kill in kills:
        at_kill = wire_at_kill(kill, ours, before)
        before = {p for state, p in kill.rows.values() if state == "sending"}
        for key, found in wire.items():
            value = at_kill[key]
            assert isinstance(value, set)
            found |= value
        wire_kills += bool(at_kill["on_wire"])
    twice = sorted(p for p in prompts if creates.get(p, 0) > 1)
    others = [p for p in prompts if p not in unknown]
    files = check_files(folder / "out", tasks)
    names = Counter(p.stem for p in (folder / "out").iterdir() if not p.name.startswith("."))
    not_once = [
        p
        for p in others
        if creates.get(p, 0) != 1
        or not by_prompt.get(p, {}).get("ok")
        or names.get(by_prompt[p]["task_id"], 0) != 1
    ]
    return {
        "prompts": len(prompts),
        "lines": len(lines),
        "each once": len(by_prompt) == len(prompts) == len(lines) and set(by_prompt) == ours,
        "torn": torn,
        "twice": twice,
        "unknown": unknown,
        **wire,
        "wire_kills": wire_kills,
        "not_once": not_once,
        "files": files,
        "resumed": sum(1 for line in lines if line.get("resumed")),
    }


def campaign(s: Settings, work: Path, save: Path | None = None) -> tuple[str, bool, dict[str, Any]]:
    load_start = os.getloadavg()[0]
    rng = random.Random(s.seed)
    kills: list[Kill] = []
    runs: list[tuple[int, int, int, float]] = []  # batch, kills, last exit code, last wall
    with EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu:
        emu.control("reset", seed=s.seed)
        wire = WireLog(emu)
        emu.control("faults", **s.faults)
        stop = threading.Event()
        bursts = threading.Thread(target=_bursts, args=(emu, random.Random(s.seed + 1), stop))
        bursts.start()
        busy = _busy(s.load)
        try:
            batch = 0
            while len(kills) < s.kills and batch < s.max_batches:
                batch_kills, code, wall = run_batch(emu, s, work, batch, rng, wire)
                kills += batch_kills
                runs.append((batch, len(batch_kills), code, wall))
                batch += 1
        finally:
            load_end = os.getloadavg()[0]
            for proc in busy:  # only the helpers we started
                proc.kill()
                proc.wait(10)
            stop.set()
            bursts.join()
        counters = emu.control("counters")
        log = emu.control("create_log")
        cut_log = emu.control("wire_log")["cut_off"]
        tasks = emu.control("tasks")
        pauses = emu.control("pauses")
    if save is not None:  # for a later look: the journal after each kill, each run's creates
        save.write_text(json.dumps([asdict(k) for k in kills]))
    creates = Counter[str](counters["creates_by_prompt"])
    audits = [
        audit_batch(s, work, b, [k for k in kills if k.batch == b], creates, tasks)
        for b, *_ in runs
    ]

    def union(name: str) -> set[str]:
        return set().union(*(a[name] for a in audits))

    unknown, on_wire, never = union("unknown"), union("on_wire"), union("never")
    cut_off, late, unmarked = union("cut_off"), union("late"), union("unmarked")
    inherited = union("inherited")
    twice = [p for a in audits for p in a["twice"]]
    not_once = [p for a in audits for p in a["not_once"]]
    whole = sum(a["files"]["whole"] for a in audits)
    bad = sum(a["files"]["bad"] + a["files"]["unknown"] for a in audits)
    temps = sum(a["files"]["temps"] for a in audits)
    prompts = sum(a["prompts"] for a in audits)
    in_pause = sum(1 for k in kills if any(t <= k.at < t + (ra or 1.0) for t, ra in pauses))
    wire_kills = sum(a["wire_kills"] for a in audits)
    waiting_kills = sum(1 for k in kills if any(st == "claimed" for st, _ in k.rows.values()))
    download_kills = sum(1 for k in kills if k.parts)
    exact = "unknowns are exactly the creates on the wire at a kill"
    checks = {
        f"at least {s.kills} kills": len(kills) >= s.kills,
        "every batch finished (exit 0/1)": all(code in (0, 1) for *_, code, _ in runs),
        "each prompt once in the final manifest": all(a["each once"] for a in audits),
        "manifest lines whole": all(a["torn"] == 0 for a in audits),
        "no prompt created twice": not twice,
        "no create sent before its write-ahead": not unmarked,
        exact: unknown == on_wire,
        "every other prompt created once, saved once": not not_once,
        "files whole, none partial": bad == 0,
        "no .part left": temps == 0,
        "the server had read every killed run's bytes before the rerun": wire.undrained == 0,
        "emulator errors": not counters["internal_errors"],
    }
    fig = [
        ("batches (prompts each)", f"{len(runs)} ({s.prompts})", ""),
        ("SIGKILLs", len(kills), mark(checks[f"at least {s.kills} kills"])),
        ("... with a create on the wire (reached the server, answer not journaled)",
         wire_kills, ""),
        ("... during a 429 pause", in_pause, ""),
        ("... with creates waiting (gate, pause, pacing, retry: `claimed`)", waiting_kills, ""),
        ("... with a download in progress (`.part` present)", download_kills, ""),
        ("prompts", prompts, ""),
        ("create requests received whole (emulator, incl. 429s)", len(log), ""),
        ("create requests cut off midway (bytes arrived, never processed)", len(cut_log), ""),
        ("tasks created (emulator)", counters["creates_total"], ""),
        ("prompts created more than once", len(twice), mark(not twice)),
        ("creates sent while journaled `claimed` (no write-ahead)", len(unmarked),
         mark(not unmarked)),
        ("creates on the wire at a kill (row `sending`, bytes reached the server)",
         len(on_wire), ""),
        ("... of which cut off midway", len(cut_off), ""),
        ("... of which the server read only after the signal", len(late), ""),
        ("rows `sending` at a kill of which no byte reached the server", len(never),
         mark(not never)),
        ("rows still `sending` from an earlier kill (reported by no run yet)", len(inherited),
         ""),
        ("(the first audit's \"`sending`, never reached the server\" on this record)",
         former_rule(kills), ""),
        ("reported outcome unknown (final manifests)", len(unknown), mark(checks[exact])),
        ("other prompts not created once + saved once", len(not_once), mark(not not_once)),
        ("files whole / damaged or unknown", f"{whole} / {bad}", mark(bad == 0)),
        ("`.part` files after the final runs", temps, mark(temps == 0)),
        ("manifest lines marked resumed (final runs)", sum(a["resumed"] for a in audits), ""),
        ("429s answered / 5xx / drops (emulator)",
         f"{counters['sent_429']} / "
         f"{sum(v for k, v in counters['responses_by_status'].items() if k.startswith('5'))} / "
         f"{counters['drops']}", ""),
    ]  # fmt: skip
    report = [
        f"### Kill anywhere: {len(kills)} SIGKILLs over {len(runs)} batches of {s.prompts} "
        f"prompts, time scale {s.time_scale:g}, seed {s.seed}"
        + (f", {s.load} CPU-bound processes beside it" if s.load else ""),
        "",
        f"{machine_note().split(', load average')[0]}, load average at start "
        f"{load_start:.2f}, at the end {load_end:.2f}",
        "",
        md_table(("figure", "value", "check"), fig),
    ]
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
        if unknown != on_wire:
            report += [
                f"unknown but not on the wire: {sorted(unknown - on_wire)[:5]} (never reached "
                f"the server: {sorted(never)[:5]}); on the wire but not unknown: "
                f"{sorted(on_wire - unknown)[:5]}"
            ]
        if not_once:
            report += [f"not created once + saved once: {not_once[:5]}"]
    figures = {
        "checks": checks,
        "kills": len(kills),
        "on_wire": len(on_wire),
        "unknown": len(unknown),
        "never": len(never),
        "cut_off": len(cut_off),
        "late": len(late),
        "inherited": len(inherited),
        "twice": twice[:10],
        "in_pause": in_pause,
        "wire_kills": wire_kills,
        "download_kills": download_kills,
    }
    return "\n".join(report), not failed, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="at least 6 kills, 40 prompts a batch")
    p.add_argument("--kills", type=int, default=None)
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--load", type=int, default=0, help="CPU-bound processes beside the campaign")
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", type=Path, help="write every kill's raw record here (JSON)")
    args = p.parse_args(argv)
    s = quick_settings() if args.quick else Settings()
    s.seed = args.seed
    s.load = args.load
    if args.kills is not None:
        s.kills = args.kills
    if args.prompts:
        s.prompts = args.prompts
    with tempfile.TemporaryDirectory(prefix="gptunnel-kill-") as tmp:
        report, ok, figures = campaign(s, Path(tmp), args.save)
    print(report)
    if args.json:
        print(json.dumps(figures, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
