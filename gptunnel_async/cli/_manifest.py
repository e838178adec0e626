"""``gptunnel manifest``: a batch's whole manifest, written from its journal by any machine.

A shared batch (``--journal postgresql://...``) has one ``manifest.jsonl`` per worker, each
listing what that worker did; the journal has every request. This command reads the journal
(read-only: no lock is taken, a running batch goes on undisturbed) and writes one line per
request in the batch manifest's format, plus where each request stands:

- ``file`` is the path the worker that saved it recorded (in *that* worker's folder, on its
  machine), ``worker`` the run that holds the row (``host:pid:nonce``; for a saved file, the
  run that saved it), ``state`` the journal's state;
- ``ok`` is true for a finished task (``saved``; ``done``: finished, no file saved), false for
  a failure (its ``error``: the task failed, its create was refused, or the create's outcome is
  unknown — it may exist and be billed, and is never sent again), and null for a request not
  finished yet (claimed, on the wire, or being polled by a live run);
- ``error_type`` is the error's class where the state tells it; the journal keeps a refused
  create's message, not its class (``null`` then). ``resumed`` is null: the journal does not
  record which run a result came out of.

Nothing the journal holds is secret (the key is never stored); the DSN appears in messages
only as ``host:port/dbname``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._errors import CreateOutcomeUnknownError, TaskFailedError
from ._batch import JOURNAL_NAME, Manifest
from ._output import clean_json, echo, one_line
from ._session import EXIT_ERROR, EXIT_USAGE, CLIError, Settings, run

if TYPE_CHECKING:
    from ..stores import JournalEntry

_UNKNOWN = CreateOutcomeUnknownError.__name__
_FAILED = TaskFailedError.__name__


def entry_line(entry: JournalEntry) -> dict[str, Any]:
    """One request's manifest line from its journal row (keys of the batch manifest first)."""
    record, body = entry.record, entry.body
    ok, error, error_type = outcome(entry)
    return {
        "index": record.index,
        "prompt": body.get("prompt"),
        "model": body.get("model"),
        "task_id": record.task_id,
        "ok": ok,
        "file": record.path if record.state == "saved" else None,
        "error": error,
        "error_type": error_type,
        "resumed": None,
        "state": record.state,
        "worker": record.owner,
    }


def outcome(entry: JournalEntry) -> tuple[bool | None, str | None, str | None]:
    """``(ok, error, error_type)`` of a row: finished, failed (why), or not finished (where)."""
    record, alive = entry.record, entry.alive
    said = f": {one_line(record.error)}" if record.error else ""
    state = record.state
    if state in ("saved", "done"):
        return True, None, None
    if state == "failed":
        return False, f"task failed{said}", _FAILED
    if state == "unknown" or (state == "sending" and alive is False):
        return False, f"create outcome unknown (not sent again){said}", _UNKNOWN
    if state == "rejected":
        return False, f"create refused (a rerun sends it){said}", None
    stopped = " by a run that stopped; a rerun takes it over" if alive is False else ""
    if state == "claimed":
        return None, f"not sent yet: claimed{stopped}", None
    if state == "sending":
        return None, "create on the wire (its outcome is unknown if its run has stopped)", None
    return None, f"created, not finished{stopped}{said}", None  # created: being polled


@click.command()
@click.option(
    "-j",
    "--journal",
    "location",
    required=True,
    metavar="PATH|URL",
    help=f"The batch's journal: a postgresql:// URL, a journal file, or a batch's output folder "
    f"(its {JOURNAL_NAME}).",
)
@click.option(
    "--batch",
    "batch_name",
    metavar="NAME",
    help="The batch in a postgresql:// journal (as `gptunnel batch` named it).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the manifest to this file (default: stdout).",
)
@click.pass_obj
def manifest(settings: Settings, location: str, batch_name: str | None, out: Path | None) -> None:
    """Write a batch's whole manifest (JSONL) from its journal, on any machine.

    \b
    Every request, in input order, in the format of the batch's manifest.jsonl,
    with "state", and "worker" (the run that saved the file: its "file" is in that
    run's folder). Reads only: a running batch goes on. A summary goes to stderr.
    """
    from ..stores import JournalError, open_reader

    path = Path(location)
    if "://" not in location and path.is_dir():
        location = str(path / JOURNAL_NAME)
    try:
        reader = open_reader(location, batch=batch_name)
    except JournalError as exc:
        raise CLIError(str(exc), exit_code=EXIT_USAGE) from None

    async def go() -> tuple[Counter[str], set[str]]:
        from contextlib import aclosing

        tally: Counter[str] = Counter()
        workers: set[str] = set()
        opened = False
        try:
            async with reader:
                opened = True
                with Manifest(out) if out is not None else _Stdout() as sink:
                    async with aclosing(reader.pages()) as pages:
                        async for page in pages:
                            for entry in page:
                                line = entry_line(entry)
                                tally[_tally(line)] += 1
                                if line["worker"] is not None:
                                    workers.add(line["worker"])
                                sink.write(line)
        except JournalError as exc:  # opening: no such batch or file, a usage error
            raise CLIError(str(exc), exit_code=EXIT_ERROR if opened else EXIT_USAGE) from None
        return tally, workers

    tally, workers = run(settings, go)
    counts = ", ".join(f"{tally[name]} {name}" for name in _ORDER if tally[name])
    where = f"batch {batch_name!r}" if batch_name else "the journal"
    echo(
        f"{tally.total()} requests in {where}: {counts or 'none'}; {len(workers)} worker(s)"
        + (f"; manifest: {out}" if out is not None else ""),
        err=True,
    )


_ORDER = ("saved", "done (no file)", "failed", "unknown", "refused", "not finished")


def _tally(line: dict[str, Any]) -> str:
    """The summary's word for a line (one of ``_ORDER``)."""
    if line["ok"] is None:
        return "not finished"
    if line["ok"]:
        return "saved" if line["state"] == "saved" else "done (no file)"
    return {_FAILED: "failed", _UNKNOWN: "unknown"}.get(line["error_type"], "refused")


class _Stdout:
    """Manifest lines on stdout (made terminal-safe, like every JSON the CLI prints)."""

    def __enter__(self) -> _Stdout:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def write(self, line: dict[str, Any]) -> None:
        click.echo(clean_json(json.dumps(line, ensure_ascii=False)))
