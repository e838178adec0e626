"""``gptunnel batch``: many prompts → a folder of files and a JSONL manifest, resumably.

The SDK's ``generate_many`` does the work (bounded creates and polls, the journal, downloads
as tasks finish); this module feeds it the prompt file as a stream, writes one manifest line
per request as results arrive (flushed, so a killed run still shows how far it got), and keeps
the progress bar current. Rerunning the same command resumes from the journal: the manifest is
rewritten from scratch, since a resumed run yields every request again (finished ones from the
journal, at once).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from ._inputs import Defaults, Format, read_requests
from ._output import BatchProgress, describe

if TYPE_CHECKING:  # the SDK loads when a batch runs, not when ``gptunnel --help`` does
    from .. import AsyncGPTunnel
    from ..poller import BatchResult, BatchRun, PollerOptions

JOURNAL_NAME = ".gptunnel-journal.sqlite"
POLL_STATE_NAME = ".gptunnel-poll-state.json"  # beside the journal: what the schedule learned
MANIFEST_NAME = "manifest.jsonl"
_REFRESH_SECONDS = 0.25
#: Failure reasons kept for the summary line (every one is in the manifest).
FIRST_FAILURES = 3


@dataclass(frozen=True)
class BatchOptions:
    source: Path
    fmt: Format
    out: Path
    defaults: Defaults
    manifest: Path
    journal: Path | str | None  # a file, or a postgresql:// URL shared by several runs
    poller: PollerOptions
    batch: str | None = None  # a shared journal's batch name
    max_pending: int = 1000
    progress: bool = True


@dataclass
class BatchSummary:
    total: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    elsewhere: int = 0  # a shared batch: requests other runs did
    #: ``(index, reason)`` of the first few failed requests, in the order they failed.
    first_failures: list[tuple[int | None, str]] = field(default_factory=list)


async def run_batch(client: AsyncGPTunnel, opts: BatchOptions, total: int) -> BatchSummary:
    """Run every request of ``opts.source``; returns the counts (the manifest has the rest)."""
    await anyio.Path(opts.out).mkdir(parents=True, exist_ok=True)
    from ..poll_state import load_poll_state, save_poll_state
    from ..poller import generate_many

    requests = read_requests(opts.source, opts.fmt, opts.defaults)
    summary = BatchSummary(total=total)
    if opts.journal is None:
        poll_state = None
    elif isinstance(opts.journal, Path):
        poll_state = opts.journal.with_name(POLL_STATE_NAME)
    else:  # a shared journal: what this machine learned stays in its own folder
        poll_state = opts.out / POLL_STATE_NAME
    policy = opts.poller.policy or client.poll_policy
    if poll_state is not None:  # the next run starts from what this one learned
        load_poll_state(policy, poll_state)
    with (
        # A row may hold text UTF-8 cannot encode (a lone surrogate, refused for that row):
        # its line is written with the surrogate as a JSON escape, never a crash.
        opts.manifest.open("w", encoding="utf-8", errors="backslashreplace") as manifest,
        BatchProgress(total, enabled=opts.progress) as bar,
    ):
        async with (
            generate_many(
                client,
                requests,
                opts.poller,
                max_pending=opts.max_pending,
                journal=opts.journal,
                batch=opts.batch,
                download_to=opts.out,
            ) as run,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_refresh, run, bar, summary)
            async for result in run:
                _write_line(manifest, result, opts.out)
                if result.error is not None and len(summary.first_failures) < FIRST_FAILURES:
                    summary.first_failures.append((result.index, describe(result.error)))
                summary.done += 1
                summary.ok += result.ok
                summary.failed += not result.ok
                summary.resumed += result.from_journal
                bar.update(
                    done=summary.done,
                    ok=summary.ok,
                    failed=summary.failed,
                    in_flight=run.poller.pending,
                )
            tg.cancel_scope.cancel()
            summary.elsewhere = run.progress.elsewhere
            bar.update(done=summary.done, ok=summary.ok, failed=summary.failed, in_flight=0)
    if poll_state is not None:
        save_poll_state(policy, poll_state)
    return summary


async def _refresh(run: BatchRun, bar: BatchProgress, summary: BatchSummary) -> None:
    """Keep the in-flight count live between results (tasks start and finish continuously)."""
    while True:
        bar.update(
            done=summary.done,
            ok=summary.ok,
            failed=summary.failed,
            in_flight=run.poller.pending,
        )
        await anyio.sleep(_REFRESH_SECONDS)


def _write_line(manifest: IO[str], result: BatchResult, out: Path) -> None:
    request: dict[str, Any] = result.request if isinstance(result.request, dict) else {}
    error = None if result.ok else result.error
    line = {
        "index": result.index,
        "prompt": request.get("prompt"),
        "model": request.get("model"),
        "task_id": result.id,
        "ok": result.ok,
        "file": None if result.path is None else _relative(result.path, out),
        "error": None if error is None else describe(error),
        "error_type": None if error is None else type(error).__name__,
        "resumed": result.from_journal,
    }
    manifest.write(json.dumps(line, ensure_ascii=False) + "\n")
    manifest.flush()


def _relative(path: Path, out: Path) -> str:
    """Paths in the manifest are relative to the output folder, so the folder can move."""
    try:
        return os.path.relpath(path, out)
    except ValueError:  # another drive (Windows)
        return str(path)
