"""Everything the user sees: results on stdout, progress, status and errors on stderr.

Results (paths, links, tables, JSON) go to stdout so they can be piped; progress, spinners and
errors go to stderr. On a terminal a table is drawn with rich; piped (stdout not a terminal)
every table is plain tab-separated lines that no width ever wraps, and ``--json`` gives JSON.

Text that came from the server (links, messages, errors, titles) passes through ``clean`` or
``clean_json`` before it is written anywhere: a hostile or broken server must not be able to
move the cursor, retitle the window or clear the screen through an escape sequence.

rich is imported only when something is drawn, so ``gptunnel --help`` never pays for it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Container, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from .._errors import (
    APIConnectionError,
    APIStatusError,
    GPTunnelError,
    InvalidInputError,
    TaskFailedError,
    TaskTimeoutError,
)
from .._escape import clean, clean_json

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ..catalog import ModelSpec
    from ..types.account import Balance, LLMModel


def one_line(text: str) -> str:
    return " ".join(text.split())


def echo(text: str, *, err: bool = False) -> None:
    """One line of output, with anything a server could have put in it made harmless."""
    click.echo(clean(text), err=err)


def echo_json(value: Any) -> None:
    click.echo(clean_json(json.dumps(value, ensure_ascii=False, indent=2, default=str)))


# -- the one-line error a user reads ---------------------------------------------------------

_SUMMARY = re.compile(r"^\S+ \S+ → HTTP \d+(?:, code -?\d+)?(?:: )?")


def describe(exc: BaseException) -> str:
    """One line for a user: ``402 Organization balance is too low to use API``.

    A validation failure that came back under HTTP 200 (GPTunnel's ``code: 3``) shows no
    status, which would read as success; an error about one task names the task.
    """
    text = str(exc)
    if isinstance(exc, APIStatusError) and exc.status_code is not None:
        detail = _SUMMARY.sub("", text) or type(exc).__name__
        if 200 <= exc.status_code < 300:
            line = f"rejected by the API: {detail}"
        else:
            line = f"{exc.status_code} {detail}"
        if exc.task_id and exc.task_id not in line:
            line += f" (task {exc.task_id})"
        return one_line(line)
    prefix = ""
    if isinstance(exc, InvalidInputError):
        prefix = "invalid input: "
    elif isinstance(exc, TaskFailedError):
        prefix = "task failed: "
    elif isinstance(exc, TaskTimeoutError):
        prefix = "timed out: "
    elif isinstance(exc, APIConnectionError):
        prefix = "no answer from the API: "
    elif not isinstance(exc, GPTunnelError):
        prefix = f"{type(exc).__name__}: "
    return one_line(prefix + (text or type(exc).__name__))


# -- tables: rich on a terminal, tab-separated lines when piped, or JSON ---------------------


@dataclass(frozen=True)
class Table:
    """Rows of text under named columns; ``show`` picks how to draw them."""

    title: str | None
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    header: bool = True


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def show(table: Table) -> None:
    """A table on stdout: drawn by rich on a terminal, else one tab-separated line per row.

    Piped lines are never wrapped or folded (a link stays on one line); tabs and newlines in a
    value are escaped like any other control character, so a row is always one line.
    """
    if not stdout_is_terminal():
        if table.header:
            click.echo("\t".join(table.columns))
        for row in table.rows:
            click.echo("\t".join(clean(cell) for cell in row))
        return
    from rich.table import Table as RichTable
    from rich.text import Text

    drawn = RichTable(title=table.title, show_header=table.header)
    for i, name in enumerate(table.columns):
        drawn.add_column(name, no_wrap=i == 0, overflow="fold")
    for row in table.rows:
        drawn.add_row(*(Text(clean(cell)) for cell in row))  # Text: no markup from a server
    _console().print(drawn)


def catalogue_table(specs: Iterable[ModelSpec]) -> Table:
    """The SDK's own model list: what each model accepts (checked before anything is sent)."""
    rows = []
    for spec in specs:
        ar = "?" if spec.ar is None else (", ".join(spec.ar) or "—")
        images = "?" if spec.max_images is None else str(spec.max_images)
        note = spec.note if spec.documented else f"{spec.note} (undocumented)".strip()
        rows.append((spec.id, spec.kind, ar, images, spec.endpoint, note))
    return Table(
        "Models the SDK knows (others are sent unchecked)",
        ("id", "kind", "ar", "images", "endpoint", "note"),
        tuple(rows),
    )


def catalogue_json(specs: Iterable[ModelSpec]) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id, "kind": s.kind, "ar": None if s.ar is None else list(s.ar),
            "max_images": s.max_images, "endpoint": s.endpoint, "documented": s.documented,
            "prompt_max_len": s.prompt_max_len, "note": s.note,
        }
        for s in specs
    ]  # fmt: skip


