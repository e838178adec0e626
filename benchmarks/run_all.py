"""Run every benchmark in turn (each in its own interpreter) and print their markdown tables.

python benchmarks/run_all.py [--quick] [--only requests,scale,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = [
    "requests", "learning", "sweep", "scale", "throughput", "limits", "shared", "pg_batch",
]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=",".join(ALL))
    args = p.parse_args()
    status = 0
    for name in args.only.split(","):
        cmd = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
        shown = " ".join(["python", f"benchmarks/bench_{name}.py", *cmd[2:]])
        print(f"\n## bench_{name}.py\n\n`{shown}`\n", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"\n_(took {time.perf_counter() - t:.0f} s, exit {rc})_", flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
