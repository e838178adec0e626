"""Quick start: generate images for every line of a prompts file and save them — offline.

Runs the whole job against the built-in GPTunnel emulator on a loopback port (no key, no
network): creates with bounded concurrency, polls adaptively, saves each file as it finishes.

    python examples/quickstart.py [prompts.txt] [out-dir]

Against the real API, drop the emulator and build the client as ``AsyncGPTunnel()`` (the key
comes from GPTUNNEL_API_KEY).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from gptunnel_async import PollerOptions, generate_many
from gptunnel_async.testing import offline_client

SPEED = 20.0  # the emulator runs 20× faster than the real service; the schedule follows


async def main(prompts: list[str], out_dir: Path) -> None:
    async with offline_client(time_scale=SPEED) as client:
        requests = [
            {"model": "google-imagen-3", "prompt": p, "ar": "16:9", "tag": i}
            for i, p in enumerate(prompts)
        ]
        async with generate_many(client, requests, PollerOptions(max_concurrency=8)) as results:
            async for result in results:
                if not result.ok:
                    print(f"#{result.index} failed: {result.error}")
                    continue
                # streamed to a temporary file, renamed into place whole; no key sent there
                path = await client.download(result.task, out_dir / f"{result.index:04d}")
                print(f"#{result.index} {result.id} → {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    here = Path(__file__).parent
    prompts_path = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "prompts.txt"
    out_path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("out")
    lines = [line.strip() for line in prompts_path.read_text("utf-8").splitlines()]
    out_path.mkdir(parents=True, exist_ok=True)
    anyio.run(main, [line for line in lines if line], out_path)
