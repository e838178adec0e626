"""A durable record of a batch, so a killed run resumes without paying twice.

Each request is written down *before* its create is sent (``sending``), then gets its task id
as soon as the answer arrives (``created``), then its outcome (``done``/``failed``) and the file
it was saved to (``saved``). A rerun reads this back: created tasks are polled, not re-created;
saved files are not fetched again; and a create whose answer never arrived (still ``sending``,
or ``unknown`` after an ambiguous failure) is *reported*, never silently re-sent — it may exist
and be billed. A create the server certainly refused (``rejected``) may be sent again.

Requests are identified by content, not position: a key is a hash of the create body plus the
occurrence number of that body in the input, so a reordered or extended input file resumes
correctly and two identical prompts remain two tasks.

``SQLiteJournal`` (standard library, WAL mode) is the default store; anything implementing the
small ``Journal`` protocol can replace it. Writes survive the process being killed (WAL with
``synchronous=NORMAL``); pass ``durable=True`` for ``FULL`` (also survives power loss, slower).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio

from ._errors import GPTunnelError

State = Literal["sending", "created", "rejected", "unknown", "done", "failed", "saved"]
#: States in which the create is known (or feared) to have reached the server.
SENT_STATES = frozenset({"sending", "unknown", "created", "done", "failed", "saved"})


class JournalError(GPTunnelError):
    """The journal cannot be opened or written (a batch must not run without its record)."""


@dataclass(frozen=True)
class JournalRecord:
    key: str
    index: int
    state: State
    task_id: str | None = None
    kind: str = "media"
    url: str | None = None
    path: str | None = None
    error: str | None = None


def body_digest(body: Mapping[str, Any]) -> str:
    """A stable digest of a create body; a request's key is ``"<digest>#<occurrence>"``."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Journal(Protocol):
    """Where a batch records its progress. All methods may be called from the event loop."""

    async def get(self, key: str) -> JournalRecord | None: ...

    async def sending(self, key: str, index: int, body: Mapping[str, Any]) -> None:
        """Durably note that this create is about to be sent (call *before* sending)."""
        ...

    async def update(self, key: str, state: State, **fields: Any) -> None:
        """Move a request to ``state``; ``fields``: task_id, kind, url, path, error."""
        ...

    async def aclose(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    kind TEXT NOT NULL DEFAULT 'media',
    url TEXT,
    path TEXT,
    error TEXT,
    body TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_task ON requests(task_id);
"""
_FIELDS = ("task_id", "kind", "url", "path", "error")


class SQLiteJournal:
    """The default journal: one SQLite file, written from a single worker thread."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = Path(path)
        self._durable = durable
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"SQLiteJournal({str(self.path)!r})"

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)  # one connection, one writer, in order
        if self._conn is None:
            await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {str(self.path)!r}: {exc}") from None
        self._conn = conn

    def _execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal {str(self.path)!r}: {exc}") from None

    async def get(self, key: str) -> JournalRecord | None:
        rows = await self._run(
            self._execute,
            "SELECT key, idx, state, task_id, kind, url, path, error FROM requests WHERE key=?",
            (key,),
        )
        return JournalRecord(*rows[0]) if rows else None

    async def sending(self, key: str, index: int, body: Mapping[str, Any]) -> None:
        text = json.dumps(body, ensure_ascii=False, sort_keys=True)
        await self._run(
            self._execute,
            "INSERT INTO requests (key, idx, state, body, updated) VALUES (?, ?, 'sending', ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET state='sending', idx=excluded.idx, error=NULL,"
            " updated=excluded.updated",
            (key, index, text, time.time()),
        )

    async def update(self, key: str, state: State, **fields: Any) -> None:
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown journal fields: {sorted(unknown)}")
        sets = ", ".join(f"{name}=?" for name in fields)
        sql = f"UPDATE requests SET state=?, updated=?{', ' + sets if sets else ''} WHERE key=?"
        await self._run(self._execute, sql, (state, time.time(), *fields.values(), key))

    async def records(self) -> list[JournalRecord]:
        """Every record, in input order (for reports and tools)."""
        rows = await self._run(
            self._execute,
            "SELECT key, idx, state, task_id, kind, url, path, error FROM requests ORDER BY idx",
            (),
        )
        return [JournalRecord(*row) for row in rows]

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)
