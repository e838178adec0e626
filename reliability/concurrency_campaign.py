"""Several runs started together on one folder: nothing is created twice, the manifest is whole.

``python reliability/concurrency_campaign.py [--quick] [--trials T] [--prompts N] [--seed S]``

Each trial starts 2, 3 or 4 copies of the same ``gptunnel batch prompts.txt -o out`` at once
(same journal, same manifest) against one emulator process, waits for all of them, then runs
the command once more. Audit per trial: no prompt created more than once (the emulator's
``creates_by_prompt``); every run that did not get the journal was refused with one line that
names the run holding it; the last run finds everything done (no new creates) and writes a
manifest of whole lines, one per prompt, all ok.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability._common import campaign_main, machine_note, mark, md_table  # noqa: E402
from reliability._emulator import API_KEY, EmulatorProcess  # noqa: E402

REFUSED = re.compile(r"^error: .*(?:is in use by|is being written by) pid (\d+) ", re.M)


@dataclass
class Settings:
    trials: int = 20
    prompts: int = 30
    seed: int = 1
    time_scale: float = 20.0
    run_timeout: float = 120.0


def quick_settings() -> Settings:
    """The CI size: 4 trials of 12 prompts."""
    return Settings(trials=4, prompts=12, run_timeout=60.0)


def _command(url: str, folder: Path) -> list[str]:
    return [
        sys.executable, "-m", "gptunnel_async.cli", "--base-url", url, "batch",
        str(folder / "prompts.txt"), "-o", str(folder / "out"), "--no-progress", "-c", "8",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "GPTUNNEL_API_KEY": API_KEY}


def _run_together(cmd: list[str], count: int, timeout: float) -> list[tuple[int, int, str]]:
    """Start ``count`` copies at once; their (pid, exit code, stderr)."""
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
        )
        for _ in range(count)
    ]
    out = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child
            _, err = proc.communicate()
        out.append((proc.pid, proc.returncode, err))
    return out


def trial(emu: EmulatorProcess, s: Settings, work: Path, n: int) -> dict[str, Any]:
    folder = work / f"trial{n:02d}"
    folder.mkdir()
    prompts = [f"together-{s.seed}-{n:02d}-{i:04d}" for i in range(s.prompts)]
    (folder / "prompts.txt").write_text("\n".join(prompts) + "\n")
    cmd = _command(emu.url, folder)
    count = 2 + n % 3
    runs = _run_together(cmd, count, s.run_timeout)
    pids = {pid for pid, _, _ in runs}
    refused = [(pid, REFUSED.search(err)) for pid, _, err in runs if REFUSED.search(err)]
    named = all(int(m.group(1)) in pids - {pid} for pid, m in refused if m is not None)
    one_line = all(err.count("error:") == 1 for _, _, err in runs if REFUSED.search(err))
    before = Counter[str](emu.control("counters")["creates_by_prompt"])
    last = subprocess.run(
        cmd, capture_output=True, text=True, timeout=s.run_timeout, env=_env(), check=False
    )
    after = Counter[str](emu.control("counters")["creates_by_prompt"])
    lines, torn = [], 0
    for line in (folder / "out" / "manifest.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            torn += 1
    return {
        "processes": count,
        "ran": count - len(refused),
        "refused": len(refused),
        "refusals name the holder, one line": named and one_line,
        "twice": sorted(p for p in prompts if after.get(p, 0) > 1),
        "never": sorted(p for p in prompts if after.get(p, 0) == 0),
        "new creates in the last run": sum(after[p] - before[p] for p in prompts),
        "last run exit": last.returncode,
        "manifest ok": not torn
        and sorted(line["prompt"] for line in lines) == sorted(prompts)
        and all(line["ok"] for line in lines),
        "torn": torn,
        "exits": sorted(code for _, code, _ in runs),
    }


TRIAL_COLUMNS = (
    "trial", "processes", "ran", "refused", "created twice", "last run creates", "torn lines",
    "exit codes",
)  # fmt: skip


def campaign(s: Settings, work: Path) -> tuple[str, bool, dict[str, Any]]:
    trials = []
    start = time.monotonic()
    with EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu:
        emu.control("reset", seed=s.seed)
        emu.control("faults", latency=[0.005, 0.05])
        for n in range(s.trials):
            trials.append(trial(emu, s, work, n))
        counters = emu.control("counters")
    wall = time.monotonic() - start
    twice = [p for t in trials for p in t["twice"]]
    checks = {
        "zero double creates": not twice,
        "every prompt created": not any(t["never"] for t in trials),
        "refusals: one line naming the holder": all(
            t["refusals name the holder, one line"] for t in trials
        ),
        "at most one run did the work": all(
            t["ran"] == 1 or t["new creates in the last run"] == 0 for t in trials
        ),
        "last run: nothing new, all ok": all(
            t["new creates in the last run"] == 0 and t["last run exit"] == 0 for t in trials
        ),
        "manifests whole and complete": all(t["manifest ok"] for t in trials),
        "emulator errors": not counters["internal_errors"],
    }
    rows = [
        (n, t["processes"], t["ran"], t["refused"], len(t["twice"]),
         t["new creates in the last run"], t["torn"], " ".join(map(str, t["exits"])))
        for n, t in enumerate(trials)
    ]  # fmt: skip
    fig = [
        ("trials (processes started together: 2, 3, 4, ...)", len(trials), ""),
        ("processes started", sum(t["processes"] for t in trials), ""),
        ("... refused at once (journal in use)", sum(t["refused"] for t in trials),
         mark(checks["refusals: one line naming the holder"])),
        ("prompts", len(trials) * s.prompts, ""),
        ("prompts created more than once", len(twice), mark(not twice)),
        ("creates by the final rerun of each trial", sum(t["new creates in the last run"]
                                                          for t in trials),
         mark(checks["last run: nothing new, all ok"])),
        ("torn manifest lines", sum(t["torn"] for t in trials),
         mark(checks["manifests whole and complete"])),
        ("wall time (s)", round(wall, 1), ""),
    ]  # fmt: skip
    report = [
        f"### Concurrency: {len(trials)} trials, 2-4 `gptunnel batch` processes on one folder, "
        f"{s.prompts} prompts each, seed {s.seed}",
        "",
        machine_note(),
        "",
        md_table(("figure", "value", "check"), fig),
        "",
        "<details><summary>Trials</summary>",
        "",
        md_table(TRIAL_COLUMNS, rows),
        "",
        "</details>",
    ]
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
    return "\n".join(report), not failed, {"checks": checks, "trials": trials}


def main(argv: list[str] | None = None) -> int:
    return campaign_main(
        argv,
        doc=__doc__ or "",
        quick_help="4 trials of 12 prompts",
        settings=lambda quick: quick_settings() if quick else Settings(),
        campaign=campaign,
        prefix="gptunnel-together-",
    )


if __name__ == "__main__":
    sys.exit(main())
