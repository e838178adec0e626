"""A PostgreSQL server for the tests, found or started, and a database of their own.

Where the server comes from, in order:

1. ``GPTUNNEL_TEST_POSTGRES_DSN`` (any libpq DSN of a role that may create databases);
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` (developers' machines and CI: trust auth);
3. a throwaway cluster made with the server binaries (``initdb``/``pg_ctl`` on PATH or under
   ``/usr/lib/postgresql/*/bin``), run as a non-root user (initdb refuses root), removed after;
4. otherwise the tests skip, saying why — or fail, with ``GPTUNNEL_REQUIRE_POSTGRES=1`` (CI).

Each run creates its own database (``gptunnel_test_<random>``) and drops it at the end.
A test module asks for them with ``pytest_plugins = ["pg_support"]``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

DSN_ENV = "GPTUNNEL_TEST_POSTGRES_DSN"
REQUIRE_ENV = "GPTUNNEL_REQUIRE_POSTGRES"
LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"PostgreSQL is required here ({REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL for these tests: {reason}")


def _answers(dsn: str) -> str | None:
    """None if a connection works, else why not (one line)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None


def _server_binaries() -> tuple[str, str] | None:
    dirs = [os.path.dirname(p) for p in filter(None, [shutil.which("initdb")])]
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in dirs:
        initdb, pg_ctl = os.path.join(d, "initdb"), os.path.join(d, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _throwaway_cluster() -> Iterator[str]:
    """A cluster of our own in a temporary folder, as a non-root user; stopped and removed."""
    binaries = _server_binaries()
    if binaries is None:
        _unavailable(f"none answers ({DSN_ENV} unset, nothing at {LOCAL_DSN}) and no initdb")
        raise AssertionError("unreachable")
    initdb, pg_ctl = binaries
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run initdb as")
        run_as = ["runuser", "-u", "postgres", "--"]
    folder = tempfile.mkdtemp(prefix="gptunnel-pg-")
    data = os.path.join(folder, "data")
    if run_as:
        shutil.chown(folder, "postgres")
    port = _free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
        subprocess.run(
            [*run_as, pg_ctl, "-D", data, "-o", options, "-l", f"{folder}/log", "-w", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        _unavailable(f"a throwaway cluster would not start: {exc.stderr.decode()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A DSN of a role that may create databases (see the module docstring for the order)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'gptunnel-async[postgres]')")
    given = os.environ.get(DSN_ENV)
    if given:
        why = _answers(given)
        if why is not None:
            _unavailable(f"{DSN_ENV} does not answer: {why}")
        yield given
        return
    if _answers(LOCAL_DSN) is None:
        yield LOCAL_DSN
        return
    with _throwaway_cluster() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A DSN of a database made for this test run (dropped at the end)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"gptunnel_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(pg_server)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_schema() -> str:
    """A schema name of its own for one test (tables of different tests never mix)."""
    return f"t_{secrets.token_hex(5)}"
