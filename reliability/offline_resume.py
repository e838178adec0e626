"""The quick start's offline batch, stopped with Ctrl-C and run again: nothing is created twice.

``python reliability/offline_resume.py [--quick] [--trials T] [--prompts N] [--seed S]``

Each trial runs the README's command, ``gptunnel --offline batch PROMPTS -o OUT`` (no journal
option: the default journal in ``OUT``), sends it SIGINT after a random number of creates,
then runs the same command again to the end. The in-process emulator keeps its tasks beside
the journal, one line per task created, so the audit counts every create of both runs from
that file: after the rerun each prompt was created exactly once, the tasks the first run
created were not created again, and the rerun's manifest marks exactly them ``resumed``. The
first trial runs the quick start's own command on ``examples/prompts.txt``; the others a longer
file with ``--max-pending 4``, so that the stop lands between creates too.
"""

from __future__ import annotations

import json
import os
import random
import signal
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

QUICK_START = ROOT / "examples" / "prompts.txt"
TASKS = ".gptunnel-journal.sqlite.emulator.jsonl"  # beside the default journal


@dataclass
class Settings:
    trials: int = 10
    prompts: int = 50
    seed: int = 1
    run_timeout: float = 180.0


def quick_settings() -> Settings:
    """The CI size: the quick start's file, then one longer batch."""
    return Settings(trials=2, prompts=20, run_timeout=90.0)


def _command(prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gptunnel_async.cli", "--offline", "batch", str(prompts),
        "-o", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    return {**env, "PYTHONPATH": path}


def _created(out: Path) -> list[str]:
    path = out / TASKS
    prompts = []
    for line in path.read_text("utf-8").splitlines() if path.exists() else []:
        try:
            prompts.append(json.loads(line)["prompt"])
        except (ValueError, KeyError):
            continue  # a line cut by the stop
    return prompts


def trial(s: Settings, work: Path, n: int, rng: random.Random) -> dict[str, Any]:
    folder = work / f"trial{n:02d}"
    folder.mkdir()
    if n == 0:
        source = QUICK_START
    else:
        source = folder / "prompts.txt"
        lines = [f"offline resume {s.seed}-{n:02d} prompt {i}" for i in range(s.prompts)]
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prompts = [line for line in source.read_text("utf-8").splitlines() if line.strip()]
    out = folder / "out"
    # the quick start's command as it is; the longer batches create a few at a time, so that
    # the stop also lands between creates
    cmd = _command(source, out) if n == 0 else _command(source, out, "--max-pending", "4")
    stop_after = rng.randint(1, max(1, len(prompts) - 1))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.monotonic() + s.run_timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if len(_created(out)) >= stop_after:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, to the run we started
            break
        time.sleep(0.005)
    try:
        _, err = proc.communicate(timeout=s.run_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    first = Counter(_created(out))
    rerun = subprocess.run(
        cmd, capture_output=True, text=True, timeout=s.run_timeout, env=_env(), check=False
    )
    total = Counter(_created(out))
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text("utf-8").splitlines()]
    resumed = sum(1 for line in lines if line["resumed"])
    return {
        "prompts": len(prompts),
        "interrupted": proc.returncode == 130,
        "first exit": proc.returncode,
        "created before the stop": sum(first.values()),
        "created by the rerun": sum(total.values()) - sum(first.values()),
        "created again": sum(1 for p in first if total[p] > 1),
        "each once": total == Counter(prompts),
        "rerun exit": rerun.returncode,
        "all ok": len(lines) == len(prompts) and all(line["ok"] for line in lines),
        "resumed": resumed,
        "resumed = created before": resumed == sum(first.values()),
        "stderr": (err + rerun.stderr)[-300:],
    }


def campaign(s: Settings, work: Path) -> tuple[str, bool, dict[str, Any]]:
    rng = random.Random(s.seed)
    trials = [trial(s, work, n, rng) for n in range(s.trials)]
    checks = {
        "every run was interrupted by Ctrl-C (exit 130)": all(t["interrupted"] for t in trials),
        "zero creates again for tasks created before the stop": all(
            t["created again"] == 0 for t in trials
        ),
        "each prompt created exactly once": all(t["each once"] for t in trials),
        "rerun finished, all ok": all(t["rerun exit"] == 0 and t["all ok"] for t in trials),
        "manifest: resumed = tasks of the first run": all(
            t["resumed = created before"] for t in trials
        ),
    }
    rows = [
        (n, t["prompts"], t["first exit"], t["created before the stop"], t["created by the rerun"],
         t["created again"], t["resumed"], t["rerun exit"])
        for n, t in enumerate(trials)
    ]  # fmt: skip
    report = [
        f"### Offline quick start, Ctrl-C and rerun: {len(trials)} trials (the first on "
        f"`examples/prompts.txt`, then {s.prompts} prompts), seed {s.seed}",
        "",
        machine_note(),
        "",
        md_table(("check", "result"), [(name, mark(ok)) for name, ok in checks.items()]),
        "",
        md_table(COLUMNS, rows),
    ]
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
        report += [f"trial {n}: {t['stderr']!r}" for n, t in enumerate(trials)]
    return "\n".join(report), not failed, {"checks": checks, "trials": trials}


COLUMNS = (
    "trial", "prompts", "first run exit", "created before Ctrl-C", "created by the rerun",
    "created again", "manifest `resumed`", "rerun exit",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return campaign_main(
        argv,
        doc=__doc__ or "",
        quick_help="2 trials",
        settings=lambda quick: quick_settings() if quick else Settings(),
        campaign=campaign,
        prefix="gptunnel-offline-",
    )


if __name__ == "__main__":
    sys.exit(main())
