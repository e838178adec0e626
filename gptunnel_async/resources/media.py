"""``client.media``: create, result, wait and generate for ``/v1/media``.

Thin on purpose: bodies are validated locally (``_validation``) so nothing billable is sent that
the provider would reject, and waiting uses the client's shared ``AdaptivePolicy`` so that every
``wait()`` teaches the next one how long this model takes.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import (
    APIConnectionError,
    APIStatusError,
    GPTunnelError,
    InvalidInputError,
    TaskFailedError,
    TaskTimeoutError,
)
from .._logs import logger
from .._response import parse_model
from .._retry import RETRYABLE_STATUSES, RequestKind
from .._validation import check_media_create, check_task_id
from ..poller.policy import TaskHint
from ..types.media import MediaTask

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel
    from ..poller.batch import RequestSource
    from ..poller.limits import RequestGate
    from ..poller.policy import PollPolicy
    from ..poller.scheduler import Poller

CREATE_PATH = "/v1/media/create"
RESULT_PATH = "/v1/media/result"
#: ``wait()`` gives up after this many seconds unless told otherwise (every wait is bounded).
DEFAULT_WAIT_TIMEOUT = 3600.0

ProgressCallback = Callable[[MediaTask], "Awaitable[None] | None"]


def is_transient(error: BaseException) -> bool:
    """An error worth polling through: connection trouble, timeouts, 408/409/425/429/5xx."""
    if isinstance(error, APIConnectionError):
        return True
    return isinstance(error, APIStatusError) and (error.status_code or 0) in RETRYABLE_STATUSES


def build_create_body(
    *,
    model: str,
    prompt: str,
    ar: str | None = None,
    images: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A checked ``/media/create`` body; raises ``InvalidInputError`` before anything is sent."""
    model, prompt, ar, image_list, _ = check_media_create(model, prompt, ar, images)
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    if ar is not None:
        body["ar"] = ar
    if image_list is not None:
        body["images"] = image_list
    for key, value in extra.items():
        if key in body:
            raise InvalidInputError(f"{key!r} given twice")
        if value is not None:
            body[key] = value
    return body


