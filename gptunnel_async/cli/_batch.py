"""``gptunnel batch``: many prompts → a folder of files and a JSONL manifest, resumably.

The SDK's ``generate_many`` does the work (bounded creates and polls, the journal, downloads
as tasks finish); this module feeds it the prompt file as a stream, writes one manifest line
per request as results arrive (one ``write`` each, so a killed run still shows how far it got),
and keeps the progress bar current. Rerunning the same command resumes from the journal: the
manifest is rewritten from scratch, since a resumed run yields every request again (finished
ones from the journal, at once, marked ``"resumed": true`` like every task an earlier run made).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._inputs import Defaults, Format, read_requests
from ._output import BatchProgress, describe
from ._session import EXIT_USAGE, CLIError

if TYPE_CHECKING:  # the SDK loads when a batch runs, not when ``gptunnel --help`` does
    from .. import AsyncGPTunnel
    from ..poller import BatchResult, BatchRun, PollerOptions
    from ..poller.batch import BatchProgress as SDKProgress
    from ..stores import Journal

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
    journal_outage_timeout: float | None = None  # a shared journal lost: wait this long
    max_pending: int = 1000
    progress: bool = True


def emulator_state(journal: Path) -> Path:
    """Where an offline batch keeps its emulator's tasks: beside its journal."""
    return journal.with_name(journal.name + ".emulator.jsonl")


@dataclass
class BatchSummary:
    total: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    #: Requests an earlier run had left in the journal, and what became of them.
    resumed: int = 0
    repolled: int = 0
    already_saved: int = 0
    elsewhere: int = 0  # a shared batch: requests other runs did
    #: Tasks this run created.
    created: int = 0
    #: ``(index, reason)`` of the first few failed requests, in the order they failed.
    first_failures: list[tuple[int | None, str]] = field(default_factory=list)

    def take(self, progress: SDKProgress) -> None:
        self.resumed, self.repolled = progress.resumed, progress.repolled
        self.already_saved, self.created = progress.already_saved, progress.created
        self.elsewhere = progress.elsewhere

    def journal_note(self) -> str:
        """``30 from the journal (12 re-polled, 18 already saved), 20 created now`` or ``""``."""
        if not self.resumed:
            return ""
        return (
            f"{self.resumed} from the journal ({self.repolled} re-polled, "
            f"{self.already_saved} already saved), {self.created} created now"
        )


async def run_batch(client: AsyncGPTunnel, opts: BatchOptions, total: int) -> BatchSummary:
    """Run every request of ``opts.source``; returns the counts (the manifest has the rest).

    The journal is taken first, then the manifest: a second run on the same folder is refused
    before it touches either (one line naming the run that has them).
    """
    from ..stores import JournalError, open_journal

    try:  # before anything is written: a location no store serves is a usage error
        store, owned = (
            open_journal(opts.journal, batch=opts.batch, outage_timeout=opts.journal_outage_timeout)
            if opts.journal is not None
            else (None, False)
        )
    except JournalError as exc:
        raise CLIError(str(exc), exit_code=EXIT_USAGE) from None
    try:
        await anyio.Path(opts.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create {str(opts.out)!r}: {exc.strerror or exc}") from None
    try:
        if store is not None:
            await store.acquire()
        with Manifest(opts.manifest) as manifest:
            return await _run(client, opts, total, store, manifest)
    finally:
        if owned and store is not None:
            await store.aclose()


async def _run(
    client: AsyncGPTunnel,
    opts: BatchOptions,
    total: int,
    store: Journal | None,
    manifest: Manifest,
) -> BatchSummary:
    from ..poll_state import keep_poll_state, load_poll_state, save_poll_state
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
    try:
        with BatchProgress(total, enabled=opts.progress) as bar:
            async with (
                generate_many(
                    client,
                    requests,
                    opts.poller,
                    max_pending=opts.max_pending,
                    journal=store,
                    download_to=opts.out,
                ) as run,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_refresh, run, bar, summary)
                if poll_state is not None:  # kept current: a kill loses at most an interval
                    tg.start_soon(keep_poll_state, policy, poll_state)
                async for result in run:
                    manifest.write(_line(result, opts.out))
                    if result.error is not None and len(summary.first_failures) < FIRST_FAILURES:
                        summary.first_failures.append((result.index, describe(result.error)))
                    summary.done += 1
                    summary.ok += result.ok
                    summary.failed += not result.ok
                    _show(bar, summary, run, run.poller.pending)
                tg.cancel_scope.cancel()
                _show(bar, summary, run, 0)
    finally:  # finished, interrupted or failed: keep what was learned
        if poll_state is not None:
            save_poll_state(policy, poll_state)
    return summary


async def _refresh(run: BatchRun, bar: BatchProgress, summary: BatchSummary) -> None:
    """Keep the in-flight count live between results (tasks start and finish continuously)."""
    while True:
        _show(bar, summary, run, run.poller.pending)
        await anyio.sleep(_REFRESH_SECONDS)


def _show(bar: BatchProgress, summary: BatchSummary, run: BatchRun, in_flight: int) -> None:
    """The bar, live: counts, and what a resumed batch found in its journal so far."""
    summary.take(run.progress)
    bar.update(
        done=summary.done,
        ok=summary.ok,
        failed=summary.failed,
        in_flight=in_flight,
        note=summary.journal_note(),
    )


class Manifest:
    """The manifest, written by one run at a time, one whole line per ``write``.

    A lock beside it (``.manifest.jsonl.lock``, held by the kernel for this process) keeps a
    second run from truncating or interleaving it; each line goes out in a single ``write`` on
    an append-only descriptor, so a kill leaves at most a cut last line, never a torn middle.
    """

    def __init__(self, path: Path) -> None:
        from ..stores._lock import OwnerLock

        self.path = path
        self._lock = OwnerLock(path.with_name(f".{path.name}.lock"))
        self._fd: int | None = None

    def __enter__(self) -> Manifest:
        try:
            holder = self._lock.acquire()
            if holder is not None:
                raise CLIError(f"the manifest {str(self.path)!r} is being written by {holder}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            self._lock.release()
            reason = exc.strerror or type(exc).__name__
            raise CLIError(f"cannot write the manifest {str(self.path)!r}: {reason}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._lock.release()

    def write(self, line: dict[str, Any]) -> None:
        assert self._fd is not None
        # A row may hold text UTF-8 cannot encode (a lone surrogate, refused for that row):
        # its line is written with the surrogate as a JSON escape, never a crash.
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:  # the journal has every result: a rerun rewrites the manifest
            reason = exc.strerror or type(exc).__name__
            raise CLIError(f"cannot write the manifest {str(self.path)!r}: {reason}") from None


def _line(result: BatchResult, out: Path) -> dict[str, Any]:
    request: dict[str, Any] = result.request if isinstance(result.request, dict) else {}
    error = None if result.ok else result.error
    return {
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


def _relative(path: Path, out: Path) -> str:
    """Paths in the manifest are relative to the output folder, so the folder can move."""
    try:
        return os.path.relpath(path, out)
    except ValueError:  # another drive (Windows)
        return str(path)
