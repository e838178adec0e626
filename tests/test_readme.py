"""Every code block of the README runs, offline, the way the README says to run it.

The blocks are read from README.md at test time, so a block added or changed is tested as it
stands. The README's offline recipe (the ``sh`` block starting ``python -m
gptunnel_async.testing``) is followed literally: its emulator command is started (on a free
port) and its ``export`` line sets the environment of every run. Then, by kind of block:

- a complete script (it calls ``anyio.run``/``asyncio.run``/``trio.run``) runs as
  ``python block.py`` and must finish within the time the recipe documents;
- a pytest module (it defines ``test_*``) runs under pytest with the package's plugin;
- a fragment runs inside ``async with AsyncGPTunnel() as client:`` on each anyio backend, with
  top-level ``await`` allowed and these names defined: ``client``, ``prompts`` (two prompts),
  ``f`` (the lines of a prompts file) and ``done`` (a finished image task);
- a shell block runs under ``bash -e`` with ``python`` and ``gptunnel`` meaning this checkout;
  blocks that install packages or run the test suite itself are covered elsewhere
  (``test_quickstart_command.py``) and skipped here.

Each run happens in a fresh temporary directory holding a ``prompts.txt`` (the examples' own).
A PostgreSQL URL in a block is replaced by a test database's (``pg_support``: skipped without
a server, failed with ``GPTUNNEL_REQUIRE_POSTGRES=1``). A block that needs an optional package
which is not installed is skipped, with the package named.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gptunnel_async.testing import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PLUGIN = "gptunnel_async.testing.pytest_plugin"
PROMPTS = ROOT / "examples" / "prompts.txt"
_PG_URL = re.compile(r"postgres(?:ql)?://[^\s'\"]+")
pytest_plugins = ["pg_support"]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_BACKENDS = [
    b.strip()
    for b in os.environ.get("GPTUNNEL_TEST_BACKENDS", "asyncio,trio").split(",")
    if b.strip()
]


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int

    @property
    def name(self) -> str:
        return f"L{self.line}-{self.lang or 'text'}"

    @property
    def is_script(self) -> bool:
        return bool(re.search(r"^(anyio|asyncio|trio)\.run\(", self.code, re.M))

    @property
    def is_pytest_module(self) -> bool:
        return bool(re.search(r"^(async )?def test_", self.code, re.M))

    @property
    def is_recipe(self) -> bool:
        return "gptunnel_async.testing" in self.code and "export " in self.code


def blocks() -> list[Block]:
    text = README.read_text("utf-8")
    return [
        Block(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def of_kind(*langs: str) -> list[Block]:
    return [b for b in blocks() if b.lang in langs]


@dataclass(frozen=True)
class Recipe:
    """The README's offline recipe: the emulator's arguments, the environment, the time bound."""

    emulator_args: list[str]
    env: dict[str, str]
    seconds: float


def recipe() -> Recipe:
    found = [b for b in of_kind("sh", "bash", "shell", "console") if b.is_recipe]
    assert len(found) == 1, "the README has one offline recipe (python -m gptunnel_async.testing)"
    args: list[str] = []
    env: dict[str, str] = {}
    for line in found[0].code.splitlines():
        words = shlex.split(line.rstrip(" &"))
        if words[:3] == ["python", "-m", "gptunnel_async.testing"]:
            args = words[3:]
        elif words[:1] == ["export"]:
            env.update(w.split("=", 1) for w in words[1:] if "=" in w)
    assert args and env, "the recipe starts the emulator and exports its URL and a key"
    bound = re.search(r"finishes within (\d+(?:\.\d+)?) s", README.read_text("utf-8"))
    assert bound, "the README documents how long an example takes offline"
    return Recipe(args, env, float(bound.group(1)))


@pytest.fixture(scope="module")
def offline() -> Iterator[dict[str, str]]:
    """The recipe's emulator, running, and the environment it exports (URL on a free port)."""
    plan = recipe()
    args = list(plan.emulator_args)
    if "--port" in args:
        args[args.index("--port") + 1] = "0"  # the recipe's port may be taken on this machine
    with EmulatorProcess(args) as emulator:
        env = {**os.environ, **plan.env, "GPTUNNEL_BASE_URL": emulator.url}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        yield env


