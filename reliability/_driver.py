"""The process the crash campaign SIGKILLs: one journaled batch against an emulator URL.

``python reliability/_driver.py URL --journal J --out DIR --count N --prefix P``

Runs ``generate_many(prompts, journal=J, download_to=DIR)`` and prints one JSON line per
result as it comes (``index``, ``id``, ``outcome``, ``error``, ``from_journal``, ``path``), then a
final ``{"done": true}`` line. Rerun with the same arguments to resume after a kill. The URL must
be loopback (the client refuses plain http to anything else).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import (  # noqa: E402
    AsyncGPTunnel,
    PollerOptions,
    generate_many,
)
from gptunnel_async.poller import AdaptivePolicy  # noqa: E402
from reliability._common import classify  # noqa: E402
from reliability._emulator import API_KEY, MODEL  # noqa: E402


def prompts(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def run(args: argparse.Namespace) -> None:
    requests = [{"model": MODEL, "prompt": p} for p in prompts(args.prefix, args.count)]
    policy = AdaptivePolicy(clock_scale=args.time_scale)
    async with (
        AsyncGPTunnel(
            API_KEY, base_url=args.url, timeout=httpx.Timeout(10.0, connect=2.0), poll_policy=policy
        ) as client,
        generate_many(
            client,
            requests,
            PollerOptions(
                max_concurrency=args.concurrency,
                task_timeout=args.task_timeout,
                deadline=args.deadline,
            ),
            max_pending=args.max_pending,
            journal=args.journal,
            download_to=args.out,
        ) as batch,
    ):
        async for r in batch:
            line = {
                "index": r.index,
                "id": r.id,
                "outcome": classify(r),
                "error": type(r.error).__name__ if r.error else None,
                "from_journal": r.from_journal,
                "path": str(r.path) if r.path else None,
            }
            print(json.dumps(line), flush=True)
    print(json.dumps({"done": True}), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--journal", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--time-scale", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-pending", type=int, default=100, help="spreads creates over the run")
    p.add_argument("--task-timeout", type=float, default=60.0)
    p.add_argument("--deadline", type=float, default=240.0)
    args = p.parse_args(argv)
    logging.getLogger("gptunnel_async").setLevel(logging.ERROR)
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
