"""A journal shared by several runs: one batch's rows in PostgreSQL.

Several ``generate_many`` runs (on one machine or many) with the same ``PostgresJournal`` batch
work the batch together: each request is claimed by one run (a compare-and-set on its row
under ``FOR UPDATE``), created once, polled by one live run, saved once.

Liveness is bound to a session, not a heartbeat: each run holds a session-level advisory lock
(keyed by batch and owner) on a connection of its own for as long as it lives. PostgreSQL frees
it the moment that connection dies — the process was killed, or its machine vanished (TCP
keepalives, set on that session, bound how long that takes) — so "the owner is dead" is simply
"nobody holds its lock", with no clock and no heartbeat to tune. A dead run's rows are taken
over: a claim nothing was sent for is claimed again and sent; a task it created is polled; a
create it had on the wire becomes "unknown", exactly as with one process. ``take_over`` hands a
live run every such row at once (``FOR UPDATE SKIP LOCKED``: runs sweeping together never
block on, nor take, the same row).

The driver is psycopg 3, blocking, in a worker thread (one connection, one call at a time).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncGenerator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import anyio

from .._errors import (
    CoordinatorUnavailableError,
    JournalAwayError,
    JournalError,
    JournalTakenOverError,
    JournalUnavailableError,
)
from .._logs import logger
from .._polling._pg_limits import (
    DatabaseUnavailable,
    check_schema,
    connect,
    describe_dsn,
    install_once,
    one_line,
)
from .._retry import RetryPolicy
from .journal import (
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

# 2: the journal_state index; a claim again of a row held is won. 3: wire_owner
SCHEMA_VERSION = 3
_BATCH_RE = re.compile(r"^[\w.:@+/=-]{1,200}$")
_COLUMNS = "key, idx, state, task_id, kind, url, path, error, owner"
#: Rows whose run has work left in them: send, settle or poll. (A ``done`` row is final for a
#: run that saves no files; a run that does saves it when it meets the request in its input.)
_UNFINISHED = ("claimed", "sending", "created")


def _work_left(files: bool) -> list[str]:
    """States a dead run's row is work left in; ``done`` too for a run that saves files."""
    return [*_UNFINISHED, "done"] if files else list(_UNFINISHED)


def _schema_sql(s: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {s}.journal (
    batch text NOT NULL,
    key text NOT NULL,
    idx integer NOT NULL,
    state text NOT NULL,
    task_id text,
    kind text NOT NULL DEFAULT 'media',
    url text,
    path text,
    error text,
    body text NOT NULL,
    owner text,
    updated timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (batch, key)
);
CREATE INDEX IF NOT EXISTS journal_owner ON {s}.journal (batch, owner);
-- The run whose write-ahead made the row ``sending`` last: only it knows what became of that
-- create (a run that takes the row over can only call it unknown).
ALTER TABLE {s}.journal ADD COLUMN IF NOT EXISTS wire_owner text;
-- Sweeps look for rows with work left, most of a long batch's rows being final by then.
CREATE INDEX IF NOT EXISTS journal_state ON {s}.journal (batch, state);

-- Whether the run ``owner`` of ``batch`` is alive: its session still holds its advisory lock.
CREATE OR REPLACE FUNCTION {s}.journal_alive(p_batch text, p_owner text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_owner IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint)
              = hashtextextended(p_batch || '/' || p_owner, 0))
$$;

-- Claim one request: a new row, or one with nothing on the server whose run is gone, becomes
-- ``claimed`` by p_owner (won). A dead run's row in another state is taken over (not won). A
-- live run's row is left alone (elsewhere).
CREATE OR REPLACE FUNCTION {s}.journal_claim(
    p_batch text, p_key text, p_idx integer, p_body text, p_owner text)
RETURNS TABLE (won boolean, elsewhere boolean, key text, idx integer, state text,
               task_id text, kind text, url text, path text, error text, owner text)
LANGUAGE plpgsql AS $$
DECLARE
    r {s}.journal;
