"""The PostgreSQL side of shared limits: the schema, one SQL function per decision, the driver.

Driver: psycopg 3 in its *blocking* mode, called from worker threads (``anyio.to_thread``), so
the same code serves asyncio and trio (psycopg's async mode is asyncio-only). Every call here
is blocking and short; the async side (``shared.py``) decides when to make one.

Why each decision is one SQL function: a grant needs "lock the key's row, count the live
leases, reserve rate slots, record my leases" to be atomic *and* one round trip; as separate
statements from the client the row lock would be held across network round trips. The row
``limits(key)`` serialises every process using that key; ``clock_timestamp()`` is the one clock.

Why reserve time slots instead of measuring the rate: a limiter that estimates the flowing rate
from recent counts (pgqueuer's first rps limiter did, from its statistics table) is noisy over
short windows and lets bursts through while it learns. Here each request gets a start time from
one schedule (GCRA: ``next_at`` moves ``spacing`` per slot), so the budget holds by construction.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# How much wider than 1 s the rate budget is spread: the server counts arrivals by its own
# clock, and the way there can bunch requests up by some ms (the local gate uses the same 5 %).
WINDOW = 1.05
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
# Every bound on a blocking call, so that a dead server or network cannot hang a worker thread.
_CONNECT_TIMEOUT_S = 5
_NETWORK_TIMEOUT_MS = 5000


class DatabaseUnavailable(Exception):
    """Internal: a round trip to PostgreSQL failed (the caller turns it into a typed error)."""


def check_schema(name: str) -> str:
    if not _SCHEMA_RE.match(name):
        raise ValueError(f"schema must be a lower-case SQL identifier, got {name!r}")
    return name


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages: never its password."""
    parts: dict[str, Any] | None
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = dict(conninfo_to_dict(dsn))
    except ImportError:  # the optional driver is missing: a URL still names its server
        parts = _url_parts(dsn)
    except Exception:
        parts = None
    if parts is None:
        return "<unparsable DSN>"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or 5432)
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or '?'}"


def _url_parts(dsn: str) -> dict[str, Any] | None:
    """Host, port and database of a ``postgresql://`` URL, without the driver's parser."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(dsn)
        if url.scheme not in ("postgres", "postgresql"):
            return None
        return {"host": url.hostname, "port": url.port, "dbname": url.path.lstrip("/")}
    except ValueError:
        return None


#: Bumped whenever the tables or functions below change; a database at another version is
#: brought to this one (once, under a lock) by the first process that opens it.
SCHEMA_VERSION = 2


def install_once(conn: Any, schema: str, component: str, version: int, ddl: str) -> None:
    """Run ``ddl`` unless ``schema`` already has ``component`` at ``version``.

    One installer at a time (an advisory lock): concurrent ``CREATE OR REPLACE FUNCTION`` can
    fail, and a process must never call a function another one is replacing.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('gptunnel_async.schema'))")
        conn.execute(
            f"CREATE SCHEMA IF NOT EXISTS {schema};"
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_versions"
            " (component text PRIMARY KEY, version integer NOT NULL)"
        )
        row = conn.execute(
            f"SELECT version FROM {schema}.schema_versions WHERE component = %s", (component,)
        ).fetchone()
        if row is not None and row[0] == version:
            return
        conn.execute(ddl)
        conn.execute(
            f"INSERT INTO {schema}.schema_versions VALUES (%s, %s) ON CONFLICT (component)"
            " DO UPDATE SET version = EXCLUDED.version",
            (component, version),
        )


