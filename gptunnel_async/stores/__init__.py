"""Where a batch keeps its record: the journal protocol and its stores.

``open_journal`` turns what a user passed as ``journal=`` into a store: a ``Journal`` as it is,
a file path into the default ``SQLiteJournal``, a ``postgresql://`` URL into a
``PostgresJournal`` shared by several runs (``stores.postgres``). Any other URL is refused with
a clear error (rather than becoming a file named after the URL).
"""

from __future__ import annotations

import os
import re

from .._errors import JournalError, JournalInUseError
from .journal import (
    CLAIMABLE_STATES,
    SENT_STATES,
    Claim,
    Journal,
    JournalRecord,
    State,
    body_digest,
)
from .sqlite import SQLiteJournal

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A libpq key=value connection string ("host=db dbname=app ..."): never a file name.
_CONNINFO = re.compile(r"^\s*(host|hostaddr|dbname|user|port|service)\s*=")

JournalLocation = str | os.PathLike[str] | Journal


def open_journal(location: JournalLocation, *, batch: str | None = None) -> tuple[Journal, bool]:
    """The store for ``location`` and whether the caller owns it (must ``aclose`` it).

    A ``postgresql://`` URL is a journal shared by every run naming the same ``batch``.
    """
    if isinstance(location, Journal):
        return location, False
    text = os.fspath(location)
    match = _URL.match(text)
    postgres = match is not None and match.group(1).lower() in ("postgresql", "postgres")
    if postgres or _CONNINFO.match(text):
        if not batch:
            raise JournalError(
                "a postgresql:// URL journal is shared by every run of one batch: name the "
                "batch (batch=... in Python, --batch NAME on the command line)"
            )
        from .postgres import PostgresJournal

        return PostgresJournal(text, batch), True
    if match:  # only the scheme: the rest may hold a password
        raise JournalError(
            f"journal location is a {match.group(1)}:// URL; a file path or a postgresql:// "
            "URL is supported (a journal file, e.g. out/.gptunnel-journal.sqlite)"
        )
    return SQLiteJournal(text), True


__all__ = [
    "CLAIMABLE_STATES",
    "SENT_STATES",
    "Claim",
    "Journal",
    "JournalError",
    "JournalInUseError",
    "JournalLocation",
    "JournalRecord",
    "SQLiteJournal",
    "State",
    "body_digest",
    "open_journal",
]
