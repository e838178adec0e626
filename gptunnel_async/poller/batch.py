"""``generate_many``: create with bounded concurrency and poll in the same run.

Requests stream in from any iterable or async iterable (a million-line file is read as the
run goes, never all at once): each is validated, created through the poller's gate (so creates
and polls share one concurrency bound, one rate budget and one 429 pause) and handed to the
poller. Every request comes out exactly once, in completion order — as a finished task, or as a
failure that says why: bad input (nothing sent), a create the server refused, or a create whose
outcome is unknown (``error.may_have_been_created``: it was not re-sent).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .._errors import GPTunnelError, InvalidInputError, TaskTimeoutError
from .._logs import logger
from ..resources.media import build_create_body
from .results import PollResult
from .scheduler import Poller, PollerClosedError

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel
    from .policy import PollPolicy

_FIELDS = ("model", "prompt", "ar", "images", "tag")


@dataclass(frozen=True)
class MediaRequest:
    """One generation to run: the create's fields, extra body fields, and a ``tag`` of yours."""

    model: str
    prompt: str
    ar: str | None = None
    images: list[str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    tag: Any = None

    @classmethod
    def coerce(cls, value: Any) -> MediaRequest:
        """A ``MediaRequest`` from itself or a mapping (unknown keys become ``extra``)."""
        if isinstance(value, MediaRequest):
            return value
        if not isinstance(value, Mapping):
            raise InvalidInputError(
                f"a request must be a MediaRequest or a mapping, got {type(value).__name__}"
            )
        known = {k: value[k] for k in _FIELDS if k in value}
        extra = {k: v for k, v in value.items() if k not in _FIELDS}
        if "model" not in known or "prompt" not in known:
            raise InvalidInputError("a request needs 'model' and 'prompt'")
        return cls(extra=extra, **known)

    def body(self) -> dict[str, Any]:
        return build_create_body(
            model=self.model, prompt=self.prompt, ar=self.ar, images=self.images, **self.extra
        )


RequestSource = Union[Iterable[Any], AsyncIterable[Any]]


async def _aiter(source: RequestSource) -> AsyncGenerator[Any, None]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item
            await anyio.lowlevel.checkpoint()


@asynccontextmanager
async def generate_many(
    client: AsyncGPTunnel,
    requests: RequestSource,
    *,
    max_concurrency: int = 16,
    requests_per_second: float | None = None,
    max_pending: int = 1000,
    policy: PollPolicy | None = None,
    task_timeout: float | None = None,
    deadline: float | None = None,
    max_poll_failures: int = 10,
    create_retries: int = 3,
) -> AsyncIterator[Poller]:
    """Run every request; the poller it yields iterates one ``PollResult`` per request.

    ``max_pending`` bounds tasks created and not yet finished (and so how far ahead of the
    results the input is read). ``create_retries`` applies only where re-sending is safe.
    """
    if max_pending < 1:
        raise InvalidInputError("max_pending must be >= 1")
    poller = Poller(
        client,
        max_concurrency=max_concurrency,
        requests_per_second=requests_per_second,
        policy=policy,
        task_timeout=task_timeout,
        deadline=deadline,
        max_poll_failures=max_poll_failures,
        keep_open=True,
    )
    async with poller, anyio.create_task_group() as tg:
        feeder = _Feeder(client, poller, max_pending, create_retries)
        tg.start_soon(feeder.run, requests, max_concurrency)
        yield poller
        tg.cancel_scope.cancel()


class _Feeder:
    """Reads requests, creates their tasks, hands them to the poller; closes it at the end."""

    def __init__(
        self, client: AsyncGPTunnel, poller: Poller, max_pending: int, create_retries: int
    ) -> None:
        self._client = client
        self._poller = poller
        self._max_pending = max_pending
        self._create_retries = create_retries
        self._creating = 0

    async def run(self, requests: RequestSource, workers: int) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[int, Any]](0)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._create_worker, receive.clone())
                receive.close()
                async with send, aclosing(_aiter(requests)) as source:
                    index = 0
                    async for raw in source:
                        if self._poller.closed:  # the run's deadline passed: read no further
                            break
                        while self._poller.pending + self._creating >= self._max_pending:
                            await self._poller.wait_for_change()
                        self._creating += 1
                        await send.send((index, raw))
                        index += 1
        finally:
            self._poller.close()

    async def _create_worker(self, receive: MemoryObjectReceiveStream[tuple[int, Any]]) -> None:
        async with receive:
            async for index, raw in receive:
                try:
                    await self._create_one(index, raw)
                finally:
                    self._creating -= 1

    async def _create_one(self, index: int, raw: Any) -> None:
        tag = raw.get("tag") if isinstance(raw, Mapping) else getattr(raw, "tag", None)
        try:
            request = MediaRequest.coerce(raw)
            body = request.body()
        except InvalidInputError as exc:
            self._reject(index, raw, tag, exc)
            return
        try:
            task = await self._client.media.create_from_body(
                body, gate=self._poller.gate, max_retries=self._create_retries
            )
        except GPTunnelError as exc:
            if getattr(exc, "may_have_been_created", False):
                logger.warning("create #%d: outcome unknown, not re-sent: %s", index, exc)
            self._reject(index, raw, tag, exc)
            return
        try:
            self._poller._add(task, tag=request.tag, request=raw, index=index)
        except PollerClosedError:  # the run's deadline passed while this create was in flight
            self._poller._inject(
                PollResult(
                    id=task.id,
                    ok=False,
                    task=task,
                    error=TaskTimeoutError(
                        f"task {task.id} was created after the poller's deadline; not polled",
                        task=task,
                    ),
                    tag=request.tag,
                    request=raw,
                    index=index,
                )
            )

    def _reject(self, index: int, raw: Any, tag: Any, error: GPTunnelError) -> None:
        self._poller._inject(
            PollResult(id=None, ok=False, error=error, tag=tag, request=raw, index=index)
        )
