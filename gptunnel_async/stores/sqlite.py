"""The default journal: one SQLite file, owned by one live run at a time.

Ownership is an OS lock (``flock``) on a small file beside the journal (``<journal>.lock``),
held from ``acquire`` to ``aclose``: the kernel drops it when the process dies, however it dies,
so a dead owner never blocks a rerun, and a second live run is refused at once with the first
one's pid and host (written into the lock file). Once the lock is held, every run that wrote a
row before is dead, so its rows become orphans. Rows are changed by compare-and-set inside
``BEGIN IMMEDIATE`` transactions: a claim wins a new row or an orphan with nothing on the
server, never a row another live handle holds, even if the lock were bypassed.

WAL mode with ``synchronous=NORMAL``: a committed write survives the process being killed;
``durable=True`` (``FULL``) also survives power loss, at a cost per write. All access goes
through one worker thread at a time (one connection, in order), but one: ``mark_on_wire``,
awaited with the create's connection ready and its first byte next, commits on the event loop's
own thread (a WAL append, no fsync), so nothing runs between its commit and the send.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio

from .._errors import JournalError, JournalInUseError
from ._lock import OwnerLock
from .journal import (
    CLAIMABLE_STATES,
    EXPORT_PAGE,
    Claim,
    JournalEntry,
    JournalRecord,
    State,
    body_text,
    check_record,
    new_owner_id,
)

T = TypeVar("T")

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
_COLUMNS = "key, idx, state, task_id, kind, url, path, error, owner"


class SQLiteJournal:
    """A journal in one SQLite file (see the module docstring for ownership and durability)."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path: Path = Path(path)
        self.owner: str = new_owner_id()
        self._durable = durable
        self._conn: sqlite3.Connection | None = None
        self._lock = OwnerLock(self.path.with_name(self.path.name + ".lock"))
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"SQLiteJournal({str(self.path)!r})"

    @property
    def lock_path(self) -> Path:
        return self._lock.path

    # -- ownership ---------------------------------------------------------------------------

    async def acquire(self) -> None:
        await self._run(lambda: None)

    def _open(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
            if "owner" not in columns:  # a journal written before rows had owners
                conn.execute("ALTER TABLE requests ADD COLUMN owner TEXT")
            # We hold the lock, so every run that wrote a row before is dead: its rows are
            # orphans, free to claim (``claimed``/``rejected``) or to take over (the rest).
            conn.execute("UPDATE requests SET owner=NULL WHERE owner IS NOT NULL")
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:  # e.g. not a SQLite file: close it, not leave it to the GC
                conn.close()
            self._drop_lock()
            raise JournalError(f"cannot open the journal {str(self.path)!r}: {exc}") from None
        self._conn = conn

    def _take_lock(self) -> None:
        holder = self._lock.acquire()
        if holder is not None:
            raise JournalInUseError(
                f"the journal {str(self.path)!r} is in use by {holder}; wait for that run to "
                "finish (or stop it), or give this run another journal"
            )

    def _drop_lock(self) -> None:
        self._lock.release()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None

        def close() -> None:
            try:
                if conn is not None:
                    conn.close()
            finally:
                self._drop_lock()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close, limiter=self._limiter)

    # -- rows --------------------------------------------------------------------------------

    async def claim(self, key: str, index: int, body: Mapping[str, Any]) -> Claim:
        text = body_text(body)

        def claim(conn: sqlite3.Connection) -> Claim:
            row = conn.execute(f"SELECT {_COLUMNS} FROM requests WHERE key=?", (key,)).fetchone()
            now = time.time()
            if row is None:
                conn.execute(
                    "INSERT INTO requests (key, idx, state, owner, body, updated)"
                    " VALUES (?, ?, 'claimed', ?, ?, ?)",
                    (key, index, self.owner, text, now),
                )
                return Claim(JournalRecord(key, index, "claimed", owner=self.owner), won=True)
            record = JournalRecord(*row)
            if record.owner is not None:  # ours already, or a live run's (shared use)
                return Claim(record, won=False, elsewhere=record.owner != self.owner)
            if record.state in CLAIMABLE_STATES:  # nothing of it is on the server: send it
                conn.execute(
                    "UPDATE requests SET state='claimed', owner=?, idx=?, error=NULL, updated=?"
                    " WHERE key=?",
                    (self.owner, index, now, key),
                )
                return Claim(JournalRecord(key, index, "claimed", owner=self.owner), won=True)
            # a dead run's created/sent/finished request: take it over, do not send it
            conn.execute("UPDATE requests SET owner=? WHERE key=?", (self.owner, key))
            return Claim(replace(record, owner=self.owner), won=False)

        return await self._transaction(claim)

    async def mark_on_wire(self, key: str) -> None:
        # The caller sends the create's first byte as soon as this returns, without yielding to
        # the event loop: committing here, on the loop's thread, leaves nothing between the
        # commit and that byte (a worker thread would add the hop back to the loop, where every
        # ready task runs first). A WAL commit without fsync is a short write; with
        # ``durable=True`` (an fsync per commit) it stays in the worker thread.
        await self._move(key, "claimed", "sending", here=not self._durable)

    async def release(self, key: str) -> None:
        await self._move(key, "sending", "claimed", strict=False)

    async def _move(
        self, key: str, before: State, after: State, *, strict: bool = True, here: bool = False
    ) -> None:
        def move(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE requests SET state=?, updated=? WHERE key=? AND state=? AND owner=?",
                (after, time.time(), key, before, self.owner),
            ).rowcount
            if strict and changed != 1:
                raise JournalError(
                    f"journal {str(self.path)!r}: request {key} is not {before} by this run; "
                    "its create is not sent"
                )

        await self._transaction(move, here=here)

    async def record(self, key: str, state: State, **fields: Any) -> None:
        check_record(state, fields)
        sets = "".join(f", {name}=?" for name in fields)
        sql = f"UPDATE requests SET state=?, updated=?{sets} WHERE key=? AND owner=?"
        params = (state, time.time(), *fields.values(), key, self.owner)

        def record(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount != 1:
                raise JournalError(
                    f"journal {str(self.path)!r}: request {key} is not held by this run"
                )

        await self._transaction(record)

    async def get(self, key: str) -> JournalRecord | None:
        def get(conn: sqlite3.Connection) -> JournalRecord | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM requests WHERE key=?", (key,)).fetchone()
            return None if row is None else JournalRecord(*row)

        return await self._run_conn(get)

    async def records(self) -> list[JournalRecord]:
        def records(conn: sqlite3.Connection) -> list[JournalRecord]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM requests ORDER BY idx").fetchall()
            return [JournalRecord(*row) for row in rows]

        return await self._run_conn(records)

    # -- plumbing ----------------------------------------------------------------------------

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T], *, here: bool = False) -> T:
        """``fn`` inside ``BEGIN IMMEDIATE``: its read and its write are one atomic step
        (``here``: on the calling thread, see ``_run``)."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run_conn(run, here=here)

    async def _run_conn(self, fn: Callable[[sqlite3.Connection], T], *, here: bool = False) -> T:
        def call() -> T:
            assert self._conn is not None
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {str(self.path)!r}: {exc}") from None

        return await self._run(call, here=here)

    async def _run(self, fn: Callable[[], T], *, here: bool = False) -> T:
        """``fn`` with the connection to itself: in a worker thread, or (``here``) on the
        calling thread once no worker holds it, returning without a checkpoint after ``fn``."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)  # one connection, one writer, in order
        if self._conn is None:
            await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
        if not here:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        async with self._limiter:  # releasing it does not yield: fn's return is the last step
            return fn()


