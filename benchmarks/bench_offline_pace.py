"""How fast a plain client's waits return against a time-scaled emulator (the offline recipe).

The README's offline recipe runs ``python -m gptunnel_async.testing --time-scale 20`` and points
an unconfigured ``AsyncGPTunnel()`` at it. The emulator announces its clock; a client on loopback
follows it. This measures, for the same video tasks on the same emulator, the delay between a
task finishing and ``media.wait`` returning it, for:

- ``follows``: a plain client (default schedule, adopts the announced time scale);
- ``real pace``: a client given ``AdaptivePolicy()`` explicitly, which keeps real-time pacing
  (what every client did before the announcement), as the baseline.

Prints both and their ratio. ``--quick``: fewer tasks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel
from gptunnel_async.testing import Emulator, EmulatorConfig, serve

VIDEO = "glabs-veo-3-1-fast"


async def delays(emu: Emulator, url: str, policy: AdaptivePolicy | None, n: int) -> list[float]:
    """Seconds between each task's finish (emulator clock) and its wait returning."""
    out: list[float] = []
    async with AsyncGPTunnel("bench", base_url=url, poll_policy=policy) as client:

        async def one(k: int) -> None:
            done = await client.media.generate(model=VIDEO, prompt=f"waves {k}", timeout=900)
            returned = anyio.current_time()
            finished = emu.finished_at(done.id)
            assert finished is not None
            out.append(returned - finished)

        async with anyio.create_task_group() as tg:
            for k in range(n):
                tg.start_soon(one, k)
    return out


async def main(quick: bool, time_scale: float) -> None:
    n = 3 if quick else 8
    emu = Emulator(EmulatorConfig(time_scale=time_scale, seed=5))
    async with serve(emu) as server:
        follows = await delays(emu, server.url, None, n)
        real = await delays(emu, server.url, AdaptivePolicy(), n)
    f, r = statistics.mean(follows), statistics.mean(real)
    print(f"emulator --time-scale {time_scale:g}, {n} video tasks each")
    print(f"follows the announced clock: mean delay {f:.2f} s, max {max(follows):.2f} s")
    print(f"real pace (baseline):        mean delay {r:.2f} s, max {max(real):.2f} s")
    print(f"ratio follows/real: {f / r:.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--time-scale", type=float, default=20.0)
    args = p.parse_args()
    anyio.run(main, args.quick, args.time_scale)