BEGIN
    INSERT INTO {s}.journal AS j (batch, key, idx, state, body, owner)
        VALUES (p_batch, p_key, p_idx, 'claimed', p_body, p_owner)
        ON CONFLICT ON CONSTRAINT journal_pkey DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT true, false, p_key, p_idx, 'claimed'::text, NULL::text,
            'media'::text, NULL::text, NULL::text, NULL::text, p_owner;
        RETURN;
    END IF;
    SELECT * INTO r FROM {s}.journal j WHERE j.batch = p_batch AND j.key = p_key FOR UPDATE;
    IF r.owner = p_owner THEN  -- a claim again (its answer was lost): won if nothing was sent
        RETURN QUERY SELECT r.state = 'claimed', false, r.key, r.idx, r.state, r.task_id,
            r.kind, r.url, r.path, r.error, r.owner;
        RETURN;
    END IF;
    IF {s}.journal_alive(p_batch, r.owner) THEN
        RETURN QUERY SELECT false, true, r.key, r.idx, r.state, r.task_id, r.kind, r.url,
            r.path, r.error, r.owner;
        RETURN;
    END IF;
    IF r.state IN ('claimed', 'rejected') THEN
        UPDATE {s}.journal j SET state = 'claimed', owner = p_owner, idx = p_idx, error = NULL,
            updated = clock_timestamp() WHERE j.batch = p_batch AND j.key = p_key;
        RETURN QUERY SELECT true, false, p_key, p_idx, 'claimed'::text, NULL::text,
            r.kind, NULL::text, NULL::text, NULL::text, p_owner;
        RETURN;
    END IF;
    UPDATE {s}.journal j SET owner = p_owner, updated = clock_timestamp()
        WHERE j.batch = p_batch AND j.key = p_key;
    RETURN QUERY SELECT false, false, r.key, r.idx, r.state, r.task_id, r.kind, r.url, r.path,
        r.error, p_owner;
