"""Developer tasks: tests on asyncio and on trio, lint (ruff), types (mypy --strict), and a
quick run of the benchmarks (that they still run; their figures come from full runs).

``nox`` runs them all; ``nox -s tests-trio`` runs one. Sessions run in the environment nox
itself is installed in (``pip install -e ".[dev]"``), so they need no network of their own.
"""

from __future__ import annotations

import sys

import nox

PY = sys.executable  # the venv nox itself was installed in (.venv/bin/nox)

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _tests(session: nox.Session, backend: str) -> None:
    session.run(PY, "-m", "pytest", "-q", *session.posargs, env={"GPTUNNEL_TEST_BACKENDS": backend})


@nox.session(python=False, name="tests-asyncio")
def tests_asyncio(session: nox.Session) -> None:
    """The test suite, every async test on asyncio."""
    _tests(session, "asyncio")


@nox.session(python=False, name="tests-trio")
def tests_trio(session: nox.Session) -> None:
    """The test suite, every async test on trio."""
    _tests(session, "trio")


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")


@nox.session(python=False)
def types(session: nox.Session) -> None:
    session.run(PY, "-m", "mypy", "--strict", "gptunnel_async")


@nox.session(python=False)
def benchmarks(session: nox.Session) -> None:
    """Every benchmark in its --quick form except the sweep (same path as requests): ~4 min.

    A benchmark that crashes on a library change (bench_scale once did, on a custom policy)
    fails here, not months later in someone's run.
    """
    quick = ["--quick", "--only", "requests,scale,throughput,limits,shared"]
    session.run(PY, "benchmarks/run_all.py", *quick)
    session.run(PY, "benchmarks/sim_policy.py", "--seeds", "1", "--tasks", "200")
    session.run(PY, "benchmarks/bound.py")
