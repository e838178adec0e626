"""Ctrl-C: stop within a few seconds, losing nothing that is known.

The first Ctrl-C cancels the command. What must not be abandoned outright still gets a moment:
a create that has left is shielded so its task id can reach the journal, and each one in
flight now has ``INTERRUPT_GRACE`` seconds more. One still unanswered then is reported as
possibly created: the journal already holds it as sent, so a rerun reports it and never sends
it again. A second Ctrl-C cuts those creates at once. Either way the command ends with
``KeyboardInterrupt`` (exit 130), however slowly a server answers.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel

T = TypeVar("T")

#: Seconds a create in flight may still take after the first Ctrl-C.
INTERRUPT_GRACE = 2.0


class _Guard:
    def __init__(self) -> None:
        self.work = anyio.CancelScope()
        self.clients: list[AsyncGPTunnel] = []
        self.interrupted = False

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                grace = 0.0 if self.interrupted else INTERRUPT_GRACE
                self.interrupted = True
                self.work.cancel()
                for client in self.clients:
                    client.cut_creates_in_flight(grace)


_GUARD: ContextVar[_Guard | None] = ContextVar("gptunnel_cli_interrupt_guard", default=None)


def watch_creates(client: AsyncGPTunnel) -> None:
    """Let Ctrl-C bound ``client``'s creates in flight (no-op outside ``run_interruptibly``)."""
    guard = _GUARD.get()
    if guard is not None:
        guard.clients.append(client)


def _can_catch_sigint() -> bool:
    return sys.platform != "win32" and threading.current_thread() is threading.main_thread()


async def run_interruptibly(fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()``, ended by Ctrl-C as described above (``KeyboardInterrupt`` then)."""
    if not _can_catch_sigint():  # signals are the main thread's (and POSIX's) alone
        return await fn()
    guard = _Guard()
    token = _GUARD.set(guard)
    outcome: list[Any] = []
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(guard.watch)
            with guard.work:
                outcome.append(await fn())
            tg.cancel_scope.cancel()
    finally:
        _GUARD.reset(token)
    if guard.interrupted:
        raise KeyboardInterrupt
    result: T = outcome[0]
    return result
