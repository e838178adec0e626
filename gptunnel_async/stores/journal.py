"""The journal protocol: what a batch records so a killed run resumes without paying twice.

A request's row moves through these states::

    (none) ──claim──▶ claimed ──mark_on_wire──▶ sending ──record──▶ created ─▶ done ─▶ saved
              ▲          ▲                         │                  └──────▶ failed
              │          └───────release───────────┘   (certainly not processed: 429, refused)
              └── rejected (refused for good, or cancelled before sending: a rerun sends it)
                                         sending ──record──▶ unknown (may exist: never re-sent)

- ``claimed``: this run holds the request; nothing has left yet. A kill here loses nothing: the
  next run claims it again and sends it.
- ``sending``: written *after* every local wait (gate, 429 pause, pacing, connection limit) and
  immediately before the create's bytes leave. A row still ``sending`` after a kill is the only
  way a request becomes "unknown": its create really was on the wire.
- ``release`` takes a create the server certainly did not process (429, connection refused)
  back to ``claimed`` *before* the retry wait, so a kill during the wait loses nothing either.

Every state change is a compare-and-set on the request's row, and a run must own the journal
(``acquire``) before it claims anything: an exclusive store (SQLite) lets one live run in and
refuses a second one at once (``JournalInUseError``, naming the other run); a shared store may
let several runs in, provided a claim can be won by one of them only and the rows of a run that
died are taken over (``Claim.elsewhere`` marks a row a live run is still working on).

Requests are identified by content, not position: a key is a hash of the create body plus the
occurrence number of that body in the input, so a reordered or extended input resumes correctly
and two identical prompts remain two tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

State = Literal["claimed", "sending", "created", "rejected", "unknown", "done", "failed", "saved"]
#: States in which the create is known (or feared) to have reached the server.
SENT_STATES = frozenset({"sending", "unknown", "created", "done", "failed", "saved"})
#: States a claim may (re)take: nothing of this request is on the server.
CLAIMABLE_STATES = frozenset({"claimed", "rejected"})
#: What ``record`` may write (``claimed``/``sending`` belong to claim, mark_on_wire, release).
OUTCOME_STATES = frozenset({"created", "rejected", "unknown", "done", "failed", "saved"})
#: Fields ``record`` may set beside the state.
RECORD_FIELDS = ("task_id", "kind", "url", "path", "error")


@dataclass(frozen=True)
class JournalRecord:
    """One request's row. ``owner`` is the run that last claimed or took it over."""

    key: str
    index: int
    state: State
    task_id: str | None = None
    kind: str = "media"
    url: str | None = None
    path: str | None = None
    error: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class JournalEntry:
    """A row as a report reads it (``read_journal``): the record, the create body it stands
    for, and whether the run that holds it is alive (``None``: the store cannot tell)."""

    record: JournalRecord
    body: dict[str, Any]
    alive: bool | None = None


#: Rows a report reads per round trip (a batch of 100,000 is never held at once).
EXPORT_PAGE = 2000


@dataclass(frozen=True)
class Claim:
    """What ``Journal.claim`` found: ``won`` means this run must now send the create.

    Otherwise ``record`` is the row as an earlier run left it (poll it, report it, or skip
    it); ``elsewhere`` says another *live* run holds it (shared stores only).
    """

    record: JournalRecord
    won: bool
    elsewhere: bool = False


def body_digest(body: Mapping[str, Any]) -> str:
    """A stable digest of a create body; a request's key is ``"<digest>#<occurrence>"``."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def body_text(body: Mapping[str, Any]) -> str:
    """The body as stored in a row (so a tool can tell what a key was)."""
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


def new_owner_id() -> str:
    """Who a journal handle is, for rows and for the 'in use by' message: host, pid, nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def check_record(state: str, fields: Mapping[str, Any]) -> None:
    """``record``'s arguments, checked the same way by every store."""
    if state not in OUTCOME_STATES:
        raise ValueError(f"record() writes outcomes {sorted(OUTCOME_STATES)}, not {state!r}")
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown journal fields: {sorted(unknown)}")


@runtime_checkable
class Journal(Protocol):
    """Where a batch records its progress. Every method may be called from the event loop.

    Every write must be durable when it returns (it survives the process being killed).
    """

    #: This handle's identity, written into the rows it claims (``new_owner_id()``).
    owner: str

    async def acquire(self) -> None:
        """Take the journal for this run, before any claim; ``JournalInUseError`` if refused."""
        ...

    async def claim(self, key: str, index: int, body: Mapping[str, Any]) -> Claim:
        """Atomically take a request that has nothing on the server (no row, ``rejected``, or
        ``claimed`` by a run that died) as ``claimed``; else return its row. A row of a dead
        run in another state is taken over (``owner`` becomes this run) but not won."""
        ...

    async def mark_on_wire(self, key: str) -> None:
        """``claimed`` → ``sending``: the create leaves right after this returns."""
        ...

    async def release(self, key: str) -> None:
        """``sending`` → ``claimed``: the server certainly did not process the create."""
        ...

    async def record(self, key: str, state: State, **fields: Any) -> None:
        """Write an outcome (``OUTCOME_STATES``) and ``RECORD_FIELDS`` of this run's row."""
        ...

    async def get(self, key: str) -> JournalRecord | None: ...

    async def records(self) -> list[JournalRecord]:
        """Every row, in input order (for reports and tools)."""
        ...

    async def aclose(self) -> None:
        """Give the journal up (another run may take it from now on)."""
        ...


@runtime_checkable
class SharedJournal(Journal, Protocol):
    """A journal several live runs share (one batch): they take over the work of runs that
    died. ``files``: the run saves files, so a dead run's ``done`` rows (file not saved) are
    work left too."""

    async def take_over(
        self, limit: int = 100, *, files: bool = False
    ) -> list[tuple[JournalRecord, dict[str, Any]]]:
        """Rows of runs that died with work left, now this run's, with each create body."""
        ...

    async def others_working(self, *, files: bool = False) -> int:
        """Rows with work left that other runs hold (live ones may still die; dead ones'
        are for ``take_over``): the batch is not over for this run while there are any."""
        ...

    async def wait_ready(self) -> None:
        """Return once the store answers (at once, unless its database was lost); a create
        is sent only then. ``mark_on_wire`` of a store that is away raises
        ``JournalAwayError`` (nothing is sent: wait here, then send it)."""
        ...
