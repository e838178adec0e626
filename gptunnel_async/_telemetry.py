"""The seam for observability: what the SDK reports, with nothing recorded by default.

The request path, the downloader and the poller call a ``Telemetry``; the default,
``NO_TELEMETRY``, does nothing, so the core needs no tracing library. ``gptunnel_async.otel``
(the ``otel`` extra) implements it with OpenTelemetry. What is reported is chosen so that no
secret can travel: method, path, task id, status, timings and the (already redacted) text of
our own errors — never headers, bodies or query strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Operation(Protocol):
    """One logical operation (a create, a poll, a download) and its attempts."""

    def attempt(self, number: int, outcome: str, *, status: int | None, elapsed: float) -> None:
        """One try: ``outcome`` is ``ok``, ``retry`` or ``error``; ``elapsed`` in seconds."""

    def failed(self, error: BaseException) -> None:
        """The operation ends with ``error`` (our redacted exception)."""


class Telemetry(Protocol):
    """What the SDK reports. Every method must be cheap and must never raise."""

    def operation(
        self, name: str, *, method: str, path: str, task_id: str | None
    ) -> AbstractContextManager[Operation]:
        """A span around one create / poll / read / download (``name``)."""

    def tasks_in_flight(self, delta: int) -> None:
        """Tasks a poller holds went up or down by ``delta``."""

    def rate_limited(self, retry_after: float | None) -> None:
        """The server answered 429 (``retry_after`` seconds announced, if any)."""

    def task_detected(self, model: str | None, window: float) -> None:
        """A task was seen finished ``window`` s after it was last seen running.

        The true detection delay is at most this window (the finish happened inside it).
        """


class _NoOperation:
    def attempt(self, number: int, outcome: str, *, status: int | None, elapsed: float) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass


class NoTelemetry:
    """Reports nothing (the default)."""

    _op = _NoOperation()

    @contextmanager
    def operation(
        self, name: str, *, method: str, path: str, task_id: str | None
    ) -> Iterator[Operation]:
        yield self._op

    def tasks_in_flight(self, delta: int) -> None:
        pass

    def rate_limited(self, retry_after: float | None) -> None:
        pass

    def task_detected(self, model: str | None, window: float) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()
