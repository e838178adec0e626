"""Developer tasks: tests on asyncio and on trio, lint (ruff), types (mypy --strict).

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


@nox.session(python=False, name="tests")
@nox.parametrize("backend", ["asyncio", "trio"], ids=["asyncio", "trio"])
def tests(session: nox.Session, backend: str) -> None:
    """The test suite on one async backend (each async test runs on it)."""
    session.run(
        PY, "-m", "pytest", "-q", *session.posargs,
        env={"GPTUNNEL_TEST_BACKENDS": backend},
    )  # fmt: skip


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")


@nox.session(python=False)
def types(session: nox.Session) -> None:
    session.run(PY, "-m", "mypy", "--strict", "gptunnel_async")
