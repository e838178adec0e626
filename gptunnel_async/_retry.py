"""When to retry a request and how long to wait first. Pure functions, no I/O.

The one rule that matters most: a create is billed and not idempotent, so it is retried only when
the request *certainly* did not reach the server — the connection was never made (refused,
connect timeout), no pooled connection was free (pool timeout), or the server answered that it
did not act on it (429, 425). After a read timeout, a dropped connection, a 5xx, 408 or 409 the
task may exist; the create is not re-sent and the error says so (``create_may_exist``).

Delays come from ``backoff``'s wait generators and jitter (``backoff.expo``, ``full_jitter``).
Its decorators are not used: their async variant sleeps with ``asyncio.sleep`` and so cannot run
under trio; the client's loop sleeps through anyio instead.
"""

from __future__ import annotations

import email.utils
import enum
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timezone

import backoff
import httpx

from ._errors import APIConnectionError, APIStatusError

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RequestKind(enum.Enum):
    """Whether repeating a request is harmless (``READ``) or may bill twice (``CREATE``)."""

    READ = "read"
    CREATE = "create"


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently to retry. ``max_retries`` counts re-sends, not tries."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not (0 <= self.initial_delay <= self.max_delay):
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if self.retry_after_cap < 0:
            raise ValueError("retry_after_cap must be >= 0")

    def delays(self) -> Iterator[float]:
        """Backoff delays for successive retries (without a server hint)."""
        gen = backoff.expo(base=2, factor=self.initial_delay, max_value=self.max_delay)
        next(gen)  # backoff's generators yield once before the first value
        for value in gen:
            yield backoff.full_jitter(value) if self.jitter else value

    def delay_after(self, failures: int) -> float:
        """The backoff delay after ``failures`` consecutive failures (1 = the first)."""
        exponent = min(max(failures - 1, 0), 30)
        value = min(self.initial_delay * 2.0**exponent, self.max_delay)
        return backoff.full_jitter(value) if self.jitter else value

    def delay_for(self, retry_after: float | None, backoff_delay: float) -> float:
        """The server's ``Retry-After`` wins (capped); otherwise the backoff delay."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return backoff_delay


def is_transient(error: BaseException) -> bool:
    """An error worth polling through: connection trouble, timeouts, 408/409/425/429/5xx."""
    if isinstance(error, APIConnectionError):
        return True
    return isinstance(error, APIStatusError) and (error.status_code or 0) in RETRYABLE_STATUSES


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    reason: str
    may_have_been_created: bool = field(default=False)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP-date), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates are GMT by definition (RFC 9110)
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


# Exceptions raised before a single byte of the request left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def decide_on_exception(kind: RequestKind, exc: Exception) -> RetryDecision:
    """Retry a transport error? Reads: any transport error. Creates: only if surely not sent."""
    name = type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return RetryDecision(True, f"{name} (request not sent)")
    if not isinstance(exc, httpx.TransportError):
        return RetryDecision(False, name)
    if kind is RequestKind.CREATE:
        return RetryDecision(False, name, may_have_been_created=True)
    return RetryDecision(True, name)


#: Answers to a create that say the server did not act on it, so it may be sent again:
#: 425 (Too Early: refused rather than risk a replay) and 429 (rate limited: nothing created) —
#: both retried at once — and redirects that ask for the same request to be repeated at another
#: address (301/302/307/308), which the server that answered therefore did not process (and
#: which the SDK never follows: the key goes to no other host).
_CREATE_NOT_PROCESSED = frozenset({301, 302, 307, 308, 425, 429})
_CREATE_RETRY = frozenset({425, 429})


def create_may_exist(status_code: int) -> bool:
    """Whether a create answered ``status_code`` may have created (and billed) a task.

    Only answers that say the request was not acted on are "certainly not created": the API's
    own refusals (400, 401, 402, 403, 404, 422...) and ``_CREATE_NOT_PROCESSED``. Everything
    else may follow a created task, so the create is reported, never re-sent:

    - 5xx: a proxy may answer after the backend created the task;
    - 408: RFC 9110 says the server did not receive the whole request, but gateways also answer
      408 when the service behind them is slow (where 504 belongs), and a timeout is exactly
      when a create may have landed;
    - 409: a conflict with the current state — for a create, typically an identical request
      already being processed, whose task may exist;
    - other 3xx: 303 means "processed, see the answer elsewhere"; 300/304/305 make no sense
      for a POST, so nothing can be concluded.
    """
    if status_code in _CREATE_NOT_PROCESSED:
        return False
    return status_code >= 500 or status_code in (408, 409) or 300 <= status_code < 400


def decide_on_status(kind: RequestKind, status_code: int) -> RetryDecision:
    """Retry an error status? Reads: any of ``RETRYABLE_STATUSES``. Creates: see above."""
    reason = f"HTTP {status_code}"
    if kind is RequestKind.CREATE:
        if status_code in _CREATE_RETRY:
            return RetryDecision(True, reason)
        return RetryDecision(False, reason, may_have_been_created=create_may_exist(status_code))
    return RetryDecision(status_code in RETRYABLE_STATUSES, reason)
