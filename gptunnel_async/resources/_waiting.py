"""One ``wait()`` for every kind of task: media, Midjourney, FaceSwap, BGRemover.

A wait follows the client's shared adaptive schedule (so every wait teaches the next one how long
this kind of task takes), uses a task's ``percent`` as a hint when it reports one, polls through
transient errors, and is bounded by a timeout.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Optional, Protocol, TypeVar

import anyio

from .._errors import (
    GPTunnelError,
    InvalidInputError,
    TaskFailedError,
    TaskTimeoutError,
)
from .._logs import logger
from .._polling.policy import TaskHint, report_running
from .._retry import is_transient
from .._validation import check_task_id

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel


class Pollable(Protocol):
    """What a wait needs of a task model."""

    @property
    def id(self) -> str: ...
    @property
    def is_finished(self) -> bool: ...
    @property
    def is_failed(self) -> bool: ...
    @property
    def failure_reason(self) -> str: ...
    @property
    def created_mono(self) -> Optional[float]: ...
    @property
    def model(self) -> Optional[str]: ...


T = TypeVar("T", bound=Pollable)


def finish(task: T) -> T:
    """The task if it succeeded; ``TaskFailedError`` (carrying it) if it failed."""
    if task.is_failed:
        raise TaskFailedError(f"task {task.id} failed: {task.failure_reason}", task=task)
    return task


def _percent(task: object) -> float | None:
    value = getattr(task, "percent", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


async def wait_for_task(
    client: AsyncGPTunnel,
    task: T | str,
    task_type: type[T],
    fetch: Callable[[str], Awaitable[T]],
    *,
    timeout: float | None,
    on_progress: Callable[[T], Awaitable[None] | None] | None,
    resume_hint: str,
) -> T:
    """Poll ``fetch`` until the task finishes; ``TaskTimeoutError`` after ``timeout`` seconds."""
    current = task if isinstance(task, task_type) else None
    task_id = check_task_id(current.id if current is not None else task)
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise InvalidInputError("timeout must be >= 0 or None")
    with anyio.move_on_after(math.inf if timeout is None else timeout):
        return await poll_until_finished(client, task_id, current, fetch, on_progress)
    # Only the deadline gets here: the poll loop itself returns or raises.
    raise TaskTimeoutError(
        f"task {task_id} did not finish within {timeout} s (it may still finish; "
        f"wait again, or resume later with {resume_hint})",
        task=current,
        task_id=task_id,
    )


async def poll_until_finished(
    client: AsyncGPTunnel,
    task_id: str,
    current: T | None,
    fetch: Callable[[str], Awaitable[T]],
    on_progress: Callable[[T], Awaitable[None] | None] | None,
) -> T:
    """The loop behind ``wait_for_task`` (no timeout of its own)."""
    policy = client.poll_policy
    model = current.model if current is not None else None
    origin = current.created_mono if current is not None else None
    if current is not None and current.is_finished:
        return finish(current)
    origin_known = origin is not None
    if origin is None:  # a bare id (e.g. after a restart): look right away
        origin = next_at = anyio.current_time()
    else:
        next_at = origin + policy.first_delay(model, TaskHint())
    last_running = 0.0
    polls = 0
    failures = 0
    hint = TaskHint()
    while True:
        await anyio.sleep(max(next_at - anyio.current_time(), 0.0))
        polls += 1
        try:
            latest = await fetch(task_id)
        except GPTunnelError as exc:
            if not is_transient(exc):
                raise
            failures += 1
            retry_after = getattr(exc, "retry_after", None)
            delay = client.retry_policy.delay_for(
                retry_after, client.retry_policy.delay_after(failures)
            )
            logger.debug(
                "polling %s: transient error (%s); next poll in %.1fs", task_id, exc, delay
            )
            next_at = anyio.current_time() + delay
            continue
        failures = 0
        elapsed = anyio.current_time() - origin
        model = model or latest.model
        if latest.is_finished:
            if origin_known:
                policy.observe(model, last_running, elapsed)
            return finish(latest)
        if origin_known:
            report_running(policy, model, last_running, elapsed)
        last_running = elapsed
        percent = _percent(latest)
        if percent is not None and percent != hint.percent:
            hint = TaskHint(percent, elapsed)
        if on_progress is not None:
            maybe = on_progress(latest)
            if maybe is not None:
                await maybe
        next_at = origin + elapsed + policy.next_delay(model, elapsed, polls, hint)
