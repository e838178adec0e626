"""Crash safety: SIGKILL a journaled batch at random points, resume, repeat; then audit.

``python reliability/crash_campaign.py [--quick] [--kills K] [--tasks N] [--seed S]``

The emulator runs in its own long-lived process (``_emulator.py``), so its counters survive the
kills. The batch runs in ``_driver.py`` (``generate_many`` with a journal and ``download_to``);
the campaign starts it, SIGKILLs it (by its own pid) after a random delay, and starts it again
on the same journal, ``--kills`` times; then runs it once to the end. Audit:

- nothing was created twice: ``creates_by_prompt`` is at most 1 for every prompt, including
  those whose create was in flight at a kill (reported as ``CreateOutcomeUnknownError``);
- nothing is lost: the last run yields every prompt exactly once, each with a whole file or a
  reported reason;
- every file under its final name is whole (magic bytes, size equal to what the emulator
  serves, the right extension); leftover ``.part`` temp files are counted.

Every loop is bounded (kills, per-run timeouts); the driver has its own ``deadline``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability._common import (  # noqa: E402
    OK_FILE,
    UNKNOWN,
    check_files,
    machine_note,
    mark,
    md_table,
)
from reliability._emulator import EmulatorProcess  # noqa: E402

DRIVER = Path(__file__).resolve().parent / "_driver.py"


@dataclass
class Settings:
    tasks: int = 1000
    kills: int = 15
    seed: int = 1
    time_scale: float = 20.0  # images take 0.25..3 s
    kill_after: tuple[float, float] = (1.0, 4.0)  # seconds after the driver starts
    run_timeout: float = 240.0


def quick_settings() -> Settings:
    """The CI size: 80 prompts, two kills."""
    return Settings(tasks=80, kills=2, kill_after=(1.2, 2.5), run_timeout=60.0)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by the kill
            continue
    return out


def _driver_cmd(url: str, work: Path, s: Settings, prefix: str) -> list[str]:
    return [
        sys.executable,
        str(DRIVER),
        url,
        "--journal",
        str(work / "journal.sqlite"),
        "--out",
        str(work / "out"),
        "--count",
        str(s.tasks),
        "--prefix",
        prefix,
        "--time-scale",
        str(s.time_scale),
    ]


def campaign(s: Settings, work: Path) -> tuple[str, bool, dict[str, Any]]:
    rng = random.Random(s.seed)
    prefix = f"crash-{s.seed}"
    prompts = [f"{prefix}-{i:05d}" for i in range(s.tasks)]
    kills: list[tuple[int, float, int, int]] = []  # run, delay, results printed, creates so far
    finished_early = 0
    with EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu:
        emu.control("reset", seed=s.seed)
        # a little latency on every API answer widens the window with creates in flight
        emu.control("faults", latency=[0.01, 0.12])
        cmd = _driver_cmd(emu.url, work, s, prefix)
        for run in range(s.kills):
            log = work / f"run{run}.jsonl"
            with log.open("w") as out:
                proc = subprocess.Popen(cmd, stdout=out, cwd=ROOT)
                delay = rng.uniform(*s.kill_after)
                try:
                    proc.wait(delay)
                    finished_early += 1  # the batch ended before the kill: nothing to kill
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)  # only the driver we started
                    proc.wait(10)
            creates = emu.control("counters")["creates_total"]
            kills.append((run, delay, len(_read_lines(log)), creates))
            if finished_early:
                break
        log = work / "final.jsonl"
        start = time.monotonic()
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, cwd=ROOT)
            try:
                code = proc.wait(s.run_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                code = -9
        final_wall = time.monotonic() - start
        counters = emu.control("counters")
        tasks = emu.control("tasks")
    lines = _read_lines(log)
    completed = bool(lines) and lines[-1].get("done") is True
    results = [r for r in lines if "index" in r]
    seen = Counter(r["index"] for r in results)
    once = sum(1 for i in range(s.tasks) if seen[i] == 1)
    lost = s.tasks - len(seen)
    creates = Counter[str](counters["creates_by_prompt"])
    twice = [p for p in prompts if creates.get(p, 0) > 1]
    outcomes = Counter(r["outcome"] for r in results)
    unknown_prompts = [prompts[r["index"]] for r in results if r["outcome"] == UNKNOWN]
    unknown_landed = sum(1 for p in unknown_prompts if creates.get(p, 0) == 1)
    unknown_twice = sum(1 for p in unknown_prompts if creates.get(p, 0) > 1)
    ok_missing = sum(
        1
        for r in results
        if r["outcome"] == OK_FILE and not (r["path"] and Path(r["path"]).is_file())
    )
    files = check_files(work / "out", tasks)
    reasons_ok = all(r["outcome"] == OK_FILE or r["error"] for r in results)
    checks = {
        "final run completed": completed and code == 0,
        "each prompt exactly once": once == s.tasks and lost == 0,
        "nothing created twice": not twice,
        "unknown creates not re-sent": unknown_twice == 0,
        "every result: file or reason": reasons_ok and ok_missing == 0,
        "files whole": files["bad"] == 0 and files["unknown"] == 0,
        "files = ok results": files["whole"] == outcomes[OK_FILE],
        "emulator errors": not counters["internal_errors"],
    }
    kill_rows = [(r, f"{d:.2f}", n, c) for r, d, n, c in kills]
    fig = [
        ("prompts", s.tasks, ""),
        ("SIGKILLs", len(kills) - finished_early, ""),
        ("runs that finished before their kill", finished_early, ""),
        ("final run: prompts yielded exactly once", once, mark(once == s.tasks)),
        ("final run: prompts lost", lost, mark(lost == 0)),
        ("prompts created more than once", len(twice), mark(not twice)),
        ("creates sent in total (emulator)", counters["creates_total"], ""),
        ("prompts never created (unknown outcome, never reached)",
         s.tasks - len([p for p in prompts if creates.get(p)]), ""),
        ("unknown outcome (create in flight at a kill)", len(unknown_prompts), ""),
        ("... of which the emulator created once / twice", f"{unknown_landed} / {unknown_twice}",
         mark(unknown_twice == 0)),
        ("ok results without their file", ok_missing, mark(ok_missing == 0)),
        ("files: whole / damaged / unknown", f"{files['whole']} / {files['bad']} / "
         f"{files['unknown']}", mark(checks["files whole"] and checks["files = ok results"])),
        ("leftover `.part` temp files (hidden, from killed downloads)", files["temps"], ""),
        ("final run wall time (s)", round(final_wall, 2), ""),
    ]  # fmt: skip
    report = [
        f"### Crash campaign: {s.tasks} prompts, {len(kills)} runs killed at random, "
        f"time scale {s.time_scale:g}, seed {s.seed}",
        "",
        machine_note(),
        "",
        md_table(("figure", "value", "check"), fig),
        "",
        "Final outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()),
        "",
        "<details><summary>Kills</summary>",
        "",
        md_table(("run", "killed after (s)", "results printed", "creates so far"), kill_rows),
        "",
        "</details>",
    ]
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
    figures = {
        "checks": checks,
        "outcomes": dict(outcomes),
        "files": files,
        "kills": len(kills) - finished_early,
        "unknown": len(unknown_prompts),
        "unknown_landed": unknown_landed,
        "twice": twice[:10],
    }
    return "\n".join(report), not failed, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="60 prompts, 2 kills (the CI size)")
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--kills", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    s = quick_settings() if args.quick else Settings()
    s.seed = args.seed
    if args.tasks:
        s.tasks = args.tasks
    if args.kills is not None:
        s.kills = args.kills
    with tempfile.TemporaryDirectory(prefix="gptunnel-crash-") as tmp:
        report, ok, figures = campaign(s, Path(tmp))
    print(report)
    if args.json:
        print(json.dumps(figures, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
