"""``import gptunnel_async`` and ``gptunnel --help`` load only what they use (PEP 562 lazy
exports), while every public name still resolves and type checkers see plain imports.

Each check runs in a fresh interpreter: what a module imports is only visible once."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gptunnel_async

ROOT = Path(gptunnel_async.__file__).parent.parent


def _modules_after(code: str) -> set[str]:
    """The top-level packages loaded after ``code`` runs in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_package_loads_no_dependency() -> None:
    loaded = _modules_after("import gptunnel_async")
    assert not {"httpx", "pydantic", "anyio", "backoff", "click", "rich"} & loaded
    assert not {m for m in loaded if m.startswith("gptunnel_async.") and "_version" not in m} - {
        "gptunnel_async._imports"
    }


def test_help_loads_neither_the_sdk_nor_rich() -> None:
    code = (
        "import contextlib, io\nfrom gptunnel_async.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    )
    loaded = _modules_after(code)
    assert "click" in loaded
    assert not {"httpx", "pydantic", "rich", "gptunnel_async._client", "sqlite3"} & loaded


def test_the_client_does_not_load_httpx_s_own_command_line() -> None:
    loaded = _modules_after("from gptunnel_async import AsyncGPTunnel")
    assert "httpx" in loaded
    assert "httpx._main" not in loaded
    assert "rich" not in loaded


def test_httpx_s_command_line_still_loads_when_asked_for() -> None:
    code = (
        "from gptunnel_async import AsyncGPTunnel\nimport httpx\n"
        "import httpx._main\nassert callable(httpx.main)\n"
        "assert httpx.main.__module__ == 'gptunnel_async._imports'"
    )
    assert "httpx._main" in _modules_after(code)


def test_every_public_name_resolves_to_its_definition() -> None:
    for name in gptunnel_async.__all__:
        value = getattr(gptunnel_async, name)
        assert value is not None
        if isinstance(value, type):
            assert value.__module__.startswith("gptunnel_async")
    assert set(gptunnel_async.__all__) <= set(dir(gptunnel_async))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = gptunnel_async.NoSuchThing  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        exec("from gptunnel_async import NoSuchThing", {})


def test_type_checking_imports_and_lazy_exports_agree() -> None:
    """What mypy sees under TYPE_CHECKING is exactly what ``__getattr__`` serves."""
    tree = ast.parse(Path(gptunnel_async.__file__).read_text("utf-8"))
    static: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names:
                    static[alias.asname or alias.name] = "." * stmt.level + (stmt.module or "")
    assert static == gptunnel_async._EXPORTS
    assert set(static) | {"__version__"} == set(gptunnel_async.__all__)
