"""Slow creates, measured: a create answer that trickles in, and Ctrl-C on ``gptunnel batch``.

``python reliability/hostile_creates.py [--quick]``

Both run against the project's hostile server on loopback (``tests/hostile_server.py``), which
answers every create one byte every ``pause`` seconds (a read timeout never fires), and each is
compared, in the same run, with a baseline:

- **create**: ``client.media.create`` under ``anyio.move_on_after(0.1)``, client timeout 2 s.
  SDK: the default total create deadline (connect + write + read = 6 s). Baseline: no total
  deadline (``create_deadline=inf``), i.e. what a shielded create did before; the server's
  answer ends after ``--cap`` seconds. Wall time of each, and how each ended.
- **ctrl-c**: ``gptunnel batch`` of 3 prompts, SIGINT once the 3 creates are in flight.
  Seconds from SIGINT to exit against the trickling server, and (baseline) against the
  emulator, whose creates answer at once.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hostile_server import (  # noqa: E402
    Handler,
    HostileServer,
    Reply,
    Request,
    hostile_server,
    hostile_server_in_thread,
)

from gptunnel_async import AsyncGPTunnel, GPTunnelError  # noqa: E402
from gptunnel_async.testing import Emulator, EmulatorConfig, run_in_thread  # noqa: E402

KEY = "sk-hostile-creates-0001"


def trickler(pause: float, seconds: float) -> Handler:
    """Every create answered in full only after ``seconds``, one byte every ``pause``."""
    answer = b'{"code": 0, "id": "' + b"c" * 24 + b'", "status": "idle"}'
    body = answer.ljust(max(len(answer), int(seconds / pause)))

    async def handler(request: Request, reply: Reply) -> None:
        await reply.trickle(body, pause)

    return handler


async def one_create(pause: float, deadline: float | None, cap: float) -> tuple[float, str]:
    """The server's answer ends after ``cap`` seconds (a shielded create cannot be cut)."""
    async with (
        hostile_server(trickler(pause, cap)) as server,
        AsyncGPTunnel(KEY, base_url=server.url, timeout=2.0, create_deadline=deadline) as client,
    ):
        started = time.perf_counter()
        outcome = "the whole answer, after the caller's move_on_after(0.1)"
        try:
            with anyio.move_on_after(0.1):
                await client.media.create(model="google-imagen-3", prompt="slow")
        except GPTunnelError as exc:
            flag = getattr(exc, "may_have_been_created", False)
            outcome = f"{type(exc).__name__}, may_have_been_created={flag}"
        return time.perf_counter() - started, outcome


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}


def ctrl_c_exit(url: str, count: Callable[[], int], limit: float) -> tuple[float, int | None]:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "p.txt").write_text("a fox\nan owl\na heron\n", encoding="utf-8")
    command = [
        sys.executable, "-m", "gptunnel_async.cli", "--base-url", url, "--api-key", KEY,
        "batch", str(tmp / "p.txt"), "-o", str(tmp / "out"), "--no-progress",
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    ) as proc:
        while count() < 3 and proc.poll() is None:
            time.sleep(0.01)
        started = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        return time.perf_counter() - started, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 15 s answer for the baseline")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between bytes")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds a whole answer takes")
    args = parser.parse_args()
    cap = 15.0 if args.quick else args.cap

    sdk_s, sdk_end = anyio.run(one_create, args.pause, None, cap)
    base_s, base_end = anyio.run(one_create, args.pause, math.inf, cap)

    with hostile_server_in_thread(trickler(args.pause, 600.0)) as server:
        hostile: HostileServer = server
        slow_s, slow_code = ctrl_c_exit(
            hostile.url, lambda: hostile.count("POST", "/v1/media/create"), cap
        )
    emu = Emulator(EmulatorConfig(time_scale=1.0))
    with run_in_thread(emu) as url:
        fast_s, fast_code = ctrl_c_exit(url, lambda: emu.counters.creates_total, cap)

    print(f"### Slow creates (one byte every {args.pause:g} s), {os.cpu_count()} CPUs\n")
    print("| case | seconds | ended by |\n|---|---|---|")
    print(f"| create, SDK (default deadline) | {sdk_s:.1f} | {sdk_end} |")
    print(f"| create, baseline (no total deadline) | {base_s:.1f} | {base_end} |")
    print(f"| Ctrl-C, trickling server | {slow_s:.1f} | exit {slow_code} |")
    print(f"| Ctrl-C, baseline: emulator | {fast_s:.1f} | exit {fast_code} |")
    print(f"\ncreate: baseline / SDK = {base_s / sdk_s:.1f}x (the answer took {cap:g} s in all)")
    print(f"Ctrl-C: trickling / emulator = {slow_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