END $$;
"""


def check_batch(name: str) -> str:
    if not isinstance(name, str) or not _BATCH_RE.match(name):
        raise JournalError(
            f"a batch name is 1-200 letters, digits and . _ - : @ + / =, got {name!r}"
        )
    return name


#: A lost connection: how long a run waits for PostgreSQL to be back by default (the
#: journal's ``outage_timeout``), how often it tries (backoff from 0.25 s up to 2 s, jittered),
#: and how long it then lets the other runs take their locks again (see ``_rejoin``).
REJOIN_FOR = 120.0
REJOIN_BACKOFF = RetryPolicy(initial_delay=0.25, max_delay=2.0)
REJOIN_GRACE = 2.0


#: A call whose connection is lost again each time it is made again gives up after this many.
_LOSSES_PER_CALL = 3


class _Lost(Exception):
    """Internal: the connection is gone (not: the statement was refused)."""


def _psycopg_error() -> type[Exception]:
    import psycopg

    return psycopg.Error


class PostgresJournal:
    """The rows of batch ``batch`` in PostgreSQL, shared by every run that names it.

    ``acquire`` connects (``CoordinatorUnavailableError`` if the server cannot be reached,
    before anything is sent) and takes this run's liveness lock; ``aclose`` gives it up.

    Lost mid-run, the database is waited for ``outage_timeout`` seconds (then
    ``JournalUnavailableError``): no create is sent meanwhile (``mark_on_wire`` checks this
    run's lock in the same statement), and every write is a compare-and-set on the row's owner,
    so a row another run took over meanwhile is neither sent nor written here
    (``JournalTakenOverError``).
    """

    def __init__(
        self,
        dsn: str,
        batch: str,
        *,
        schema: str = "gptunnel",
        outage_timeout: float = REJOIN_FOR,
    ) -> None:
        if not isinstance(outage_timeout, (int, float)) or not outage_timeout >= 0:
            raise JournalError(f"outage_timeout is seconds >= 0, got {outage_timeout!r}")
        self.dsn = dsn
        self.batch: str = check_batch(batch)
        self.schema: str = check_schema(schema)
        self.owner: str = new_owner_id()
        self.outage_timeout: float = float(outage_timeout)
        self.outages: int = 0  # connections lost and made again (for tests and monitoring)
        self._conn: Any = None
        self._life: Any = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._generation = 0  # how many times the connections were made again
        self._rejoined: anyio.Event | None = None  # set once they are (None: not lost)
        # Why the connections must be made again, found by a call that could not wait for it
        # (``mark_on_wire``: a lost connection, or this run's liveness lock gone).
        self._lost: str | None = None
        self._gave_up: str | None = None  # the database was not back in time: every call fails

    def __repr__(self) -> str:
        return f"PostgresJournal({describe_dsn(self.dsn)!r}, batch={self.batch!r})"

    @property
    def where(self) -> str:
        return f"{describe_dsn(self.dsn)} batch {self.batch!r}"

    # -- ownership ---------------------------------------------------------------------------

    async def acquire(self) -> None:
        if self._conn is not None:  # taken already (by the caller, before generate_many)
            return
        try:
            await self._thread(self._open)
        except DatabaseUnavailable as exc:
            raise _unavailable(self.dsn, exc) from None

    def _open(self) -> None:
        life = connect(self.dsn, "gptunnel-async journal run")
        try:
            # A vanished machine's session must end (and free its lock) in seconds, not hours.
            life.execute(
                "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;"
                " SET tcp_keepalives_count = 3"
            )
            conn = connect(self.dsn, "gptunnel-async journal")
        except Exception:
            life.close()
            raise
        try:
            install_once(conn, self.schema, "journal", SCHEMA_VERSION, _schema_sql(self.schema))
            got = life.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                (f"{self.batch}/{self.owner}",),
            ).fetchone()
        except Exception:
            conn.close()
            life.close()
            raise
        if not got or not got[0]:  # only after a loss: its old session is not over yet
            conn.close()
            life.close()
            raise DatabaseUnavailable("this run's previous session still holds its lock")
        self._life, self._conn = life, conn

    async def aclose(self) -> None:
        conn, life, self._conn, self._life = self._conn, self._life, None, None

        def close() -> None:
            if life is not None:  # free the lock now (the session's end frees it a bit later)
                with contextlib.suppress(Exception):
                    life.execute("SELECT pg_advisory_unlock_all()")
            for c in (conn, life):
                if c is not None:
                    with contextlib.suppress(Exception):  # broken: closed either way
                        c.close()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close, limiter=self._limiter)

    # -- rows --------------------------------------------------------------------------------

    async def claim(self, key: str, index: int, body: Mapping[str, Any]) -> Claim:
        sql = f"SELECT * FROM {self.schema}.journal_claim(%s, %s, %s, %s, %s)"
        args = (self.batch, key, index, body_text(body), self.owner)
        row = await self._query(lambda c: c.execute(sql, args).fetchone())
        return Claim(JournalRecord(*row[2:]), won=bool(row[0]), elsewhere=bool(row[1]))

    async def mark_on_wire(self, key: str) -> None:
        """``claimed`` -> ``sending``, only while this run holds its liveness lock, in the same
        statement: a run whose lock lapsed (its session lost) may have had the row taken over
        by a live run, which sends it. Never waits for a lost database (the create holds a
        gate slot the polls need): ``JournalAwayError``, nothing sent, send it once back
        (``wait_ready``). ``JournalTakenOverError``: another run has the request now."""
        s = self.schema
        sql = (
            f"UPDATE {s}.journal SET state = 'sending', wire_owner = owner,"
            " updated = clock_timestamp()"
            " WHERE batch = %s AND key = %s AND state = ANY(%s) AND owner = %s"
            f" AND {s}.journal_alive(batch, owner)"
        )
        # the move again, when the answer to the first was lost, is done (``sending``)
        args = (self.batch, key, ["claimed", "sending"], self.owner)
        why_sql = (
            f"SELECT j.owner, j.state, {s}.journal_alive(%s, %s) FROM {s}.journal j"
            " WHERE j.batch = %s AND j.key = %s"
        )
        why_args = (self.batch, self.owner, self.batch, key)

        def move(c: Any) -> Any:
            if c.execute(sql, args).rowcount == 1:
                return None
            return c.execute(why_sql, why_args).fetchone() or (None, "not in the journal", True)

        why = await self._query(move, wait=False)
        if why is None:
            return
        owner, state, alive = why
        if not alive:  # the lock's session is gone: make both connections again, retake it
            self._lost = "this run's liveness lock is gone"
            raise self._away()
        if owner is not None and owner != self.owner:
            raise JournalTakenOverError(
                f"journal {self.where}: request {key} was taken over by {owner} while this "
                "run was cut off; its create is not sent here"
            )
        raise JournalError(
            f"journal {self.where}: request {key} is {state}, not claimed by this run; "
            "its create is not sent"
        )

    async def wait_ready(self) -> None:
        """Return at once while the database answers; after a loss, once it is back and this
        run's lock is retaken (``JournalUnavailableError`` after ``outage_timeout``)."""
        if self._lost is None and self._rejoined is None:
            conn = self._conn
            if conn is not None and not conn.broken:
                return
        await self._query(lambda c: c.execute("SELECT 1"))

    def _away(self) -> JournalAwayError:
        return JournalAwayError(
            f"journal {self.where}: PostgreSQL is away ({self._lost or 'reconnecting'}); "
            "the create is not sent until it is back"
        )

    async def release(self, key: str) -> None:
        """``sending`` -> ``claimed``: this run's create certainly did not leave. Also when
        another run took the row over meanwhile (this run was cut off with its write-ahead
        made, or its answer lost): that run found it ``sending`` and can only call it
        unknown, while this run knows it was not sent; the row is this run's again, to send.
        (``wire_owner``: no write-ahead was made since this run's, so nobody else sent it.)"""
        sql = (
            f"UPDATE {self.schema}.journal SET state = 'claimed', owner = %s, error = NULL,"
            " updated = clock_timestamp() WHERE batch = %s AND key = %s AND ("
            " (owner = %s AND state IN ('sending', 'claimed'))"
            " OR (wire_owner = %s AND state IN ('sending', 'unknown') AND task_id IS NULL))"
        )
        args = (self.owner, self.batch, key, self.owner, self.owner)
        await self._query(lambda c: c.execute(sql, args).rowcount)

    async def record(self, key: str, state: State, **fields: Any) -> None:
        """Write an outcome of a row this run holds (a compare-and-set on ``owner``):
        ``JournalTakenOverError`` if another run took it over while this run was cut off.

        One exception: a create's task id. A row still ``sending`` from this run's write-ahead
        (``wire_owner``), or marked ``unknown`` by the run that took it over (it can never
        send it again), is this run's create, answered while the database was away: its task
        id is written and the row is this run's again (polled here), so a billed task is
        never lost (the other run's next write on the row finds it taken)."""
        check_record(state, fields)
        s = self.schema
        sets = "".join(f", {name} = %s" for name in fields)
        mine, mine_args = "owner = %s", [self.owner]
        take_back = state == "created" and fields.get("task_id") is not None
        if take_back:
            mine = (
                "(owner = %s OR (wire_owner = %s AND state IN ('sending', 'unknown')"
                " AND task_id IS NULL))"
            )
            mine_args.append(self.owner)
            if "error" not in fields:
                sets += ", error = NULL"
        sql = (
            f"UPDATE {s}.journal SET state = %s, owner = %s, updated = clock_timestamp(){sets}"
            f" WHERE batch = %s AND key = %s AND {mine}"
        )
        args = (state, self.owner, *fields.values(), self.batch, key, *mine_args)
        owner_sql = f"SELECT owner, task_id FROM {s}.journal WHERE batch = %s AND key = %s"

        def write(c: Any) -> Any:
            if c.execute(sql, args).rowcount == 1:
                return None
            return c.execute(owner_sql, (self.batch, key)).fetchone() or (None, None)

        why = await self._query(write)
        if why is None:
            return
        # The task id is already there when this write was made before the connection was
        # lost (only its answer was): a run that took the row over since polls that task.
        kept = take_back and why[1] is not None and why[1] == fields["task_id"]
        if why[0] is not None and why[0] != self.owner and (kept or not take_back):
            raise JournalTakenOverError(
                f"journal {self.where}: request {key} was taken over by {why[0]} while this "
                "run was cut off; its outcome is that run's to report"
            )
        raise JournalError(  # (a task id that cannot be kept: named, so it is not lost)
            f"journal {self.where}: request {key} is not held by this run"
            + (f"; its task {fields['task_id']} is not recorded" if "task_id" in fields else "")
        )

    async def get(self, key: str) -> JournalRecord | None:
        sql = f"SELECT {_COLUMNS} FROM {self.schema}.journal WHERE batch = %s AND key = %s"
        row = await self._query(lambda c: c.execute(sql, (self.batch, key)).fetchone())
        return None if row is None else JournalRecord(*row)

    async def records(self) -> list[JournalRecord]:
        sql = f"SELECT {_COLUMNS} FROM {self.schema}.journal WHERE batch = %s ORDER BY idx"
        rows = await self._query(lambda c: c.execute(sql, (self.batch,)).fetchall())
        return [JournalRecord(*row) for row in rows]

    # -- sharing -----------------------------------------------------------------------------

    async def take_over(
        self, limit: int = 100, *, files: bool = False
    ) -> list[tuple[JournalRecord, dict[str, Any]]]:
        """Rows of runs that died with work left (claimed, sending, created; with ``files``,
        done too: the file is not saved), now this run's, with each request's create body.
        Claimed rows come back ``claimed`` by this run (send them); the others as they were
        (poll, report, or save them).

        Whether a run is alive is asked once per run holding such rows, not once per row
        (each asks ``pg_locks``): a sweep costs one pass over the batch's rows."""
        sql = f"""
            WITH owners AS MATERIALIZED (  -- not inlined: the check must not run per row
                SELECT DISTINCT j.owner FROM {self.schema}.journal j
                WHERE j.batch = %(batch)s AND j.state = ANY(%(states)s)
                  AND j.owner IS DISTINCT FROM %(me)s
            ), dead AS MATERIALIZED (
                SELECT o.owner FROM owners o
                WHERE NOT {self.schema}.journal_alive(%(batch)s, o.owner)
            ), gone AS (
                SELECT j.key FROM {self.schema}.journal j
                WHERE j.batch = %(batch)s AND j.state = ANY(%(states)s)
                  AND j.owner IN (SELECT owner FROM dead)
                ORDER BY j.idx LIMIT %(limit)s
                FOR UPDATE OF j SKIP LOCKED
            )
            UPDATE {self.schema}.journal j SET owner = %(me)s, updated = clock_timestamp()
            FROM gone WHERE j.batch = %(batch)s AND j.key = gone.key
            RETURNING j.key, j.idx, j.state, j.task_id, j.kind, j.url, j.path, j.error,
                j.owner, j.body"""
        args = {"batch": self.batch, "states": _work_left(files), "me": self.owner, "limit": limit}
        rows = await self._query(lambda c: c.execute(sql, args).fetchall())
        rows.sort(key=lambda row: row[1])
        return [(JournalRecord(*row[:9]), json.loads(row[9])) for row in rows]

    async def others_working(self, *, files: bool = False) -> int:
        """Rows with work left (as ``take_over`` counts it) held by other runs: live ones
        finish them or die; dead ones' are for ``take_over``. (Counting live ones only let the
        last run leave when a run died between its ``take_over`` and this count: that run's
        work was left to nobody.)"""
        sql = f"""
            SELECT count(*) FROM {self.schema}.journal j
            WHERE j.batch = %s AND j.state = ANY(%s) AND j.owner IS DISTINCT FROM %s"""
        args = (self.batch, _work_left(files), self.owner)
        return int(await self._query(lambda c: c.execute(sql, args).fetchone()[0]))

    # -- plumbing ----------------------------------------------------------------------------

    async def _query(self, fn: Callable[[Any], T], *, wait: bool = True) -> T:
        """One call on the journal's connection. The connection lost (PostgreSQL restarted,
        the session terminated, the network cut): wait for PostgreSQL to be back (``_rejoin``)
        and make the call again, once. Every call here may be made twice (its first answer
        lost): each is written to end in the same row either way. Calls wait in the order
        they were made (one connection, a FIFO limiter), so a request's outcomes are written
        in order. ``wait=False``: ``JournalAwayError`` instead of waiting."""
        import psycopg

        def call() -> T:
            conn = self._conn
            if conn is None:
                raise JournalError(f"journal {self.where}: acquire() it first")
            try:
                return fn(conn)
            except psycopg.Error as exc:
                # OperationalError: the session was terminated or its socket closed; psycopg
                # may raise it before it marks the connection broken (seen in CI)
                if conn.broken or conn.closed or isinstance(exc, psycopg.OperationalError):
                    raise _Lost(one_line(exc)) from None
                raise JournalError(f"journal {self.where}: {one_line(exc)}") from None

        losses = 0
        while True:
            if self._gave_up is not None:
                raise JournalUnavailableError(self._gave_up)
            while self._rejoined is not None:  # another call is making the connection again
                if not wait:
                    raise self._away()
                await self._rejoined.wait()
            generation = self._generation
            if self._lost is not None:  # found by a call that could not wait for it
                if not wait:
                    raise self._away()
                await self._rejoin(generation, self._lost)
                continue
            try:
                return await self._thread(call)
            except _Lost as lost:
                if not wait:
                    self._lost = str(lost)
                    raise self._away() from None
                losses += 1
                if losses > _LOSSES_PER_CALL:
                    raise JournalUnavailableError(
                        f"journal {self.where}: connection lost {losses} times in one call "
                        f"({lost}); the run stops, a rerun resumes"
                    ) from None
                await self._rejoin(generation, str(lost))

    async def _rejoin(self, generation: int, reason: str) -> None:
        """Connect again and take this run's liveness lock again, within ``outage_timeout``
        seconds (``JournalUnavailableError`` if not, and for every call after). Meanwhile
        every call waits: no claim, so no new create; the poller goes on polling. Once back,
        wait ``REJOIN_GRACE`` before any call, so that the other runs, lost with this one, have
        taken their locks again: a run that acts at once would find them "dead" and take their
        rows over."""
        if generation != self._generation or self._rejoined is not None:
            return  # made again already, or being made
        self._rejoined = anyio.Event()
        self.outages += 1
        logger.warning(
            "journal %s: connection lost (%s); waiting up to %.0f s for PostgreSQL "
            "(no new creates meanwhile, polls go on)",
            self.where,
            reason,
            self.outage_timeout,
        )
        try:
            await self._thread(self._close_quietly)
            last: Exception | None = None
            tries = 0
            with anyio.move_on_after(self.outage_timeout):
                while True:
                    try:
                        await self._thread(self._open)
                        break
                    except (DatabaseUnavailable, JournalError, _psycopg_error()) as exc:
                        last = exc
                    tries += 1
                    await anyio.sleep(REJOIN_BACKOFF.delay_after(tries))
            if self._conn is None:
                self._gave_up = (
                    f"journal {self.where}: PostgreSQL not back within "
                    f"{self.outage_timeout:g} s ({one_line(last) if last else 'no answer'}); "
                    "the run stops: nothing unrecorded was sent, a rerun resumes"
                )
                raise JournalUnavailableError(self._gave_up)
            self._lost = None
            logger.warning("journal %s: connected again", self.where)
            await anyio.sleep(REJOIN_GRACE)
            self._generation += 1
        finally:
            self._rejoined.set()
            self._rejoined = None

    def _close_quietly(self) -> None:
        conn, life, self._conn, self._life = self._conn, self._life, None, None
        for c in (conn, life):
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()

    async def _thread(self, fn: Callable[[], T]) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)  # one connection, one call at a time
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)


