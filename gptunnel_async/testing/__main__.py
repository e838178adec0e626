"""``python -m gptunnel_async.testing``: serve the emulator on loopback until interrupted.

Prints exactly one line, the base URL, and flushes it so a parent process can read it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._app import Emulator
from ._config import EmulatorConfig
from ._process import serve_forever


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gptunnel_async.testing", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="loopback address only")
    p.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="task durations are divided by this (announced to clients in every answer)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--api-key", action="append", default=None, help="accepted key (repeatable)")
    p.add_argument("--balance", type=float, default=1_000_000.0, help="organisation balance")
    p.add_argument("--link-ttl", type=float, default=48 * 3600.0, help="emulator seconds")
    p.add_argument("--failure-rate", type=float, default=0.0, help="tasks that end failed")
    p.add_argument("--never-finish-rate", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0, help="API requests answered 5xx")
    p.add_argument("--drop-rate", type=float, default=0.0, help="dropped before processing")
    p.add_argument("--drop-after-rate", type=float, default=0.0, help="processed, then dropped")
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-delay", type=float, default=30.0)
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    p.add_argument("--rate-limit-rps", type=float, default=None)
    return p


def build(args: argparse.Namespace) -> Emulator:
    """An emulator configured from parsed command-line arguments."""
    config = EmulatorConfig(
        api_keys=set(args.api_key) if args.api_key else None,
        time_scale=args.time_scale,
        seed=args.seed,
        org_balance=args.balance,
        link_ttl=args.link_ttl,
    )
    emu = Emulator(config)
    f = emu.faults
    f.task_failure_rate = args.failure_rate
    f.never_finish_rate = args.never_finish_rate
    f.error_rate = args.error_rate
    f.drop_rate = args.drop_rate
    f.drop_after_rate = args.drop_after_rate
    f.slow_rate = args.slow_rate
    f.slow_delay = args.slow_delay
    f.latency = args.latency
    f.rate_limit_rps = args.rate_limit_rps
    return emu


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        serve_forever(build(args), args.host, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
