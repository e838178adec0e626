"""Midjourney, step by step: imagine a grid, upsample one image, then vary it.

    python examples/midjourney_chain.py --offline "an old IBM PC on a light background"
    GPTUNNEL_API_KEY=... python examples/midjourney_chain.py "an old IBM PC on a light background"

Each step is an action on the finished task before it (``imagine`` -> ``upsample(2)`` ->
``variation(mode="high")``), and each is waited for with a progress callback that prints
Midjourney's ``percent``. Every action is billed (except upsample on MJ v5+), checked locally
against what the parent task offers before it is sent, and never re-sent once it may have
reached the server. Printing each task's id lets you resume with ``client.midjourney.wait(id)``
after a crash, without paying again.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from gptunnel_async import AsyncGPTunnel, MidjourneyTask
from gptunnel_async.testing import offline_client


@asynccontextmanager
async def open_client(offline: bool, time_scale: float) -> AsyncIterator[AsyncGPTunnel]:
    """The real API (key from GPTUNNEL_API_KEY), or the emulator on a loopback port."""
    if not offline:
        async with AsyncGPTunnel() as client:
            yield client
        return
    async with offline_client(time_scale=time_scale) as client:
        yield client


def progress(step: str) -> Callable[[MidjourneyTask], None]:
    """A progress callback for one step: prints each new percent once."""
    last: list[float] = [-1.0]

    def show(task: MidjourneyTask) -> None:
        if task.percent != last[0]:
            last[0] = task.percent
            print(f"  {step}: {task.percent:3.0f} %")

    return show


async def run(prompt: str, *, offline: bool, time_scale: float) -> None:
    async with open_client(offline, time_scale) as client:
        mj = client.midjourney

        grid = await mj.imagine(prompt)  # billed
        print(f"imagine: task {grid.id}")
        grid = await mj.wait(grid, on_progress=progress("imagine"))
        print(f"grid: {grid.url}  (offers upsample of {grid.can_upsample})")

        up = await mj.upsample(grid, 2)  # free on MJ v5+
        print(f"upsample(2): task {up.id}")
        up = await mj.wait(up, on_progress=progress("upsample"))
        print(f"upsample: {up.url}  (variation modes {up.variation_modes})")

        vary = await mj.variation(up, mode="high")  # billed
        print(f"variation(high): task {vary.id}")
        vary = await mj.wait(vary, on_progress=progress("variation"))
        print(f"variation: {vary.url}")


def main() -> None:
    parser = argparse.ArgumentParser(description="imagine -> upsample(2) -> variation(high)")
    parser.add_argument("prompt", nargs="?", default="an old IBM PC on a light background")
    parser.add_argument("--offline", action="store_true", help="use the built-in emulator")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("GPTUNNEL_EXAMPLE_TIME_SCALE", "20")),
        help="offline: how much faster than real time the emulator runs (default 20)",
    )
    args = parser.parse_args()
    offline = args.offline or not os.environ.get("GPTUNNEL_API_KEY")
    print("using", "the offline emulator" if offline else "the GPTunnel API")
    time_scale = args.time_scale if offline else 1.0
    anyio.run(lambda: run(args.prompt, offline=offline, time_scale=time_scale))


if __name__ == "__main__":
    main()
