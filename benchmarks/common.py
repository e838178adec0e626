"""Shared helpers for the poller benchmarks.

- ``EmulatorProcess``: the emulator in a *separate process* on loopback (so its CPU does not
  distort the SDK's; ``gptunnel_async.testing.EmulatorProcess``), wrapped with a small control
  route ``/_bench/*`` (reset with a seed, set durations and faults, read counters and each
  task's finish time). Control requests are answered before the emulator sees them, so they
  never appear in its counters.
- ``naive_wait``: the baseline public clients use, ``while True: await sleep(1); poll``
  (compressed: ``sleep(1 / time_scale)``).
- ``delay_stats`` / ``fmt`` / ``md_table``: statistics and markdown output.

Run as a script (``python benchmarks/common.py --serve ...``) it is the emulator process itself.
Clocks: the emulator stamps tasks with ``time.monotonic()``; on asyncio ``anyio.current_time()``
is ``loop.time()`` which is ``time.monotonic()`` too, and CLOCK_MONOTONIC is system-wide on Linux,
so times compare across the two processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async.testing import EmulatorProcess as ChildEmulator  # noqa: E402

API_KEY = "bench-key"
IMAGE_MODEL = "flux-dev"
VIDEO_MODEL = "glabs-veo-3"
# The deliberately wide spreads (real-time seconds, log-uniform).
WIDE = {"image": (5.0, 60.0), "video": (60.0, 300.0)}


# --------------------------------------------------------------------------------------------
# the emulator process
# --------------------------------------------------------------------------------------------


class EmulatorProcess(ChildEmulator):
    """``with EmulatorProcess(time_scale=10) as emu: emu.url ...`` — this file's emulator, with
    its ``/_bench/*`` control route, in a child process."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        seed: int = 1,
        durations: dict[str, tuple[float, float]] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        cmd += ["--time-scale", str(time_scale), "--seed", str(seed), "--api-key", API_KEY]
        for model, (lo, hi) in (durations or {}).items():
            cmd += ["--duration", f"{model}={lo}:{hi}"]
        super().__init__(extra_args, command=cmd, cwd=ROOT)


async def create_tasks(http: Any, url: str, n: int, *, prefix: str, workers: int = 32) -> list[str]:
    """Create ``n`` image tasks straight over HTTP (``workers`` at a time); their ids."""
    import anyio

    ids: list[str] = []

    async def creator(k: int) -> None:
        for i in range(k, n, workers):
            r = await http.post(
                f"{url}/v1/media/create",
                json={"model": IMAGE_MODEL, "prompt": f"{prefix}{i}"},
                headers={"Authorization": API_KEY},
            )
            ids.append(r.json()["id"])

    async with anyio.create_task_group() as tg:
        for k in range(workers):
            tg.start_soon(creator, k)
    return ids


async def ctl(http: Any, url: str, op: str, **payload: Any) -> Any:
    """Call the emulator's control route (``http`` is any ``httpx.AsyncClient``)."""
    r = await http.post(f"{url}/_bench/{op}", json=payload, timeout=120)
    r.raise_for_status()
    return r.json()


def _serve_main(argv: Sequence[str]) -> int:
    from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve_forever
    from gptunnel_async.testing._http import Request, json_response

    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true")
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--api-key", default=API_KEY)
    p.add_argument("--duration", action="append", default=[])
    p.add_argument("--rate-limit-rps", type=float, default=None)
    args = p.parse_args(argv)
    durations = {}
    for spec in args.duration:
        model, _, rng = spec.partition("=")
        lo, _, hi = rng.partition(":")
        durations[model] = DurationDist(float(lo), float(hi))
    config = EmulatorConfig(
        api_keys={args.api_key}, time_scale=args.time_scale, seed=args.seed, durations=durations
    )

    class BenchEmulator(Emulator):
        def __init__(self, config: EmulatorConfig) -> None:
            super().__init__(config)
            #: when the server last had a result request for each task (time.monotonic()):
            #: the poll that found it done, so a detection delay splits into the schedule's
            #: part and the way back to the caller
            self.last_poll: dict[str, float] = {}

        async def handle(self, request: Request) -> Any:
            if request.path.startswith("/_bench/"):
                body = json.loads(request.body or b"{}")
                return json_response(self._control(request.path[len("/_bench/") :], body))
            if request.path == "/v1/media/result":
                task_id = request.query.get("task_id")
                if task_id is None and request.body:
                    task_id = json.loads(request.body).get("task_id")
                self.last_poll[str(task_id)] = request.received or time.monotonic()
            return await super().handle(request)

        def _control(self, op: str, body: dict[str, Any]) -> Any:
            c = self.counters
            if op == "reset":  # forget tasks and counters; new seed => new duration sample
                if "seed" in body:
                    self.config.seed = int(body["seed"])
                if "durations" in body:
                    self.config.durations = {
                        m: DurationDist(float(lo), float(hi))
                        for m, (lo, hi) in body["durations"].items()
                    }
                self.reset()
                self.last_poll.clear()
                return {"ok": True, "now": time.monotonic()}
            if op == "faults":
                f = self.faults
                for k, v in body.items():
                    if k == "burst_429":
                        f.burst_429(*v)
                    else:
                        setattr(f, k, v)
                return {"ok": True}
            if op == "tasks":  # finish time and result-requests of each task
                out = {}
                for tid in body["ids"]:
                    task = self.store.get(tid)
                    out[tid] = {
                        "finished_at": c.finished_at(tid),
                        "t_created": task.t_created if task else None,
                        "t_end": task.t_end if task else None,
                        "requests": c.requests_by_task.get(tid, 0),
                        "t_last_poll": self.last_poll.get(tid),
                    }
                return out
            if op == "counters":
                return {
                    "api_requests_total": c.api_requests_total,
                    "requests_by_route": dict(c.requests_by_route),
                    "responses_by_status": {str(k): v for k, v in c.responses_by_status.items()},
                    "creates_total": c.creates_total,
                    "max_in_flight": c.max_in_flight,
                    "retry_after_violations": c.retry_after_violations,
                    "max_requests_in_window_1s": c.max_requests_in_window(1.0)
                    if body.get("window", True)
                    else None,
                    "sent_429": len(c.sent_429),
                    # creates per prompt (asked for: a batch's exactly-once check)
                    "creates_by_prompt": dict(c.creates_by_prompt) if body.get("prompts") else None,
                    "drops": c.drops,
                    "internal_errors": [repr(e) for e in self.internal_errors],
                }
            if op == "timeline":  # API arrival times and 429s sent (time.monotonic())
                return {"arrivals": list(c.arrivals), "sent_429": list(c.sent_429)}
            if op == "reset_counters":
                c.reset()
                return {"ok": True}
            return {"error": f"unknown op {op}"}

    emu = BenchEmulator(config)
    if args.rate_limit_rps:
        emu.faults.rate_limit_rps = args.rate_limit_rps
    serve_forever(emu)
    return 0


# --------------------------------------------------------------------------------------------
# the naive baseline
# --------------------------------------------------------------------------------------------


async def naive_wait(client: Any, task_id: str, interval: float) -> tuple[Any, int]:
    """What public clients do: ``while True: await sleep(1); poll`` (``interval`` = 1/scale).

    Returns the finished task and the number of polls it took.
    """
    import anyio

    polls = 0
    while True:
        await anyio.sleep(interval)
        task = await client.media.result(task_id)
        polls += 1
        if task.is_finished:
            return task, polls


# --------------------------------------------------------------------------------------------
# statistics and output
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return math.nan
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def delay_stats(delays: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(delays),
        "mean": statistics.fmean(delays) if delays else math.nan,
        "p50": percentile(delays, 50),
        "p95": percentile(delays, 95),
        "p99": percentile(delays, 99),
        "max": max(delays) if delays else math.nan,
    }


def fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        return f"{x:.{digits}f}"
    return str(x)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


def mark(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def machine_note() -> str:
    import hashlib
    import platform

    import httpx

    load = os.getloadavg()
    policy = ROOT / "gptunnel_async" / "_polling" / "policy.py"
    digest = hashlib.sha1(policy.read_bytes()).hexdigest()[:10]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except OSError:
        head = "?"
    return (
        f"Python {platform.python_version()}, httpx {httpx.__version__}, "
        f"{os.cpu_count()} CPUs, load average at start {load[0]:.2f}; "
        f"git HEAD {head}, _polling/policy.py sha1 {digest}"
    )


if __name__ == "__main__":
    if "--serve" in sys.argv:
        sys.exit(_serve_main(sys.argv[1:]))
    print(__doc__)
