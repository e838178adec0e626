"""The emulator in a child process, and the loop that serves one until interrupted.

A child process keeps the emulator's CPU apart from the client's (benchmarks measure the SDK,
not both), and keeps its tasks and counters alive when the client is killed (crash tests). The
child prints its base URL as its first line; the parent reads it and stops the child on exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import anyio

from ._app import Emulator
from ._server import serve

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def serve_forever(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve ``emulator`` on loopback, print its base URL as one flushed line, run until ^C."""

    async def run() -> None:
        async with serve(emulator, host, port) as server:
            print(server.url, flush=True)
            await anyio.sleep_forever()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)


class EmulatorProcess:
    """``with EmulatorProcess(["--time-scale", "50"]) as emu: ... emu.url`` — a child emulator.

    ``args`` go to ``python -m gptunnel_async.testing --port 0``. ``command`` replaces that
    whole command line with your own (a script serving a customised emulator through
    ``serve_forever``). Leaving the block terminates the child, then kills it if it lingers.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        base = [sys.executable, "-m", "gptunnel_async.testing", "--port", "0"]
        self.command: list[str] = [*(command if command is not None else base), *args]
        self.cwd = cwd
        self.url: str = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True, cwd=self.cwd)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()  # '' if the child died first
        if urlsplit(line).hostname not in _LOOPBACK:
            self.stop()
            raise RuntimeError(f"the emulator process did not start (it printed {line!r})")
        self.url = line
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate the child (only the process we started, by its handle) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def cpu_seconds(self) -> float:
        """User + system CPU the child has used so far (Linux ``/proc``)."""
        if self._proc is None:
            raise RuntimeError("the emulator process is not running")
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
