"""Import httpx without its command line, which costs more than the rest of httpx.

``httpx/__init__.py`` imports ``httpx._main`` (its own CLI) whenever click and rich are
installed, and they are, in any environment that has the ``gptunnel`` command: that doubles
the cost of ``import httpx`` (about 60 ms more on a 2-core box) for a program that never runs
httpx's CLI. Its ``__init__`` falls back to a stub when that import fails, so the import is
made to fail once, and ``httpx.main`` is then pointed at a wrapper that loads the real CLI on
call. Nothing else changes: ``import httpx._main`` works normally afterwards.
"""

from __future__ import annotations

import sys
from typing import Any


def import_httpx_without_its_cli() -> None:
    """Import httpx (if nobody has yet) without ``httpx._main``."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # makes its import fail
    try:
        import httpx
    finally:
        if sys.modules.get("httpx._main", False) is None:
            del sys.modules["httpx._main"]
    httpx.main = _httpx_main  # type: ignore[assignment,unused-ignore]


def _httpx_main(*args: Any, **kwargs: Any) -> Any:
    """``httpx.main`` as httpx defines it, loaded when someone actually calls it."""
    from httpx._main import main

    return main(*args, **kwargs)
