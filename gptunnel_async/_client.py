"""``AsyncGPTunnel``: configuration, the HTTP client it owns, and the one ``request()`` path.

Every API call goes through ``request()``, which adds auth, gates concurrency so httpx's pool
never queues, retries what is safe to retry (see ``_retry``), and turns failures into typed
errors. Resources (``client.media`` ...) are thin layers that build bodies and parse models.
"""

from __future__ import annotations

import ipaddress
import math
import os
import platform
import time
from collections.abc import Awaitable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from ._errors import APIConnectionError, APIResponseValidationError, APITimeoutError, GPTunnelError
from ._inflate import ACCEPT_ENCODING, read_capped, undecodable
from ._logs import logger, redact, register_secret, scrub, unregister_secret
from ._polling.limits import PausedBeforeSend, current_slot
from ._polling.policy import AdaptivePolicy, PollPolicy, follow_emulator_clock
from ._polling.shared import SharedGate, key_fingerprint
from ._response import body_failure, decode_json, error_from_response
from ._retry import (
    RequestKind,
    RetryDecision,
    RetryPolicy,
    decide_on_exception,
    decide_on_status,
    parse_retry_after,
)
from ._telemetry import NO_TELEMETRY, Operation, Telemetry
from ._version import __version__
from .download import (
    DownloadDeadline,
    Downloader,
    LinkPolicy,
    check_not_expired,
    result_url,
)
from .resources.account import AccountResource
from .resources.media import MediaResource
from .resources.midjourney import MidjourneyResource
from .resources.tools import BGRemoverResource, FaceSwapResource

if TYPE_CHECKING:
    from ._polling.limits import Gate
    from ._polling.shared import SharedLimits
    from .types.account import Balance, LLMModel

DEFAULT_BASE_URL = "https://gptunnel.ru"
#: The emulator's speed-up over real time, in every answer (honoured on loopback only).
TIME_SCALE_HEADER = "x-gptunnel-emulator-time-scale"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_CONNECTIONS = 16
#: Bodies of API responses larger than this are refused (they are small JSON documents).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

_T = TypeVar("_T")

API_KEY_ENV = "GPTUNNEL_API_KEY"
BASE_URL_ENV = "GPTUNNEL_BASE_URL"


class WriteAhead(Protocol):
    """Told by the request path where a create stands, so a journal can record it in time.

    ``on_wire`` is awaited after every local wait (gate, 429 pause, pacing, connection limit),
    just before the gate's last look for a 429 pause and the create's first byte; if it raises,
    nothing is sent (and if that look finds a pause, ``not_sent`` follows).
    ``not_sent`` is awaited as soon as the server certainly did not process the create (429,
    connection refused, an error answer) — before any retry wait.
    """

    async def on_wire(self) -> None: ...

    async def not_sent(self) -> None: ...


class ConfigurationError(GPTunnelError, ValueError):
    """The client cannot be set up as asked (no key, a malformed or insecure base URL)."""


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normalise_base_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {raw!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"refusing plain-http base_url {raw!r}: the API key would travel unencrypted; "
            "use https (plain http is allowed only for loopback, e.g. the emulator)"
        )
    return url


def _chosen_base_url(explicit: str | None) -> str:
    """The argument, else the environment, else the real service.

    Only an absent value falls through: an empty one (``base_url=""``, or the variable set to
    "") is a mistake, and silently sending the key to the real service would hide it.
    """
    if explicit is not None:
        return explicit
    from_env = os.environ.get(BASE_URL_ENV)
    if from_env is not None:
        if not from_env.strip():
            raise ConfigurationError(f"{BASE_URL_ENV} is set but empty")
        return from_env
    return DEFAULT_BASE_URL


def create_deadline_for(timeout: httpx.Timeout, explicit: float | None) -> float:
    """Seconds a create may take in total once it starts, answer included.

    httpx's timeouts bound each step (a read waits at most ``read`` seconds *per chunk*), so an
    answer that trickles in never times out; and a create is shielded from cancellation, so
    nothing else would end it. Unless set, the bound is one connect, one write and one read.
    """
    if explicit is not None:
        return explicit
    steps = (timeout.connect, timeout.write, timeout.read)
    return math.inf if any(s is None for s in steps) else float(sum(s or 0.0 for s in steps))


