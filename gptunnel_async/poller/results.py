"""What a poller yields (``PollResult``) and what a batch yields (``BatchResult``).

A batch must be able to account for every task it paid for, so failures are values here, never
exceptions out of the iterator: ``ok`` is True only for a finished task with its result, and
``error`` says why otherwise (``TaskFailedError``, ``TaskTimeoutError``, or the API error that
kept polls from succeeding). A poller knows only tasks; which request a result answers, where
its file went and whether an earlier run finished it are a batch's business, so those fields
live on ``BatchResult`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import GPTunnelError


@dataclass(frozen=True)
class PollResult:
    """The outcome of one task. ``task`` is its last known state (``None`` if never seen)."""

    id: str | None
    ok: bool
    task: Any = None
    error: GPTunnelError | None = None
    kind: str = "media"
    polls: int = 0
    tag: Any = None

    def unwrap(self) -> Any:
        """The finished task, or raise the error that explains why there is none."""
        if self.ok:
            return self.task
        assert self.error is not None
        raise self.error

    @property
    def url(self) -> str | None:
        """The result link of a successful task."""
        if not self.ok or self.task is None:
            return None
        url = getattr(self.task, "url", None) or getattr(self.task, "result", None)
        return url if isinstance(url, str) else None


@dataclass(frozen=True)
class BatchResult(PollResult):
    """The outcome of one request of ``generate_many``: its task's outcome and where it went."""

    #: The request this came from, as it was read from the input, and its position there.
    request: Any = field(default=None, repr=False)
    index: int | None = None
    #: Where the file was saved (``generate_many(download_to=...)``).
    path: Path | None = None
    #: The result link when no task object is at hand (a result read back from a journal).
    link: str | None = None
    #: True when an earlier run had already finished this request (read from the journal).
    from_journal: bool = False

    @property
    def url(self) -> str | None:
        if self.ok and self.task is None:
            return self.link
        return super().url