class SQLiteBatchReader:
    """Every row of a journal file, read while its run goes on or after it (read-only: the
    run's lock is not taken, nothing is created or changed). Which run is alive is not told
    (``JournalEntry.alive`` is ``None``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: Path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._owner = "owner"

    async def __aenter__(self) -> SQLiteBatchReader:
        self._conn = await anyio.to_thread.run_sync(self._open)
        return self

    def _open(self) -> sqlite3.Connection:
        where = repr(str(self.path))
        if not self.path.is_file():
            raise JournalError(f"no journal file {where}")
        conn: sqlite3.Connection | None = None
        try:
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("SELECT key, idx, state, body FROM requests LIMIT 1").fetchall()
            columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
            if "owner" not in columns:  # a journal written before rows had owners
                self._owner = "NULL"
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise JournalError(f"cannot read the journal {where}: {exc}") from None
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close)

    async def pages(self) -> AsyncGenerator[list[JournalEntry], None]:
        conn = self._conn
        assert conn is not None, "use it in 'async with'"
        sql = (
            f"SELECT key, idx, state, task_id, kind, url, path, error, {self._owner}, body"
            " FROM requests WHERE (idx, key) > (?, ?) ORDER BY idx, key LIMIT ?"
        )
        after: tuple[int, str] = (-(2**63), "")

        def page() -> list[Any]:
            try:
                return conn.execute(sql, (*after, EXPORT_PAGE)).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot read the journal {str(self.path)!r}: {exc}") from None

        while True:
            rows = await anyio.to_thread.run_sync(page)
            if not rows:
                return
            yield [JournalEntry(JournalRecord(*r[:9]), json.loads(r[9])) for r in rows]
            if len(rows) < EXPORT_PAGE:
                return
            after = (rows[-1][1], rows[-1][0])
