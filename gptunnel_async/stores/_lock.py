"""An exclusive lock on a small file that names its holder, for one-writer files.

The lock is the kernel's (``flock``; ``msvcrt.locking`` on Windows), so it is released when its
holder closes it or dies, however it dies: a dead holder never blocks the next run. The file's
text says who holds it (pid, program, host, since when), for the refusal message.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from pathlib import Path
from typing import IO


class OwnerLock:
    """``acquire()`` → ``None`` when taken, else the holder's description; ``release()``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> str | None:
        """Take the lock (without waiting); the holder's description if another process has it."""
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            return holder
        handle.seek(0)
        handle.truncate()
        handle.write(describe_this_process())
        handle.flush()
        self._handle = handle
        return None

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # closing the descriptor releases the lock


def describe_this_process() -> str:
    """``pid 4242 (gptunnel batch prompts.txt) on host, since 2026-12-03 05:31:02 UTC``."""
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    program = " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]]) if sys.argv else "python"
    return f"pid {os.getpid()} ({program}) on {socket.gethostname()}, since {started}"


def _try_lock(handle: IO[str]) -> bool:
    """An exclusive, non-blocking OS lock on ``handle``; False if another process holds it."""
    try:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