def _user_agent() -> str:
    return (
        f"gptunnel-async/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"
    )


class AsyncGPTunnel:
    """Async client for the GPTunnel API. Use as ``async with AsyncGPTunnel() as client:``.

    ``api_key`` and ``base_url`` fall back to ``GPTUNNEL_API_KEY`` and ``GPTUNNEL_BASE_URL``.
    An ``http_client`` passed in stays the caller's: the client will not close it.
    ``max_connections`` bounds simultaneous requests (and sizes the pool it creates).
    ``limits`` (a ``SharedLimits``) shares one concurrency bound, rate budget and 429 pause
    with every other process using this key against the same PostgreSQL database; it is
    opened by ``async with`` (PostgreSQL unreachable: ``CoordinatorUnavailableError`` there).
    ``telemetry`` receives a span per create, poll and download and the SDK's metrics (see
    ``gptunnel_async.otel``). ``create_deadline`` bounds a create in total, answer included
    (default: one connect, one write and one read timeout); a create past it is reported
    ``may_have_been_created``.
    """

    media: MediaResource
    midjourney: MidjourneyResource
    faceswap: FaceSwapResource
    bgremover: BGRemoverResource

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_policy: PollPolicy | None = None,
        limits: SharedLimits | None = None,
        create_deadline: float | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key or not key.strip():
            raise ConfigurationError(
                f"No API key: pass api_key=... or set the {API_KEY_ENV} environment variable "
                "(to try without a key, run against the emulator: gptunnel_async.testing)"
            )
        if any(c in key for c in "\r\n"):
            raise ConfigurationError("the API key contains a line break")
        if max_connections < 1:
            raise ConfigurationError("max_connections must be >= 1")
        if create_deadline is not None and not create_deadline > 0:
            raise ConfigurationError(f"create_deadline must be > 0 seconds, got {create_deadline}")
        self._api_key = key.strip()
        register_secret(self._api_key)
        self.base_url: str = _normalise_base_url(_chosen_base_url(base_url))
        self.retry_policy: RetryPolicy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.max_connections = max_connections
        self.timeout: httpx.Timeout = (
            timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        )
        #: The total time a create may take once sent (``None``: one connect + write + read).
        self.create_deadline = create_deadline
        self._creates_in_flight: set[anyio.CancelScope] = set()
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            follow_redirects=False,
        )
        self._limiter: anyio.CapacityLimiter | None = None
        #: Limits shared with other processes (opened by ``async with``), else None.
        self.limits = limits
        self._shared_gate: Gate | None = None
        self._shared_exit: AsyncExitStack | None = None
        self._downloader: Downloader | None = None
        self._closed = False
        self._headers = {
            "Authorization": self._api_key,
            "User-Agent": _user_agent(),
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,  # what read_capped can inflate, bounded
        }
        #: The schedule every wait and poller of this client shares (and teaches).
        self.poll_policy: PollPolicy = poll_policy or AdaptivePolicy()
        #: Where spans and metrics go (``gptunnel_async.otel.OpenTelemetry``); none by default.
        self.telemetry: Telemetry = telemetry or NO_TELEMETRY
        # An emulator on loopback announces its clock; the client's own schedule follows it.
        self._follows_emulator_clock = poll_policy is None and is_loopback_host(
            urlsplit(self.base_url).hostname or ""
        )
        self.media = MediaResource(self)
        self.midjourney = MidjourneyResource(self)
        self.faceswap = FaceSwapResource(self)
        self.bgremover = BGRemoverResource(self)
        self._account = AccountResource(self)

    # -- lifecycle --

    async def __aenter__(self) -> AsyncGPTunnel:
        if self.limits is not None and self._shared_exit is None:
            stack = AsyncExitStack()
            fingerprint = key_fingerprint(self._api_key, self.base_url)
            self._shared_gate = await stack.enter_async_context(
                SharedGate(self.limits, fingerprint)
            )
            self._shared_exit = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what this client opened (an ``http_client`` passed in is left open)."""
        if self._closed:
            return
        self._closed = True
        unregister_secret(self._api_key)
        if self._shared_exit is not None:
            self._shared_gate = None
            await self._shared_exit.aclose()
        if self._downloader is not None:
            await self._downloader.aclose()
        if self._owns_http:
            await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def cut_creates_in_flight(self, grace: float = 0.0) -> None:
        """Give every create now in flight at most ``grace`` more seconds (e.g. on Ctrl-C).

        A create that has left is shielded from cancellation so that its task id is not lost;
        this bounds that wait for a caller that must stop soon. A create cut short is reported
        like one past its deadline: ``may_have_been_created``, never re-sent.
        """
        deadline = anyio.current_time() + grace
        for scope in self._creates_in_flight:
            scope.deadline = min(scope.deadline, deadline)

    def __repr__(self) -> str:
        return f"AsyncGPTunnel(base_url={self.base_url!r}, api_key='<redacted>')"

    @property
    def shared_gate(self) -> Gate | None:
        """The gate shared with other processes (``limits=``), once the client is entered."""
        return self._shared_gate

    def limits_fingerprint(self) -> str:
        """What shared limits store for this key and server: an HMAC, never the key."""
        return key_fingerprint(self._api_key, self.base_url)

    @property
    def http_client(self) -> httpx.AsyncClient:
        return self._http

    # -- result files ------------------------------------------------------------------------

    @property
    def downloader(self) -> Downloader:
        """Fetches result files with its own credential-free HTTP client (the key stays here).

        Loopback links are accepted only when the API itself is on loopback (the emulator).
        """
        if self._downloader is None:
            loopback = is_loopback_host(urlsplit(self.base_url).hostname or "")
            self._downloader = Downloader(
                timeout=self.timeout,
                link_policy=LinkPolicy(allow_loopback=loopback),
                retry_policy=RetryPolicy(
                    max_retries=max(self.retry_policy.max_retries, 3),
                    initial_delay=self.retry_policy.initial_delay,
                    max_delay=self.retry_policy.max_delay,
                    retry_after_cap=self.retry_policy.retry_after_cap,
                ),
            )
        return self._downloader

    async def download(
        self,
        task: Any,
        destination: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        deadline: DownloadDeadline | None = None,
    ) -> Path:
        """Save a finished task's file; returns its path.

        ``destination`` is a directory — an existing one, or any path ending in ``/`` — (the
        file is named after the task id) or a file path (without a suffix, the extension comes
        from the content type). The file appears under
        its final name only when complete. An expired link is refused before any request.
        ``deadline`` bounds the whole transfer (default: the downloader's ``DownloadDeadline``).
        """
        check_not_expired(task)
        # "out/" means a folder even before it exists (Path() would drop the slash).
        as_folder = os.fspath(destination).endswith(("/", os.sep))
        fetch = self.downloader.fetch_to(
            result_url(task),
            Path(destination),
            task_id=task.id,
            max_bytes=max_bytes,
            as_folder=as_folder,
            deadline=deadline,
        )
        return await self._traced_download(task.id, fetch)

    async def download_bytes(
        self, task: Any, *, max_bytes: int | None = None, deadline: DownloadDeadline | None = None
    ) -> bytes:
        """A finished task's file in memory (capped by ``max_bytes``, bounded by ``deadline``)."""
        check_not_expired(task)
        fetch = self.downloader.fetch_bytes(
            result_url(task), max_bytes=max_bytes, deadline=deadline
        )
        data, _ = await self._traced_download(task.id, fetch)
        return data

    async def _traced_download(self, task_id: str, fetch: Awaitable[_T]) -> _T:
        """``fetch`` inside a ``download`` span (the link itself is not recorded: it is signed)."""
        with self.telemetry.operation("download", method="GET", path="", task_id=task_id) as op:
            started = time.perf_counter()
            try:
                result = await fetch
            except GPTunnelError as error:
                elapsed = time.perf_counter() - started
                op.attempt(1, "error", status=error.status_code, elapsed=elapsed)
                op.failed(error)
                raise
            op.attempt(1, "ok", status=None, elapsed=time.perf_counter() - started)
            return result

    async def balance(self, use_wallet_balance: bool = False) -> Balance:
        """The organisation's balance (or the personal wallet's), in rubles."""
        return await self._account.balance(use_wallet_balance)

    async def models(self) -> list[LLMModel]:
        """The LLM models of ``GET /v1/models``."""
        return await self._account.models()

    # -- the one request path --

    def _gate(self) -> anyio.CapacityLimiter:
        # Created lazily: anyio primitives need a running event loop to pick their backend.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_connections)
        return self._limiter

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        kind: RequestKind = RequestKind.READ,
        task_id: str | None = None,
        max_retries: int | None = None,
        gate: Gate | None = None,
        timeout: httpx.Timeout | None = None,
        write_ahead: WriteAhead | None = None,
    ) -> Any:
        """Send one API request (retrying what is safe) and return its decoded JSON body.

        ``kind=RequestKind.CREATE`` marks a billed, non-idempotent request: it is re-sent only
        when it certainly did not reach the server, and once sent it is finished even if the
        caller is cancelled meanwhile — so a cancellation coming out of a create means it was
        never sent. ``max_retries`` overrides the policy (the
        poller passes 0 and schedules its own retries). A ``gate`` (a poller's shared limits)
        is held for each attempt, not while waiting, and learns of every 429 so that all
        requests behind it pause. ``timeout`` replaces the client's timeout for this request.
        ``write_ahead`` (creates) learns when each attempt leaves and when it certainly did not.
        """
        if self._closed:
            raise GPTunnelError("this AsyncGPTunnel client is closed")
        if gate is None and self.limits is not None and current_slot() is None:
            # (inside a slot already held, e.g. a poller's poll, the request is gated once)
            if self._shared_gate is None:
                raise GPTunnelError(
                    "this client has shared limits: open it with `async with` before requests"
                )
            gate = self._shared_gate
        name = "create" if kind is RequestKind.CREATE else "poll" if task_id else "read"
        with self.telemetry.operation(name, method=method, path=path, task_id=task_id) as op:
            try:
                return await self._attempts(
                    op, method, path, params, json, kind, task_id, max_retries, gate, timeout,
                    write_ahead,
                )  # fmt: skip
            except GPTunnelError as error:
                op.failed(error)
                raise

    async def _attempts(
        self,
        op: Operation,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        kind: RequestKind,
        task_id: str | None,
        max_retries: int | None,
        gate: Gate | None,
        timeout: httpx.Timeout | None,
        write_ahead: WriteAhead | None,
    ) -> Any:
        """The retry loop of ``request()``; each try is reported to ``op``."""
        policy = self.retry_policy
        retries_left = policy.max_retries if max_retries is None else max_retries
        delays = policy.delays()
        attempt = 0
        while True:
            attempt += 1
            slot: AbstractAsyncContextManager[None] = gate.slot(kind) if gate else nullcontext()
            started = time.perf_counter()
            try:
                async with slot:
                    body = await self._send_once(
                        method, path, params, json, kind, task_id, timeout, write_ahead
                    )
            except PausedBeforeSend:
                # another request's 429 paused the gate after this attempt passed it, before
                # its first byte left: it was not sent, and goes through the gate again
                if write_ahead is not None:
                    await write_ahead.not_sent()
                attempt -= 1
                continue
            except _Retryable as retryable:
                status = retryable.error.status_code
                op.attempt(attempt, "retry", status=status, elapsed=time.perf_counter() - started)
                rate_limited = retryable.error.status_code == 429
                if rate_limited:
                    self.telemetry.rate_limited(retryable.retry_after)
                if gate is not None and rate_limited:
                    # before any await: every request behind the gate must see the pause
                    # before it can pass (a journal write first let creates through meanwhile)
                    gate.rate_limited(retryable.retry_after)
                if write_ahead is not None:  # only "certainly not processed" is retryable here
                    await write_ahead.not_sent()
                if retries_left <= 0:
                    raise retryable.error from None
                retries_left -= 1
                delay = policy.delay_for(retryable.retry_after, next(delays))
                if gate is not None and rate_limited:
                    delay = 0.0  # the gate itself holds every request until the pause is over
                logger.debug(
                    "retrying %s %s in %.2fs (attempt %d failed: %s)",
                    method, path, delay, attempt, retryable.reason,
                )  # fmt: skip
                await anyio.sleep(delay)
            except GPTunnelError as error:
                elapsed = time.perf_counter() - started
                op.attempt(attempt, "error", status=error.status_code, elapsed=elapsed)
                if write_ahead is not None and not getattr(error, "may_have_been_created", True):
                    await write_ahead.not_sent()
                raise
            else:
                op.attempt(attempt, "ok", status=None, elapsed=time.perf_counter() - started)
                return body

    async def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        kind: RequestKind,
        task_id: str | None,
        timeout: httpx.Timeout | None = None,
        write_ahead: WriteAhead | None = None,
    ) -> Any:
        url = self.base_url + path
        # A per-request timeout (e.g. the blocking /media/generate); else the client's own.
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        slot = current_slot()  # a poller's gate slot learns when this request really leaves
        # A create is journaled as on the wire when its headers start to go out (httpcore's
        # trace), so a connection refused or a kill while connecting never counts; a transport
        # that may not report it gets the create only once the journal has it.
        traced = write_ahead is not None and self._reports_sends(url)
        if slot is not None or traced:
            extra["extensions"] = {"trace": _SendTrace(slot, write_ahead if traced else None)}
        started = time.perf_counter()
        failure: tuple[GPTunnelError, RetryDecision] | None = None
        async with self._gate():
            if slot is not None:  # queued behind our own limiter: a 429 may have come since
                await slot.gate.wait_out_pause()
            if write_ahead is not None and not traced:  # every local wait is behind us
                await write_ahead.on_wire()
                while slot is not None and slot.gate.paused_until > anyio.current_time():
                    await write_ahead.not_sent()  # a 429 came meanwhile: wait it out first
                    await slot.gate.wait_out_pause()
                    await write_ahead.on_wire()
            # A create that has left is allowed to finish even if the caller is being
            # cancelled: abandoning it mid-flight would leave a billed task nobody knows the id
            # of. It is bounded all the same, by its total deadline.
            creating = kind is RequestKind.CREATE
            bound = create_deadline_for(timeout or self.timeout, self.create_deadline)
            scope = anyio.CancelScope(shield=creating)
            if creating:
                scope.deadline = anyio.current_time() + bound
                self._creates_in_flight.add(scope)
            try:
                with scope:
                    async with self._http.stream(
                        method, url, params=params, json=json_body, headers=self._headers, **extra
                    ) as response:
                        content = await read_capped(response, MAX_RESPONSE_BYTES)
                if scope.cancelled_caught:  # only a create's own deadline cancels this scope
                    failure = self._past_deadline(method, path, task_id, bound)
            except httpx.TransportError as exc:
                failure = self._transport_failure(exc, method, path, kind, task_id)
            except httpx.DecodingError:  # some transports decode eagerly
                failure = (undecodable("declared"), RetryDecision(False, "DecodingError"))
            except APIResponseValidationError as exc:
                failure = (exc, RetryDecision(False, "unreadable response"))
            finally:
                self._creates_in_flight.discard(scope)
        if failure is not None:
            # Raised outside the handler, so neither __cause__ nor __context__ holds the httpx
            # exception: it carries the request, and with it the API key.
            error, decision = failure
            if isinstance(error, APIResponseValidationError):  # the server did answer
                error.method, error.path, error.task_id = method, path, task_id
                error.may_have_been_created = kind is RequestKind.CREATE
            if decision.retry:
                raise _Retryable(error, decision.reason, None)
            raise error
        elapsed_ms = (time.perf_counter() - started) * 1000
        status = response.status_code
        if self._follows_emulator_clock and TIME_SCALE_HEADER in response.headers:
            follow_emulator_clock(self.poll_policy, response.headers[TIME_SCALE_HEADER])
        logger.debug("%s %s → %d in %.0f ms", method, path, status, elapsed_ms)
        if status < 300:
            try:
                # A server may echo the key back (in a task's error, a link, an id): scrub it
                # before any model, journal, manifest or message can hold it.
                body = scrub(decode_json(content), self._api_key)
            except ValueError:
                raise APIResponseValidationError(
                    f"{method} {path} → HTTP {status} with a body that is not JSON "
                    f"({response.headers.get('content-type', 'no content type')})",
                    method=method,
                    path=path,
                    status_code=status,
                    task_id=task_id,
                    may_have_been_created=kind is RequestKind.CREATE,
                ) from None
            if not body_failure(body):
                return body
        decision = decide_on_status(kind, status if status >= 300 else 400)
        error = error_from_response(
            status_code=status,
            headers=response.headers,
            content=content,
            method=method,
            path=path,
            task_id=task_id,
            may_have_been_created=decision.may_have_been_created,
            secret=self._api_key,
        )
        if decision.retry:
            raise _Retryable(error, decision.reason, parse_retry_after(response.headers))
        raise error

    def _reports_sends(self, url: str) -> bool:
        """Whether the transport for ``url`` calls httpcore's ``trace`` hook as a request goes
        out: httpx's own does; any other may not, and then a create's write-ahead must not
        wait for it."""
        pick = getattr(self._http, "_transport_for_url", None)
        try:
            transport = pick(httpx.URL(url)) if pick is not None else None
        except Exception:
            return False
        return type(transport) is httpx.AsyncHTTPTransport

    def _past_deadline(
        self, method: str, path: str, task_id: str | None, bound: float
    ) -> tuple[GPTunnelError, RetryDecision]:
        logger.debug("%s %s: no complete answer before the create deadline", method, path)
        error = APITimeoutError(
            f"{method} {path}: no complete answer within the create deadline "
            f"({bound:g} s, or cut short)",
            method=method,
            path=path,
            task_id=task_id,
            may_have_been_created=True,
        )
        return error, RetryDecision(False, "create deadline")

    def _transport_failure(
        self,
        exc: httpx.TransportError,
        method: str,
        path: str,
        kind: RequestKind,
        task_id: str | None,
    ) -> tuple[GPTunnelError, RetryDecision]:
        decision = decide_on_exception(kind, exc)
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        detail = redact(str(exc) or type(exc).__name__, self._api_key)
        error = cls(
            f"{method} {path} failed: {type(exc).__name__}: {detail}",
            method=method,
            path=path,
            task_id=task_id,
            may_have_been_created=decision.may_have_been_created,
        )
        logger.debug("%s %s failed: %s", method, path, decision.reason)
        return error, decision


class _SendTrace:
    """httpcore's ``trace`` hook for one attempt: tells the gate slot when the request left,
    and journals a create as on the wire just before its headers are written."""

    __slots__ = ("slot", "write_ahead")

    def __init__(self, slot: Any, write_ahead: WriteAhead | None) -> None:
        self.slot = slot
        self.write_ahead = write_ahead

    async def __call__(self, event: str, info: object) -> None:
        if self.write_ahead is not None and event.endswith("send_request_headers.started"):
            write_ahead, self.write_ahead = self.write_ahead, None  # once per attempt
            await write_ahead.on_wire()
        # The gate's look for a 429 pause comes last, after the journal's write (which may
        # queue behind other writes): nothing that can wait lies between it and the first byte.
        # Paused here, the create was journaled as on the wire and was not sent: the request
        # path gives its row back (``not_sent``) before it goes through the gate again.
        if self.slot is not None:
            await self.slot.trace(event, info)


class _Retryable(Exception):
    """Internal: a failed attempt that policy allows to repeat."""

    def __init__(self, error: GPTunnelError, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.retry_after = retry_after