def _run(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout:g} s: {shlex.join(command)}")
    missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", done.stderr)
    if missing and not missing.group(1).startswith("gptunnel_async"):
        pytest.skip(f"needs the optional package {missing.group(1)!r}")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def materialise(block: Block, request: pytest.FixtureRequest, cwd: Path) -> str:
    """The block's code, ready to run in ``cwd``: its files there, its database a real one."""
    (cwd / "prompts.txt").write_bytes(PROMPTS.read_bytes())
    if not _PG_URL.search(block.code):
        return block.code
    from psycopg.conninfo import conninfo_to_dict

    dsn = conninfo_to_dict(request.getfixturevalue("pg_dsn"))
    url = f"postgresql://{dsn.get('user', 'postgres')}@{dsn.get('host', '127.0.0.1')}"
    url += f":{dsn.get('port', 5432)}/{dsn['dbname']}"
    return _PG_URL.sub(url, block.code)


PYTHON = of_kind("python", "py")
SCRIPTS = [b for b in PYTHON if b.is_script]
MODULES = [b for b in PYTHON if b.is_pytest_module and not b.is_script]
FRAGMENTS = [b for b in PYTHON if not b.is_script and not b.is_pytest_module]
SHELL = [b for b in of_kind("sh", "bash", "shell") if not b.is_recipe]


def test_the_readme_has_code_to_run() -> None:
    assert SCRIPTS and FRAGMENTS and MODULES


@pytest.mark.parametrize("block", SCRIPTS, ids=lambda b: b.name)
def test_script(
    block: Block, offline: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "example.py").write_text(materialise(block, request, tmp_path), "utf-8")
    done = _run([sys.executable, "example.py"], offline, tmp_path, recipe().seconds)
    if "on_progress=" in block.code:  # the progress callback must really be called
        assert re.search(r"\d+ %", done.stdout), done.stdout


@pytest.mark.parametrize("block", MODULES, ids=lambda b: b.name)
def test_pytest_module(
    block: Block, offline: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "test_readme_block.py").write_text(materialise(block, request, tmp_path), "utf-8")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        PLUGIN,
        "-p",
        "anyio",
        "-p",
        "no:cacheprovider",
    ]
    done = _run(command, offline, tmp_path, recipe().seconds)
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


_FRAGMENT_HOST = """
import anyio, ast, sys
from gptunnel_async import *
from gptunnel_async.testing import *

async def main() -> None:
    prompts = ["a red fox in the snow", "a lighthouse at dusk"]
    f = [p + "\\n" for p in prompts]
    async with AsyncGPTunnel() as client:
        done = await client.media.generate(model="google-imagen-3", prompt=prompts[0])
        code = compile(open("fragment.py").read(), "fragment.py", "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        scope = {**globals(), "client": client, "prompts": prompts, "f": f, "done": done}
        result = eval(code, scope)
        if result is not None:
            await result

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", _BACKENDS)
@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.name)
def test_fragment(
    block: Block,
    backend: str,
    offline: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    (tmp_path / "fragment.py").write_text(materialise(block, request, tmp_path), "utf-8")
    (tmp_path / "host.py").write_text(textwrap.dedent(_FRAGMENT_HOST), "utf-8")
    _run([sys.executable, "host.py", backend], offline, tmp_path, recipe().seconds)


def _shims(folder: Path) -> Path:
    """``python`` and ``gptunnel`` on PATH, both meaning this interpreter and checkout."""
    folder.mkdir()
    for name, target in (("python", ""), ("gptunnel", "-m gptunnel_async.cli")):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {target} "$@"\n')
        shim.chmod(0o755)
    return folder


@pytest.mark.parametrize("block", SHELL, ids=lambda b: b.name)
def test_shell(
    block: Block, offline: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if re.search(r"pip install|\.venv/|\bnox\b", block.code):
        pytest.skip("installs packages or runs the suite itself (see test_quickstart_command.py)")
    env = {**offline, "PATH": f"{_shims(tmp_path / 'bin')}{os.pathsep}{offline['PATH']}"}
    code = materialise(block, request, tmp_path)
    _run(["bash", "-e", "-c", code], env, tmp_path, recipe().seconds)
