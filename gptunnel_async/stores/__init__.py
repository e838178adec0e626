"""Where a batch keeps its record: the journal protocol and its stores.

``open_journal`` turns what a user passed as ``journal=`` into a store: a ``Journal`` as it is,
a file path into the default ``SQLiteJournal``, a ``postgresql://`` URL into a
``PostgresJournal`` shared by several runs (``stores.postgres``). Any other URL is refused with
a clear error (rather than becoming a file named after the URL).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from .._errors import (
    JournalError,
    JournalInUseError,
    JournalTakenOverError,
    JournalUnavailableError,
)
from .journal import (
    CLAIMABLE_STATES,
    SENT_STATES,
    Claim,
    Journal,
    JournalEntry,
    JournalRecord,
    SharedJournal,
    State,
    body_digest,
)
from .sqlite import SQLiteBatchReader, SQLiteJournal

if TYPE_CHECKING:
    from .postgres import PostgresBatchReader

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A libpq key=value connection string ("host=db dbname=app ..."): never a file name.
_CONNINFO = re.compile(r"^\s*(host|hostaddr|dbname|user|port|service)\s*=")

JournalLocation = str | os.PathLike[str] | Journal


def open_journal(
    location: JournalLocation, *, batch: str | None = None, outage_timeout: float | None = None
) -> tuple[Journal, bool]:
    """The store for ``location`` and whether the caller owns it (must ``aclose`` it).

    A ``postgresql://`` URL is a journal shared by every run naming the same ``batch``;
    ``outage_timeout`` is how long its run waits for its database, lost mid-run (seconds).
    """
    if isinstance(location, Journal):
        return location, False
    text = os.fspath(location)
    if _is_postgres(text):
        if not batch:
            raise JournalError(
                "a postgresql:// URL journal is shared by every run of one batch: name the "
                "batch (batch=... in Python, --batch NAME on the command line)"
            )
        from .postgres import REJOIN_FOR, PostgresJournal

        timeout = REJOIN_FOR if outage_timeout is None else outage_timeout
        return PostgresJournal(text, batch, outage_timeout=timeout), True
    if outage_timeout is not None:
        raise JournalError(
            "an outage timeout is for a postgresql:// journal (a journal file is never lost)"
        )
    return SQLiteJournal(text), True


def open_reader(
    location: str | os.PathLike[str], *, batch: str | None = None
) -> SQLiteBatchReader | PostgresBatchReader:
    """A read-only view of a journal's rows for reports (``async with``, then ``pages()``):
    a file's, or one batch's of a ``postgresql://`` journal. Nothing is taken or changed."""
    text = os.fspath(location)
    if _is_postgres(text):
        if not batch:
            raise JournalError(
                "a postgresql:// URL journal holds many batches: name one (--batch NAME)"
            )
        from .postgres import PostgresBatchReader

        return PostgresBatchReader(text, batch)
    if batch is not None:
        raise JournalError(
            "a journal file holds one batch: --batch names one in a postgresql:// URL"
        )
    return SQLiteBatchReader(text)


def _is_postgres(text: str) -> bool:
    """A ``postgresql://`` URL or a libpq ``key=value`` string; any other URL is refused."""
    match = _URL.match(text)
    if match is not None and match.group(1).lower() in ("postgresql", "postgres"):
        return True
    if _CONNINFO.match(text):
        return True
    if match:  # only the scheme: the rest may hold a password
        raise JournalError(
            f"journal location is a {match.group(1)}:// URL; a file path or a postgresql:// "
            "URL is supported (a journal file, e.g. out/.gptunnel-journal.sqlite)"
        )
    return False


__all__ = [
    "CLAIMABLE_STATES",
    "SENT_STATES",
    "Claim",
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalInUseError",
    "JournalLocation",
    "JournalRecord",
    "JournalTakenOverError",
    "JournalUnavailableError",
    "SQLiteBatchReader",
    "SQLiteJournal",
    "SharedJournal",
    "State",
    "body_digest",
    "open_journal",
    "open_reader",
]
