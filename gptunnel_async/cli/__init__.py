"""``gptunnel``: the command line of the SDK (``pip install "gptunnel-async[cli]"``).

Exit codes: 0 success; 1 a runtime or API error (or a batch with failed requests);
2 a usage or configuration error (bad option, no API key, malformed input file, input the
SDK rejects before sending); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._session import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gptunnel``; returns the exit code (the script exits with it)."""
    try:
        from ._app import cli

        cli.main(args=list(argv) if argv is not None else None, prog_name="gptunnel")
    except ImportError as exc:  # click/rich are an extra: say how to get them, not a traceback
        package = (exc.name or "").split(".")[0]
        if package not in ("click", "rich"):  # rich is imported only when something is drawn
            raise
        import sys

        print(
            f"error: the gptunnel command needs the 'cli' extra ({package} is missing): "
            'pip install "gptunnel-async[cli]"',
            file=sys.stderr,
        )
        return EXIT_USAGE
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_ERROR)
    return EXIT_OK