class MediaResource:
    def __init__(self, client: AsyncGPTunnel) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str,
        prompt: str,
        ar: str | None = None,
        images: list[str] | None = None,
        **extra: Any,
    ) -> MediaTask:
        """Start a generation (billed). Returns the new task, usually ``idle``.

        Checked locally first against the catalogue; unknown models are sent as-is. ``extra``
        fields (e.g. Suno's ``version``) go into the body unchanged. A create is re-sent only
        when it certainly did not reach the server; otherwise the error says the task may exist.
        """
        body = build_create_body(model=model, prompt=prompt, ar=ar, images=images, **extra)
        return await self.create_from_body(body)

    async def create_from_body(
        self,
        body: dict[str, Any],
        *,
        gate: RequestGate | None = None,
        max_retries: int | None = None,
    ) -> MediaTask:
        """Send an already validated create body (see ``build_create_body``)."""
        started = anyio.current_time()
        data = await self._client.request(
            "POST",
            CREATE_PATH,
            json=body,
            kind=RequestKind.CREATE,
            gate=gate,
            max_retries=max_retries,
        )
        task = parse_model(
            MediaTask, data, method="POST", path=CREATE_PATH, may_have_been_created=True
        )
        task.mark_created(started)
        return task

    async def result(self, task_id: str) -> MediaTask:
        """The task's current state (one request; reads are retried on transient errors)."""
        return await self.fetch(task_id)

    async def fetch(self, task_id: str, *, max_retries: int | None = None) -> MediaTask:
        """``result`` with the retry count overridden (the poller passes 0: it retries itself)."""
        check_task_id(task_id)
        data = await self._client.request(
            "GET",
            RESULT_PATH,
            params={"task_id": task_id},
            task_id=task_id,
            max_retries=max_retries,
        )
        return parse_model(MediaTask, data, method="GET", path=RESULT_PATH)

    async def wait(
        self,
        task: MediaTask | str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: ProgressCallback | None = None,
    ) -> MediaTask:
        """Poll until the task finishes and return it; raise ``TaskFailedError`` if it failed.

        Polls follow the client's adaptive schedule (no poll before the model's earliest
        plausible finish). Transient errors are polled through; ``TaskTimeoutError`` after
        ``timeout`` seconds (``None`` = no limit). Cancelling the caller stops the wait at once.
        """
        current = task if isinstance(task, MediaTask) else None
        task_id = check_task_id(current.id if current else task)
        if timeout is not None and (math.isnan(timeout) or timeout < 0):
            raise InvalidInputError("timeout must be >= 0 or None")
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            return await self._poll_until_finished(task_id, current, on_progress)
        # Only the deadline gets here: the poll loop itself returns or raises.
        raise TaskTimeoutError(
            f"task {task_id} did not finish within {timeout} s (it may still finish; "
            "wait again, or resume later with client.media.wait(task_id))",
            task=current,
            task_id=task_id,
        )

    async def _poll_until_finished(
        self, task_id: str, current: MediaTask | None, on_progress: ProgressCallback | None
    ) -> MediaTask:
        policy = self._client.poll_policy
        model = current.model if current else None
        origin = current.created_mono if current and current.created_mono is not None else None
        if current is not None and current.is_finished:
            return _finish(current)
        origin_known = origin is not None
        if origin is None:  # a bare id (e.g. after a restart): look right away
            origin = next_at = anyio.current_time()
        else:
            next_at = origin + policy.first_delay(model, TaskHint())
        last_running = 0.0
        polls = 0
        failures = 0
        while True:
            await anyio.sleep(max(next_at - anyio.current_time(), 0.0))
            polls += 1
            try:
                current = await self.result(task_id)
            except GPTunnelError as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                retry_after = getattr(exc, "retry_after", None)
                delay = self._client.retry_policy.delay_for(
                    retry_after, self._client.retry_policy.delay_after(failures)
                )
                logger.debug(
                    "polling %s: transient error (%s); next poll in %.1fs", task_id, exc, delay
                )
                next_at = anyio.current_time() + delay
                continue
            failures = 0
            elapsed = anyio.current_time() - origin
            model = model or current.model
            if current.is_finished:
                if origin_known:
                    policy.observe(model, last_running, elapsed)
                return _finish(current)
            last_running = elapsed
            if on_progress is not None:
                maybe = on_progress(current)
                if maybe is not None:
                    await maybe
            next_at = origin + elapsed + policy.next_delay(model, elapsed, polls, TaskHint())

    def generate_many(
        self,
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
    ) -> AbstractAsyncContextManager[Poller]:
        """Create every request (bounded) and poll them in one run; one result per request.

        ::

            async with client.media.generate_many(requests, max_concurrency=16) as results:
                async for r in results:        # completion order, each request exactly once
                    print(r.index, r.ok, r.url or r.error)

        ``requests``: ``MediaRequest`` objects or mappings with ``model``, ``prompt``, ``ar``,
        ``images``, ``tag`` (other keys go into the body), from any iterable or async iterable.
        It is a context manager because its background work needs an owner: leaving the block
        cancels whatever is still running.
        """
        from ..poller.batch import generate_many

        return generate_many(
            self._client,
            requests,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            max_pending=max_pending,
            policy=policy,
            task_timeout=task_timeout,
            deadline=deadline,
            max_poll_failures=max_poll_failures,
            create_retries=create_retries,
        )

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        ar: str | None = None,
        images: list[str] | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: ProgressCallback | None = None,
        **extra: Any,
    ) -> MediaTask:
        """``create`` then ``wait``: the finished task, or a typed error."""
        task = await self.create(model=model, prompt=prompt, ar=ar, images=images, **extra)
        return await self.wait(task, timeout=timeout, on_progress=on_progress)


def _finish(task: MediaTask) -> MediaTask:
    if task.is_failed:
        raise TaskFailedError(f"task {task.id} failed: {task.failure_reason}", task=task)
    return task
