"""Where a batch keeps its record: the journal protocol and its stores.

``open_journal`` turns what a user passed as ``journal=`` into a store: a ``Journal`` as it is,
a file path into the default ``SQLiteJournal``. A location that is a URL is refused with a clear
error (rather than becoming a file named after the URL) until a store for it exists.
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

JournalLocation = str | os.PathLike[str] | Journal


def open_journal(location: JournalLocation) -> tuple[Journal, bool]:
    """The store for ``location`` and whether the caller owns it (must ``aclose`` it)."""
    if isinstance(location, Journal):
        return location, False
    text = os.fspath(location)
    match = _URL.match(text)
    if match:  # only the scheme: the rest may hold a password
        raise JournalError(
            f"journal location is a {match.group(1)}:// URL; only a file path is supported "
            "(a journal file, e.g. out/.gptunnel-journal.sqlite)"
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
