"""One ``wait()`` for every kind of task: media, Midjourney, FaceSwap, BGRemover.

A wait is the polling core's state machine (``_polling.task``) driven in a loop: it follows the
client's shared adaptive schedule (so every wait teaches the next one how long this kind of task
takes), uses a task's ``percent`` as a hint, polls through transient errors, and is bounded by
its timeout, with one last look at the deadline rather than giving up unseen.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Optional, Protocol, TypeVar, cast

import anyio

from .._errors import GPTunnelError, InvalidInputError
from .._polling.task import Finished, PollRules, TaskPolling, state_of
from .._validation import check_task_id
from ..types._status import TaskState

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel


class Pollable(Protocol):
    """What a wait needs of a task model."""

    @property
    def id(self) -> str: ...
    @property
    def created_mono(self) -> Optional[float]: ...


T = TypeVar("T", bound=Pollable)


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
    """Poll ``fetch`` until the task finishes; ``TaskTimeoutError`` after ``timeout`` seconds.

    The last poll happens at the deadline at the latest, so ``timeout=0`` is exactly one poll.
    """
    current = task if isinstance(task, task_type) else None
    task_id = check_task_id(current.id if current is not None else task)
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise InvalidInputError("timeout must be >= 0 or None")
    rules = PollRules(
        client.poll_policy,
        client.retry_policy,
        resume_hint=f"wait again, or resume later with {resume_hint}",
        telemetry=client.telemetry,
    )
    now = anyio.current_time()
    origin = current.created_mono if current is not None else None
    polling = TaskPolling(task_id, now=now, snapshot=current, origin=origin)
    if timeout is not None:
        polling.limit(now + timeout, f"{timeout:g} s")
    step = polling.start(rules, now)
    while not isinstance(step, Finished):
        await anyio.sleep_until(step.at)
        try:
            latest = await fetch(task_id)
        except GPTunnelError as exc:
            step = polling.failed(exc, rules, anyio.current_time())
            continue
        step = polling.answered(latest, rules, anyio.current_time())
        if on_progress is not None and state_of(latest) is TaskState.RUNNING:
            maybe = on_progress(latest)
            if maybe is not None:
                await maybe
    if step.error is not None:
        raise step.error
    return cast(T, step.task)
