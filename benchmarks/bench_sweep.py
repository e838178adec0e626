"""The requests-vs-delay curve of the policy's main knob, ``AdaptivePolicy.target_delay``.

Wide spreads (image 5-60 s at scale 10, video 60-300 s at scale 20), emulator in its own
process. For each target: a fresh policy warmed on one batch (another seed), then measured on a
batch with the same seed for every target, so every point sees the same task durations.
``× fewer`` is against the drift-free naive 1 s loop on the very same durations (ceil(T) polls).

    python benchmarks/bench_sweep.py [--quick]
"""

from __future__ import annotations

import argparse

import anyio
from common import IMAGE_MODEL, VIDEO_MODEL, WIDE, EmulatorProcess, fmt, machine_note, md_table
from reqbench import run_batch, sdk_policy

TARGETS = {"image": (0.5, 0.7, 0.93, 1.2, 1.6), "video": (1.5, 2.0, 2.85, 4.0, 6.0)}


async def main_async(args: argparse.Namespace) -> str:
    n = 150 if not args.quick else 40
    rows = []
    for kind in ("image", "video"):
        model = IMAGE_MODEL if kind == "image" else VIDEO_MODEL
        scale = 10.0 if kind == "image" else 20.0
        k = 40 if kind == "image" else 100
        with EmulatorProcess(time_scale=scale, durations={model: WIDE[kind]}) as emu:
            for target in TARGETS[kind]:
                policy = sdk_policy(scale, target_delay={kind: target})
                common = {
                    "model": model,
                    "n": n,
                    "time_scale": scale,
                    "policy": policy,
                    "in_flight": k,
                }
                await run_batch(emu.url, label="warmup", seed=2002, **common)
                r = await run_batch(emu.url, label="measure", seed=1001, **common)
                ideal, _ = r.ideal_naive()
                s = r.stats
                rows.append(
                    [
                        f"{kind} {WIDE[kind][0]:g}-{WIDE[kind][1]:g} s",
                        fmt(target),
                        n,
                        fmt(r.req_per_task),
                        fmt(ideal / r.req_per_task),
                        fmt(s["mean"]),
                        fmt(s["p95"]),
                        fmt(s["max"]),
                    ]
                )
                print(
                    f"  {kind} target {target}: {r.req_per_task:.2f} req/task, "
                    f"mean {s['mean']:.2f} s",
                    flush=True,
                )
    return "\n".join(
        [
            "### target_delay sweep (warm policy, real-time seconds)\n",
            machine_note() + "\n",
            md_table(
                [
                    "durations",
                    "target_delay",
                    "tasks",
                    "req/task",
                    "× fewer vs ideal naive",
                    "mean delay",
                    "p95",
                    "max",
                ],
                rows,
            ),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    print(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
