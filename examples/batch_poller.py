"""Batch: create one image per prompt, poll them all with one poller, save each as it finishes.

    python examples/batch_poller.py --offline                      # emulator, examples/prompts.txt
    python examples/batch_poller.py --offline -p "a cat" -p "a dog" --out out/
    GPTUNNEL_API_KEY=... python examples/batch_poller.py prompts.txt --out out/

What it shows:

* creates (billed) run a few at a time, and each task goes to the poller as soon as it exists;
  a prompt the SDK rejects locally costs nothing and is reported, a create whose outcome is
  unknown is reported with ``may_have_been_created`` (it is not re-sent);
* one ``Poller(client, PollerOptions(max_concurrency=...))`` polls every task on the adaptive
  schedule and yields each exactly once, in completion order, failures included;
* each finished file is saved with ``client.download(task, out_dir)`` (whole or not at all)
  while the others are still running; a summary closes the run.

(``generate_many(client, requests)`` does the create-and-poll part in one call; this script
spells it out to show the poller.)
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from gptunnel_async import AsyncGPTunnel, GPTunnelError, InvalidInputError, Poller, PollerOptions
from gptunnel_async.testing import offline_client

HERE = Path(__file__).parent


@dataclass
class Summary:
    saved: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    polls: int = 0


@asynccontextmanager
async def open_client(offline: bool, time_scale: float) -> AsyncIterator[AsyncGPTunnel]:
    """The real API (key from GPTUNNEL_API_KEY), or the emulator on a loopback port."""
    if not offline:
        async with AsyncGPTunnel() as client:
            yield client
        return
    async with offline_client(time_scale=time_scale) as client:
        yield client


async def create_all(
    client: AsyncGPTunnel,
    poller: Poller,
    prompts: list[str],
    *,
    model: str,
    ar: str | None,
    summary: Summary,
) -> None:
    """Create every task (at most 4 creates at once) and hand each to the poller."""
    limit = anyio.CapacityLimiter(4)

    async def create(index: int, prompt: str) -> None:
        async with limit:
            try:
                task = await client.media.create(model=model, prompt=prompt, ar=ar)
            except InvalidInputError as exc:  # checked locally: nothing sent, nothing billed
                summary.rejected.append(f"#{index} {prompt!r}: {exc}")
                print(f"#{index} rejected: {exc}")
                return
            except GPTunnelError as exc:
                maybe = getattr(exc, "may_have_been_created", False)
                note = " (the task may exist and be billed: not re-sent)" if maybe else ""
                summary.rejected.append(f"#{index} {prompt!r}: {exc}{note}")
                print(f"#{index} create failed: {exc}{note}")
                return
        poller.add(task, tag=(index, prompt))
        print(f"#{index} created {task.id}")

    try:
        async with anyio.create_task_group() as tg:
            for index, prompt in enumerate(prompts):
                tg.start_soon(create, index, prompt)
    finally:
        poller.close()  # no more tasks: iteration ends once every added task was yielded


async def run(
    prompts: list[str],
    out_dir: Path,
    *,
    offline: bool,
    time_scale: float,
    model: str,
    ar: str | None,
    concurrency: int,
) -> Summary:
    summary = Summary()
    downloads = anyio.CapacityLimiter(4)  # files are fetched a few at a time

    async with open_client(offline, time_scale) as client:

        async def save(task_id: str | None, task: Any, index: int) -> None:
            async with downloads:
                try:
                    path = await client.download(task, out_dir)  # out/<task id>.<ext>
                except GPTunnelError as exc:
                    summary.failed.append(f"#{index} {task_id}: download failed: {exc}")
                    print(f"#{index} {task_id} download failed: {exc}")
                    return
            summary.saved.append(path)
            print(f"#{index} {task_id} saved {path} ({path.stat().st_size} bytes)")

        # keep_open: the creates run beside the loop below, adding tasks as they go.
        async with (
            Poller(client, PollerOptions(max_concurrency=concurrency, keep_open=True)) as poller,
            anyio.create_task_group() as tg,
        ):
            creates = partial(create_all, model=model, ar=ar, summary=summary)
            tg.start_soon(creates, client, poller, prompts)
            async for result in poller:  # completion order, each task exactly once
                index, _prompt = result.tag
                summary.polls += result.polls
                if result.ok:
                    tg.start_soon(save, result.id, result.task, index)  # save while others run
                else:
                    summary.failed.append(f"#{index} {result.id}: {result.error}")
                    print(f"#{index} {result.id} failed: {result.error}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description="Create, poll and save a batch of images.")
    parser.add_argument("prompts_file", nargs="?", type=Path, default=HERE / "prompts.txt")
    parser.add_argument("-p", "--prompt", action="append", help="a prompt (instead of a file)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="where files go")
    parser.add_argument("--model", default="google-imagen-3")
    parser.add_argument("--ar", default="16:9")
    parser.add_argument("--concurrency", type=int, default=8, help="simultaneous polls")
    parser.add_argument("--offline", action="store_true", help="use the built-in emulator")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("GPTUNNEL_EXAMPLE_TIME_SCALE", "20")),
        help="offline: how much faster than real time the emulator runs (default 20)",
    )
    args = parser.parse_args()
    prompts = args.prompt or [
        line.strip() for line in args.prompts_file.read_text("utf-8").splitlines() if line.strip()
    ]
    # Create the directory first: client.download() treats an existing directory (or a str
    # ending in "/") as "save in here", but a missing path as a *file* name.
    args.out.mkdir(parents=True, exist_ok=True)
    offline = args.offline or not os.environ.get("GPTUNNEL_API_KEY")
    print("using", "the offline emulator" if offline else "the GPTunnel API")
    started = time.monotonic()
    summary = anyio.run(
        lambda: run(
            prompts,
            args.out,
            offline=offline,
            time_scale=args.time_scale if offline else 1.0,
            model=args.model,
            ar=args.ar or None,
            concurrency=args.concurrency,
        )
    )
    print(
        f"summary: {len(prompts)} prompts, {len(summary.saved)} saved, "
        f"{len(summary.failed)} failed, {len(summary.rejected)} not created; "
        f"{summary.polls} polls in {time.monotonic() - started:.1f} s"
    )
    for line in summary.failed + summary.rejected:
        print("  ", line)
    raise SystemExit(0 if not summary.failed and not summary.rejected else 1)


if __name__ == "__main__":
    main()
