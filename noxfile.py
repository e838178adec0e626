"""Developer tasks: tests on asyncio and on trio, lint (ruff), types (mypy --strict), the public
API's type completeness (pyright --verifytypes, ``typing-public``), and a quick run of the
benchmarks (that they still run; their figures come from full runs).

``nox`` runs them all; ``nox -s tests-trio`` runs one. Most sessions run in the environment nox
itself is installed in (``pip install -e ".[dev]"``, Python 3.11). ``tests-quick`` runs a quick
suite on every other CPython the package claims (3.10, 3.12, 3.13), each in a venv of its own.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

PY = sys.executable  # the venv nox itself was installed in (.venv/bin/nox)
#: The CPythons the package claims besides the one nox runs on (pyproject's classifiers).
OTHER_PYTHONS = ("3.10", "3.12", "3.13")


def _interpreter(session: nox.Session, version: str) -> str:
    """A pyenv install of CPython ``version``, else ``python3.X`` on PATH that really runs.

    pyenv's shims answer only for the versions in ``pyenv global``, so the installs are
    looked up first.
    """
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    installs = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    candidates = [*installs[-1:], shutil.which(f"python{version}")]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    msg = f"CPython {version} not found (pyenv install {version}, or put it on PATH)"
    return session.error(msg)  # raises: the session fails, naming what is missing


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


#: End-to-end scenario files the quick suites leave to the full run (minutes each, and about
#: the machine and the SDK's behaviour, not the interpreter).
_SCENARIOS = (
    "test_reliability.py",
    "test_readme.py",
    "test_examples_apps.py",
    "test_examples_shared.py",
    "test_quickstart_command.py",
)


@nox.session(python=False, name="tests-quick")
@nox.parametrize("version", OTHER_PYTHONS)
def tests_quick(session: nox.Session, version: str) -> None:
    """A quick suite on another supported CPython, in its venv: every unit and API test on
    asyncio; the end-to-end scenarios (campaigns, README, examples, the quick start) stay on
    the main interpreter's full run."""
    venv = Path(".nox") / f"quick-{version}"
    python = str(venv / "bin" / "python")
    if not Path(python).exists():
        session.run(_interpreter(session, version), "-m", "venv", str(venv))
    session.run(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
    session.run(python, "-m", "pip", "install", "-q", "-e", ".[dev]")
    session.run(
        python, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
        *(f"--ignore=tests/{name}" for name in _SCENARIOS),
        *session.posargs, env={"GPTUNNEL_TEST_BACKENDS": "asyncio"},
    )  # fmt: skip


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
    # ~1 min, deterministic; a smoke run here: a missed cell (exit 3) is reported, not a gate
    # (the figure is the full grid, with its seeds, in benchmarks/README.md); a crash (exit 1)
    # fails the session
    session.run(PY, "benchmarks/sim_learning.py", "--quick", success_codes=[0, 3])
    session.run(PY, "benchmarks/bound.py")


@nox.session(python=False, name="typing-public")
def typing_public(session: nox.Session) -> None:
    """``pyright --verifytypes``: every public symbol of the package must be fully typed (100 %).

    Users' type checkers see what pyright sees here; one unannotated attribute makes a whole
    class "partially unknown" for them. The venv's bin goes first on PATH so pyright resolves
    the dependencies (httpx, pydantic) from the same environment the tests run in.
    """
    here = str(Path.cwd())
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(PY).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": here,
    }
    cmd = [PY, "-m", "pyright", "--verifytypes", "gptunnel_async", "--ignoreexternal"]
    as_json = [*cmd, "--outputjson"]
    session.log(" ".join(as_json))
    out = subprocess.run(as_json, capture_output=True, text=True, env=env, check=False)
    try:
        report = json.loads(out.stdout)["typeCompleteness"]
    except (ValueError, KeyError):
        session.error(f"pyright gave no report:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    if not Path(report["packageRootDirectory"]).is_relative_to(here):
        session.error(f"pyright checked {report['packageRootDirectory']}, not this checkout")
    score = report["completenessScore"]
    session.log(f"public symbols fully typed: {score:.1%}")
    if score < 1:
        subprocess.run(cmd, env=env, check=False)  # the readable findings
        session.error(f"type completeness {score:.1%} < 100 %")
