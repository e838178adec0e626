"""Cold-start cost: ``import gptunnel_async``, ``from gptunnel_async import AsyncGPTunnel`` and
``gptunnel --help``, this tree against a baseline commit, in the same run.

python benchmarks/bench_startup.py [--baseline REV] [--repeat N] [--quick]

A bot or a serverless function pays the import on every cold start, so it is measured the way
they pay it: a fresh interpreter each time. The baseline is materialised with ``git archive``
into a temporary folder (nothing in the work tree changes); each tree runs with its own
``PYTHONPATH`` and its own bytecode cache, warmed once before timing. Runs alternate between
the two trees so that the machine's noise (other processes, CPU frequency) falls on both
alike; figures are medians, and the verdict is their ratio, current / baseline.

Two measures, side by side:
- ``-X importtime``: the interpreter's own count of microseconds spent importing (the sum of
  the top-level entries), median over the repeats, plus the heaviest imports of one run;
- wall time of the whole process (interpreter start included), median over the repeats.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The last commit before the startup work (lazy imports): "today's" figures in the issue.
DEFAULT_BASELINE = "055964e"

CASES: dict[str, str] = {
    "import gptunnel_async": "import gptunnel_async",
    "from gptunnel_async import AsyncGPTunnel": "from gptunnel_async import AsyncGPTunnel",
    # What the ``gptunnel`` console script runs (``gptunnel_async.cli:main``).
    "gptunnel --help": (
        "import sys\nfrom gptunnel_async.cli import main\nsys.exit(main(['--help']))"
    ),
}

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


@dataclass(frozen=True)
class Run:
    wall: float  # seconds, the whole process
    imports: float  # seconds, the sum of the top-level entries of -X importtime
    heaviest: tuple[tuple[str, float], ...]  # (module, cumulative seconds), largest first


def materialise(rev: str, into: Path) -> Path:
    """The tree of ``rev`` in a fresh folder (``git archive``), without touching the checkout."""
    archive = into / "baseline.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev], stdout=fh, check=True)
    tree = into / "tree"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


def run_once(tree: Path, code: str, cache: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPTUNNEL_", "PYTHON"))}
    env["PYTHONPATH"] = str(tree)
    env["PYTHONPYCACHEPREFIX"] = str(cache)  # each tree its own bytecode, both warm
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{code!r} failed in {tree}:\n{done.stderr[-2000:]}")
    top = 0
    cumulative: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        total_us, indent, name = int(match[2]), len(match[3]), match[4]
        if indent == 1:  # the line format puts one space before a top-level name
            top += total_us
        cumulative.append((name, total_us / 1e6))
    heaviest = tuple(sorted(cumulative, key=lambda item: -item[1])[:8])
    return Run(wall=wall, imports=top / 1e6, heaviest=heaviest)


def measure(
    trees: dict[str, Path], caches: dict[str, Path], repeat: int
) -> dict[str, dict[str, list[Run]]]:
    runs: dict[str, dict[str, list[Run]]] = {case: {name: [] for name in trees} for case in CASES}
    for case, code in CASES.items():
        for name, tree in trees.items():  # warm-up: compile the bytecode, fill the OS cache
            run_once(tree, code, caches[name])
        for i in range(repeat):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name in order:
                runs[case][name].append(run_once(trees[name], code, caches[name]))
    return runs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report(runs: dict[str, dict[str, list[Run]]], baseline: str, repeat: int) -> None:
    print(f"\n{repeat} runs each, alternating; medians. ratio = this tree / baseline {baseline}\n")
    print("| case | importtime base | importtime now | ratio | wall base | wall now | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case, by_tree in runs.items():
        base, now = by_tree["baseline"], by_tree["current"]
        imp_b = statistics.median(r.imports for r in base)
        imp_n = statistics.median(r.imports for r in now)
        wall_b = statistics.median(r.wall for r in base)
        wall_n = statistics.median(r.wall for r in now)
        print(
            f"| `{case}` | {ms(imp_b)} | {ms(imp_n)} | {imp_n / imp_b:.2f} "
            f"| {ms(wall_b)} | {ms(wall_n)} | {wall_n / wall_b:.2f} |"
        )
    print("\nHeaviest imports (cumulative, the median run of each):")
    for case, by_tree in runs.items():
        print(f"\n`{case}`")
        for name in ("baseline", "current"):
            ordered = sorted(by_tree[name], key=lambda r: r.imports)
            middle = ordered[len(ordered) // 2]
            shown = ", ".join(f"{mod} {ms(t)}" for mod, t in middle.heaviest[:6])
            print(f"- {name}: {shown}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    p.add_argument("--repeat", type=int, default=15, help="timed runs per tree and case")
    p.add_argument("--quick", action="store_true", help="5 runs each (a smoke run)")
    args = p.parse_args(argv)
    repeat = 5 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp_path = Path(tmp)
        trees = {"baseline": materialise(args.baseline, tmp_path), "current": ROOT}
        caches = {name: tmp_path / f"pycache-{name}" for name in trees}
        started = time.perf_counter()
        runs = measure(trees, caches, repeat)
        report(runs, args.baseline, repeat)
        print(f"\n_(python {sys.version.split()[0]}, took {time.perf_counter() - started:.0f} s)_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
