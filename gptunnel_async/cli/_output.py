"""Everything the user sees, with rich: tables on stdout, progress and status on stderr.

Results (paths, tables, JSON) go to stdout so they can be piped; progress, spinners and
errors go to stderr. Consoles are made per call so that they follow whatever ``sys.stdout``
is at the time (click's test runner swaps it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..catalog import ModelSpec
from ..types.account import Balance, LLMModel


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def catalogue_table(specs: Iterable[ModelSpec]) -> Table:
    """The SDK's own model list: what each model accepts (checked before anything is sent)."""
    table = Table(title="Models the SDK knows (others are sent unchecked)")
    table.add_column("id", no_wrap=True)
    for name in ("kind", "ar", "images", "endpoint", "note"):
        table.add_column(name, overflow="fold")
    for spec in specs:
        ar = "?" if spec.ar is None else (", ".join(spec.ar) or "—")
        images = "?" if spec.max_images is None else str(spec.max_images)
        note = spec.note if spec.documented else f"{spec.note} (undocumented)".strip()
        table.add_row(spec.id, spec.kind, ar, images, spec.endpoint, note)
    return table


def remote_models_table(models: Iterable[LLMModel]) -> Table:
    table = Table(title="GET /v1/models")
    table.add_column("id", no_wrap=True)
    for name in ("title", "max capacity", "cost context", "cost completion"):
        table.add_column(name, overflow="fold")
    for m in models:
        table.add_row(
            m.id, _text(m.title), _text(m.max_capacity), _text(m.cost_context),
            _text(m.cost_completion),
        )  # fmt: skip
    return table


def balance_table(balance: Balance, *, wallet: bool) -> Table:
    table = Table(title="wallet balance" if wallet else "organisation balance", show_header=False)
    table.add_column("field")
    table.add_column("value", justify="right")
    for name in ("balance", "credit_limit", "available", "org_id"):
        table.add_row(name, _text(getattr(balance, name, None)))
    return table


def task_table(fields: Mapping[str, Any]) -> Table:
    table = Table(show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in fields.items():
        if value is not None:
            table.add_row(name, _text(value))
    return table


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class BatchProgress:
    """A live bar on stderr: done of total, ok / failed / in flight, ETA. Off when not a TTY."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        console = stderr()
        self.enabled = enabled and console.is_terminal
        self._progress = Progress(
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
            console=console,
            disable=not self.enabled,
        )
        self._task: TaskID = self._progress.add_task(
            "batch", total=total, ok=0, failed=0, in_flight=0
        )

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, *, done: int, ok: int, failed: int, in_flight: int | None = None) -> None:
        fields: dict[str, Any] = {"ok": ok, "failed": failed}
        if in_flight is not None:
            fields["in_flight"] = in_flight
        self._progress.update(self._task, completed=done, **fields)
