"""What every command shares: global settings, opening a client, running async code, and
turning failures into one line and a documented exit code.

Exit codes: ``EXIT_ERROR`` (1) runtime/API errors; ``EXIT_USAGE`` (2) usage and configuration
(including input the SDK refuses before sending anything); ``EXIT_INTERRUPTED`` (130) Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from .._errors import APIConnectionError, APITimeoutError, GPTunnelError, InvalidInputError
from ._interrupt import run_interruptibly, watch_creates
from ._output import clean, describe, one_line

if TYPE_CHECKING:
    from .. import AsyncGPTunnel, SharedLimits

# The SDK, anyio and the emulator are imported where they are used, not here, so that
# ``gptunnel --help`` and usage errors start fast (see benchmarks/bench_startup.py).

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

T = TypeVar("T")


def dashboard_hint() -> str:
    from .._client import API_KEY_ENV

    return (
        "Get an API key in GPTunnel's dashboard (https://gptunnel.ru, section API), then pass "
        f"--api-key or set {API_KEY_ENV}.\n"
        'Or try it without a key against the built-in emulator: gptunnel --offline generate "a fox"'
    )


class CLIError(click.ClickException):
    """A failure shown as ``error: <one line>`` (plus an optional hint), with its exit code."""

    def __init__(self, message: str, *, exit_code: int = EXIT_ERROR, hint: str | None = None):
        super().__init__(one_line(message))
        self.code = exit_code
        self.hint = hint

    @property  # click reads ``exit_code``; it is a class constant there, per error here
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {clean(self.message)}", err=True)
        if self.hint:
            click.echo(clean(self.hint), err=True)


@dataclass
class Settings:
    """The global options, resolved once per invocation."""

    api_key: str | None
    base_url: str | None
    offline: bool
    verbose: bool
    backend: str = "asyncio"
    #: How much faster than real time the server runs (offline: the emulator's time scale).
    clock_scale: float | None = None

    @property
    def key(self) -> str | None:
        from .._client import API_KEY_ENV

        key = self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV)
        return key.strip() if key and key.strip() else None

    def require_key(self) -> str | None:
        """The key to use (``None`` offline); without one, say where to get one (exit 2)."""
        if self.offline:
            return None
        key = self.key
        if key is None:
            raise CLIError("no API key", exit_code=EXIT_USAGE, hint=dashboard_hint())
        return key


@asynccontextmanager
async def open_client(
    settings: Settings, *, limits: SharedLimits | None = None, emulator_state: Path | None = None
) -> AsyncIterator[AsyncGPTunnel]:
    """The client a command talks through: the emulator with ``--offline``, else the API
    (with ``limits`` shared with other processes through PostgreSQL). Offline, the emulator
    keeps its tasks in ``emulator_state`` when given, for a rerun to find them."""
    from .. import AdaptivePolicy, AsyncGPTunnel, ConfigurationError

    if settings.offline:
        from ..testing import offline_client
        from ..testing._offline import OFFLINE_TIME_SCALE

        scale = settings.clock_scale or OFFLINE_TIME_SCALE
        async with offline_client(time_scale=scale, state_file=emulator_state) as client:
            watch_creates(client)
            yield client
        return
    key = settings.require_key()
    policy = AdaptivePolicy(clock_scale=settings.clock_scale) if settings.clock_scale else None
    try:
        # an empty --base-url is refused by the client, never taken for "the default"
        client = AsyncGPTunnel(key, base_url=settings.base_url, poll_policy=policy, limits=limits)
    except ConfigurationError as exc:
        raise CLIError(str(exc), exit_code=EXIT_USAGE) from None
    watch_creates(client)  # Ctrl-C bounds its creates in flight
    try:
        async with client:
            yield client
    except APIConnectionError as exc:  # say where it tried: a wrong port is the usual cause
        raise CLIError(f"{unreachable(client.base_url, exc)}: {exc}") from None


def unreachable(base_url: str, exc: APIConnectionError) -> str:
    """``cannot reach 127.0.0.1:9``: the host and port tried (the scheme's default if none)."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "?"
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        f"no answer in time from {where}"
        if isinstance(exc, APITimeoutError)
        else f"cannot reach {where}"
    )


def run(
    settings: Settings, fn: Callable[[], Awaitable[T]], *, interrupted: str = "interrupted"
) -> T:
    """Run ``fn`` in a fresh event loop; SDK errors become ``CLIError``, Ctrl-C exit 130."""
    import anyio

    try:
        return anyio.run(run_interruptibly, fn, backend=settings.backend)
    except BaseException as exc:  # unwrap task-group exception groups to what happened
        leaves = list(_leaves(exc))
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            click.echo(interrupted, err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        for leaf in leaves:
            if isinstance(leaf, click.ClickException):
                raise leaf from None
        for leaf in leaves:
            if isinstance(leaf, GPTunnelError):
                raise CLIError(describe(leaf), exit_code=exit_code_for(leaf)) from None
        raise


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, (list, tuple)) and inner:
        for sub in inner:
            if isinstance(sub, BaseException):
                yield from _leaves(sub)
    else:
        yield exc


def exit_code_for(exc: GPTunnelError) -> int:
    """2 when the input or setup is wrong (nothing was sent), else 1."""
    from .. import ConfigurationError

    return EXIT_USAGE if isinstance(exc, (InvalidInputError, ConfigurationError)) else EXIT_ERROR