def _schema_sql(s: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.limits (
    key text PRIMARY KEY,                 -- HMAC fingerprint of (API key, base URL): never the key
    next_at timestamptz NOT NULL DEFAULT 'epoch',   -- start of the next free rate slot
    paused_until timestamptz NOT NULL DEFAULT 'epoch',
    pause_epoch bigint NOT NULL DEFAULT 0,
    pauses bigint NOT NULL DEFAULT 0,
    slow_rate double precision,           -- slow-start rate after a 429 (NULL: not throttled)
    slow_since timestamptz,
    episode_rate double precision NOT NULL DEFAULT 0,
    win_start timestamptz NOT NULL DEFAULT 'epoch', -- 1 s tumbling count of granted slots
    win_count integer NOT NULL DEFAULT 0,
    prev_count integer NOT NULL DEFAULT 0,
    starved_until timestamptz NOT NULL DEFAULT 'epoch' -- a member waited for a lease lately
);
CREATE TABLE IF NOT EXISTS {s}.limit_members (
    key text NOT NULL,
    member text NOT NULL,                 -- one process (one gate): a random id
    held integer NOT NULL DEFAULT 0,      -- concurrency leases it holds
    expires_at timestamptz NOT NULL,      -- its heartbeat's horizon: dead after that
    PRIMARY KEY (key, member)
);

-- The slow-start rate now (doubles every second from slow_since), NULL once recovered.
CREATE OR REPLACE FUNCTION {s}.slow_rate_now(
    lim {s}.limits, ceiling double precision, now_ts timestamptz)
RETURNS double precision LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE r double precision;
BEGIN
    IF lim.slow_rate IS NULL THEN RETURN NULL; END IF;
    r := lim.slow_rate * power(2.0, least(60.0, greatest(0.0,
            extract(epoch FROM now_ts - lim.slow_since)::double precision)));
    IF r >= coalesce(ceiling, 'infinity'::double precision) OR r >= 10000 THEN RETURN NULL; END IF;
    RETURN r;
END $$;

-- (earlier shapes of acquire, replaced below)
DROP FUNCTION IF EXISTS {s}.acquire(text, text, integer, integer, integer, integer,
    double precision, double precision);
DROP FUNCTION IF EXISTS {s}.acquire(text, text, integer, integer, integer, integer,
    double precision, double precision, double precision);

-- One grant round: report what I hold (absolute, so a lost answer cannot leak leases), take up
-- to p_new new leases within the shared bound, and a start time for each new lease and each
-- p_rerate lease that must be re-timed after a pause. Under a concurrency bound, new leases are
-- granted only for starts within p_horizon seconds, so no member sits on leases while it waits
-- for its turn in the rate budget. Also the member's heartbeat. Starts are returned on the
-- database's clock (db_now, start_at) so that each member maps them onto its own clock.
CREATE OR REPLACE FUNCTION {s}.acquire(
    p_key text, p_member text, p_held integer, p_new integer, p_rerate integer,
    p_max_concurrency integer, p_rps double precision, p_ttl double precision,
    p_horizon double precision, p_lead double precision)
RETURNS TABLE (granted integer, wait_s double precision, spacing_s double precision,
               paused_s double precision, members integer, starved boolean,
               db_now double precision, start_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    lim {s}.limits;
    others integer;
    n_members integer;
    prev_held integer;
    g integer := 0;
    room integer;
    slots integer := 0;
    rate double precision;
    start_ts timestamptz;
    w double precision := 0;
    sp double precision := 0;
BEGIN
    INSERT INTO {s}.limits (key) VALUES (p_key) ON CONFLICT (key) DO NOTHING;
    SELECT * INTO lim FROM {s}.limits WHERE key = p_key FOR UPDATE;
    DELETE FROM {s}.limit_members WHERE key = p_key AND expires_at < now_ts;
    SELECT coalesce(sum(m.held), 0), count(*) INTO others, n_members
        FROM {s}.limit_members m WHERE m.key = p_key AND m.member <> p_member;
    SELECT m.held INTO prev_held FROM {s}.limit_members m
        WHERE m.key = p_key AND m.member = p_member;
    IF lim.paused_until <= now_ts THEN
        g := p_new;
        IF p_max_concurrency IS NOT NULL THEN
            g := greatest(0, least(p_new, p_max_concurrency - others - p_held));
            IF g < p_new AND lim.starved_until <= now_ts THEN
                -- someone waits for a lease: members give theirs back at once for a while
                lim.starved_until := now_ts + interval '1 second';
                PERFORM pg_notify('{s}_limits', p_key || ' starved');
            END IF;
        END IF;
        rate := {s}.slow_rate_now(lim, p_rps, now_ts);
        IF rate IS NULL THEN
            lim.slow_rate := NULL;
            rate := p_rps;
        END IF;
        IF rate IS NOT NULL THEN
            sp := {WINDOW} / rate;
            -- p_lead: the caller's one-way latency, so the start is still ahead on arrival
            start_ts := greatest(lim.next_at, now_ts + make_interval(secs => p_lead));
            w := extract(epoch FROM start_ts - now_ts);
            IF p_max_concurrency IS NOT NULL THEN  -- (no leases: no reason to hold back)
                -- at least a few slots ahead: at low rates a round trip per slot is waste
                room := greatest(0, floor((greatest(p_horizon, 4 * sp) - w) / sp)::integer
                                    + 1 - p_rerate);
                g := least(g, room);
            END IF;
        END IF;
        slots := g + p_rerate;
    END IF;
    IF slots > 0 THEN
        IF now_ts >= lim.win_start + interval '1 second' THEN
            lim.prev_count := CASE WHEN now_ts < lim.win_start + interval '2 seconds'
                                   THEN lim.win_count ELSE 0 END;
            lim.win_start := now_ts;
            lim.win_count := 0;
        END IF;
        lim.win_count := lim.win_count + slots;
        IF sp > 0 THEN
            lim.next_at := start_ts + make_interval(secs => sp * slots);
        END IF;
    END IF;
    UPDATE {s}.limits SET next_at = lim.next_at, slow_rate = lim.slow_rate,
        win_start = lim.win_start, win_count = lim.win_count, prev_count = lim.prev_count,
        starved_until = lim.starved_until
        WHERE key = p_key;
    INSERT INTO {s}.limit_members (key, member, held, expires_at)
        VALUES (p_key, p_member, p_held + g, now_ts + make_interval(secs => p_ttl))
        ON CONFLICT (key, member)
        DO UPDATE SET held = EXCLUDED.held, expires_at = EXCLUDED.expires_at;
    -- leases freed while the bound was full: wake the members waiting for one
    IF p_max_concurrency IS NOT NULL AND p_held < coalesce(prev_held, 0)
       AND others + coalesce(prev_held, 0) >= p_max_concurrency THEN
        PERFORM pg_notify('{s}_limits', p_key || ' free');
    END IF;
    RETURN QUERY SELECT g, w, sp,
        greatest(0.0, extract(epoch FROM lim.paused_until - now_ts)::double precision),
        n_members + 1, lim.starved_until > now_ts,
        extract(epoch FROM now_ts)::double precision,
        extract(epoch FROM coalesce(start_ts, now_ts))::double precision;
END $$;

-- A 429: pause every member until Retry-After has passed (the database's clock), then slow-start
-- from half the rate that was flowing; every listening member learns it at once (NOTIFY).
CREATE OR REPLACE FUNCTION {s}.pause(
    p_key text, p_seconds double precision, p_rps double precision,
    p_min_rate double precision)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    lim {s}.limits;
    until_ts timestamptz := now_ts + make_interval(secs => greatest(0.0, p_seconds));
    cur double precision;
    base double precision;
    remaining double precision;
BEGIN
    INSERT INTO {s}.limits (key) VALUES (p_key) ON CONFLICT (key) DO NOTHING;
    SELECT * INTO lim FROM {s}.limits WHERE key = p_key FOR UPDATE;
    IF until_ts > lim.paused_until THEN
        lim.paused_until := until_ts;
        lim.pause_epoch := lim.pause_epoch + 1;
        lim.pauses := lim.pauses + 1;
    END IF;
    cur := {s}.slow_rate_now(lim, p_rps, now_ts);
    IF cur IS NULL THEN
        lim.episode_rate := greatest(1.0, lim.prev_count, lim.win_count);
        IF p_rps IS NOT NULL THEN lim.episode_rate := least(lim.episode_rate, p_rps); END IF;
        base := lim.episode_rate;
    ELSE
        base := greatest(cur, lim.episode_rate / 2);
    END IF;
    lim.slow_rate := greatest(base / 2, p_min_rate);
    lim.slow_since := lim.paused_until;
    lim.next_at := greatest(lim.next_at, lim.paused_until);
    UPDATE {s}.limits SET paused_until = lim.paused_until, pause_epoch = lim.pause_epoch,
        pauses = lim.pauses, slow_rate = lim.slow_rate, slow_since = lim.slow_since,
        episode_rate = lim.episode_rate, next_at = lim.next_at
        WHERE key = p_key;
    remaining := greatest(0.0, extract(epoch FROM lim.paused_until - now_ts)::double precision);
    PERFORM pg_notify('{s}_limits', p_key || ' pause ' || remaining::text);
    RETURN remaining;
END $$;
"""


@dataclass(frozen=True)
class Grant:
    """One acquire round's answer (seconds are relative to the database's clock at the call)."""

    granted: int
    wait: float
    spacing: float
    paused: float
    members: int
    starved: bool
    db_now: float  # the database's clock at the grant (epoch seconds)
    start_at: float  # the first granted start, on that clock


#: Why nothing can be coordinated when the optional driver is missing, and the fix.
NO_DRIVER = "the PostgreSQL driver is not installed: pip install 'gptunnel-async[postgres]'"


def connect(dsn: str, application_name: str) -> Any:
    """A new autocommit connection, or ``DatabaseUnavailable`` in one line (the driver
    missing included: it is an optional extra, and every first contact comes through here)."""
    try:
        import psycopg
    except ImportError:
        raise DatabaseUnavailable(NO_DRIVER) from None
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT_S,
            application_name=application_name,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
            tcp_user_timeout=_NETWORK_TIMEOUT_MS,
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(one_line(exc)) from None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class LimitsConnection:
    """One connection for grant rounds; one blocking call at a time (the caller serialises)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self._schema = check_schema(schema)
        self._conn: Any = None

    def open(self, *, install: bool) -> None:
        self.close()
        self._conn = connect(self._dsn, "gptunnel-async limits")
        if install:
            self._run(self._install)

    def _install(self, conn: Any) -> None:
        install_once(conn, self._schema, "limits", SCHEMA_VERSION, _schema_sql(self._schema))

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn, "gptunnel-async limits")
        try:
            return fn(self._conn)
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailable(one_line(exc)) from None

    def acquire(
        self,
        key: str,
        member: str,
        held: int,
        new: int,
        rerate: int,
        max_concurrency: int | None,
        rps: float | None,
        ttl: float,
        horizon: float,
        lead: float,
    ) -> Grant:
        sql = f"SELECT * FROM {self._schema}.acquire(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        args = (key, member, held, new, rerate, max_concurrency, rps, ttl, horizon, lead)
        row = self._run(lambda c: c.execute(sql, args).fetchone())
        return Grant(
            int(row[0]),
            float(row[1]),
            float(row[2]),
            float(row[3]),
            int(row[4]),
            bool(row[5]),
            float(row[6]),
            float(row[7]),
        )

    def pause(self, key: str, seconds: float, rps: float | None, min_rate: float) -> float:
        """Announce a 429's pause to every member, then record it for grants and newcomers.

        The announcement is a statement of its own, committed at once: the recording waits for
        the key's row lock behind the grant rounds in progress (on a busy server, tens of ms),
        and a NOTIFY sent inside it would go out only when it commits.
        """
        announce = "SELECT pg_notify(%s, %s)"
        note = f"{key} pause {max(seconds, 0.0)!r}"
        sql = f"SELECT {self._schema}.pause(%s, %s, %s, %s)"

        def run(c: Any) -> Any:
            c.execute(announce, (f"{self._schema}_limits", note))
            return c.execute(sql, (key, seconds, rps, min_rate)).fetchone()

        return float(self._run(run)[0])

    def leave(self, key: str, member: str) -> None:
        """Give back every lease of this member now (instead of at its heartbeat's expiry)."""
        sql = f"SELECT * FROM {self._schema}.acquire(%s, %s, 0, 0, 0, NULL, NULL, 0, 0, 0)"
        self._run(lambda c: c.execute(sql, (key, member)).fetchone())
        delete = f"DELETE FROM {self._schema}.limit_members WHERE key = %s AND member = %s"
        self._run(lambda c: c.execute(delete, (key, member)))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # closing a broken connection must not mask the real error
            with contextlib.suppress(Exception):
                conn.close()


class LimitsListener:
    """A LISTEN connection, read in a worker thread until ``stop`` is set (checked twice a second).

    ``connect()`` opens it and subscribes (so an unreachable server shows at once); ``run()``
    calls ``on_message(payload)`` for every notification on the schema's channel and returns
    (``DatabaseUnavailable``) when the connection breaks, so the caller can reconnect.
    """

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self._channel = f"{check_schema(schema)}_limits"
        self._conn: Any = None
        self.stop = threading.Event()

    def connect(self) -> None:
        import psycopg

        self.close()
        conn = connect(self._dsn, "gptunnel-async limits listener")
        try:
            conn.execute(f"LISTEN {self._channel}")
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseUnavailable(one_line(exc)) from None
        self._conn = conn

    def run(self, on_message: Callable[[str], None]) -> None:
        import psycopg

        try:
            if self._conn is None:
                self.connect()
            while not self.stop.is_set():
                for note in self._conn.notifies(timeout=0.5, stop_after=64):
                    on_message(note.payload)
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailable(one_line(exc)) from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