def _unavailable(dsn: str, exc: DatabaseUnavailable) -> CoordinatorUnavailableError:
    return CoordinatorUnavailableError(
        f"journal: PostgreSQL at {describe_dsn(dsn)} is unavailable ({exc})"
    )


class PostgresBatchReader:
    """Every row of batch ``batch``, read by any machine while the batch runs or after it.

    Reads only: no schema is installed, no liveness lock taken, no row changed. ``async with``
    connects (``CoordinatorUnavailableError`` if it cannot) and checks that the batch exists
    (``JournalError`` naming the batches there if not); ``pages()`` yields the rows in input
    order, ``EXPORT_PAGE`` at a time, each with whether its run is alive now.
    """

    def __init__(self, dsn: str, batch: str, *, schema: str = "gptunnel") -> None:
        self.dsn = dsn
        self.batch: str = check_batch(batch)
        self.schema: str = check_schema(schema)
        self._conn: Any = None

    @property
    def where(self) -> str:
        return f"{describe_dsn(self.dsn)} batch {self.batch!r}"

    async def __aenter__(self) -> PostgresBatchReader:
        try:
            self._conn = await anyio.to_thread.run_sync(
                connect, self.dsn, "gptunnel-async journal reader"
            )
        except DatabaseUnavailable as exc:
            raise _unavailable(self.dsn, exc) from None
        try:
            await self._query(self._check)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(conn.close)

    def _check(self, conn: Any) -> None:
        table = f"{self.schema}.journal"
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            raise JournalError(
                f"no journal at {describe_dsn(self.dsn)} (no table {table}): no batch has run "
                "with this database and schema"
            )
        sql = f"SELECT 1 FROM {table} WHERE batch = %s LIMIT 1"
        if conn.execute(sql, (self.batch,)).fetchone() is not None:
            return
        rows = conn.execute(
            f"SELECT batch, count(*) FROM {table} GROUP BY batch ORDER BY max(updated) DESC LIMIT 6"
        ).fetchall()
        known = ", ".join(f"{name!r} ({n} rows)" for name, n in rows[:5])
        more = ", ..." if len(rows) > 5 else ""
        raise JournalError(
            f"no batch {self.batch!r} at {describe_dsn(self.dsn)}"
            + (f"; its batches, latest first: {known}{more}" if rows else "; it has no batch")
        )

    async def pages(self) -> AsyncGenerator[list[JournalEntry], None]:
        s = self.schema
        # Liveness per distinct owner of the page (a pg_locks scan each), not per row.
        sql = f"""
            WITH page AS (
                SELECT {_COLUMNS}, body FROM {s}.journal
                WHERE batch = %(batch)s AND (idx, key) > (%(idx)s, %(key)s)
                ORDER BY idx, key LIMIT %(limit)s
            ), owners AS (
                SELECT o.owner, {s}.journal_alive(%(batch)s, o.owner) AS alive
                FROM (SELECT DISTINCT owner FROM page) o
            )
            SELECT page.*, coalesce(owners.alive, false) FROM page
            LEFT JOIN owners ON owners.owner = page.owner
            ORDER BY page.idx, page.key"""
        args: dict[str, Any] = {"batch": self.batch, "idx": -(2**31), "key": ""}
        args["limit"] = EXPORT_PAGE
        while True:
            rows = await self._query(lambda c: c.execute(sql, args).fetchall())
            if not rows:
                return
            yield [JournalEntry(JournalRecord(*r[:9]), json.loads(r[9]), bool(r[10])) for r in rows]
            if len(rows) < EXPORT_PAGE:
                return
            args["idx"], args["key"] = rows[-1][1], rows[-1][0]

    async def _query(self, fn: Callable[[Any], T]) -> T:
        import psycopg

        def call() -> T:
            if self._conn is None:
                raise JournalError(f"journal {self.where}: the reader is closed")
            try:
                return fn(self._conn)
            except psycopg.Error as exc:
                raise JournalError(f"journal {self.where}: {one_line(exc)}") from None

        return await anyio.to_thread.run_sync(call)