def remote_kind(model_id: str, media_ids: Container[str]) -> str:
    """``media`` for an id the media API takes (one the catalogue knows), else ``chat``."""
    return "media" if model_id in media_ids else "chat"


def remote_models_table(models: Iterable[LLMModel], media_ids: Container[str]) -> Table:
    """``GET /v1/models``, each row labelled: that list is mostly chat models, which
    ``/v1/media/create`` refuses."""
    rows = tuple(
        (
            m.id, remote_kind(m.id, media_ids), _text(m.title), _text(m.max_capacity),
            _text(m.cost_context), _text(m.cost_completion),
        )
        for m in models
    )  # fmt: skip
    return Table(
        "GET /v1/models (kind 'chat': not usable with the media API; see `gptunnel models`)",
        ("id", "kind", "title", "max capacity", "cost context", "cost completion"),
        rows,
    )


def balance_fields(balance: Balance) -> dict[str, Any]:
    return {
        name: getattr(balance, name, None)
        for name in ("balance", "credit_limit", "available", "org_id")
    }


def record_table(fields: Mapping[str, Any], title: str | None = None) -> Table:
    """A record as ``field<TAB>value`` rows (no header); ``None`` values are left out."""
    rows = tuple((name, _text(value)) for name, value in fields.items() if value is not None)
    return Table(title, ("field", "value"), rows, header=False)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# -- stderr: spinners and the batch progress bar ---------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    # Made per call, so it follows whatever sys.stdout is at the time (click's runner swaps it).
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def status(text: str) -> Any:
    """A spinner on stderr while something runs; nothing at all when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return nullcontext()
    return _console(stderr=True).status(clean(text))


class BatchProgress:
    """A live bar on stderr: done of total, ok / failed / in flight, ETA. Off when not a TTY."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if self.enabled:
            self._progress, self._task = _progress_bar(total)

    def __enter__(self) -> BatchProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(
        self, *, done: int, ok: int, failed: int, in_flight: int | None = None, note: str = ""
    ) -> None:
        """``note`` (e.g. what a resumed batch found in its journal) replaces the title."""
        if self._progress is None or self._task is None:
            return
        fields: dict[str, Any] = {"ok": ok, "failed": failed}
        if in_flight is not None:
            fields["in_flight"] = in_flight
        self._progress.update(self._task, completed=done, description=note or "batch", **fields)


def _progress_bar(total: int) -> tuple[Progress, TaskID]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[ok]} ok[/] · [red]{task.fields[failed]} failed[/] · "
            "{task.fields[in_flight]} in flight"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(stderr=True),
    )
    return progress, progress.add_task("batch", total=total, ok=0, failed=0, in_flight=0)


__all__ = [
    "BatchProgress",
    "Table",
    "balance_fields",
    "catalogue_json",
    "catalogue_table",
    "clean",
    "clean_json",
    "describe",
    "echo",
    "echo_json",
    "one_line",
    "record_table",
    "remote_kind",
    "remote_models_table",
    "show",
    "status",
]
