"""The one base every task-returning API group stands on: how a task is created, read and bound.

Media, Midjourney, FaceSwap and BGRemover differ in their bodies and checks, not in what happens
to an answer: it is parsed into the group's task model, stamped with the moment its create left
(so a wait knows the task's age) and bound to the client (so ``task.download()`` works whichever
method returned it: a create, a poll, ``wait``, ``generate``). Doing that in one place is what
keeps every task bound the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import anyio

from .._response import parse_model
from .._retry import RequestKind
from .._validation import check_answer_is_for, check_task_id
from ..types._task import TaskBase
from ._waiting import wait_for_task

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel, WriteAhead
    from .._polling.limits import Gate

T = TypeVar("T", bound=TaskBase)


def made_progress(task: TaskBase) -> bool:
    """True for a create answered with a task already under way (a repeated Midjourney action
    returns the task it created before): its age is unknown here, so it is not stamped."""
    percent = getattr(task, "percent", 0.0)
    return task.is_finished or (isinstance(percent, (int, float)) and percent > 0)


class TaskResource(Generic[T]):
    """Create, read and wait for one kind of task; every task it returns is bound to the client.

    A subclass names its task model, its result path and the query parameter carrying the id,
    and builds its own (checked) create bodies.
    """

    _task_type: type[T]
    _result_path: ClassVar[str]
    _id_param: ClassVar[str] = "taskId"

    def __init__(self, client: AsyncGPTunnel) -> None:
        self._client = client

    def _bound(self, data: Any, *, method: str, path: str, created: bool = False) -> T:
        """Parse an answer into the task model and bind it to this client."""
        task = parse_model(
            self._task_type, data, method=method, path=path, may_have_been_created=created
        )
        return task.bind(self._client)

    async def _create_task(
        self,
        path: str,
        body: dict[str, Any],
        *,
        gate: Gate | None = None,
        max_retries: int | None = None,
        write_ahead: WriteAhead | None = None,
    ) -> T:
        """Send a checked, billed create (never re-sent once it may have arrived)."""
        started = anyio.current_time()
        data = await self._client.request(
            "POST",
            path,
            json=body,
            kind=RequestKind.CREATE,
            gate=gate,
            max_retries=max_retries,
            write_ahead=write_ahead,
        )
        task = self._bound(data, method="POST", path=path, created=True)
        if not made_progress(task):
            task.mark_created(started)
        return task

    async def result(self, task_id: str) -> T:
        """The task's current state (one request; reads are retried on transient errors)."""
        return await self.fetch(task_id)

    async def fetch(self, task_id: str, *, max_retries: int | None = None) -> T:
        """``result`` with the retry count overridden (the poller passes 0: it retries itself)."""
        check_task_id(task_id)
        data = await self._client.request(
            "GET",
            self._result_path,
            params={self._id_param: task_id},
            task_id=task_id,
            max_retries=max_retries,
        )
        task = self._bound(data, method="GET", path=self._result_path)
        return check_answer_is_for(task, task_id, method="GET", path=self._result_path)

    async def _wait(
        self,
        task: T | str,
        *,
        timeout: float | None,
        on_progress: Callable[[T], Awaitable[None] | None] | None,
        resume_hint: str,
    ) -> T:
        # Every task model is ``Pollable``; TaskBase alone lacks ``model`` (its subclasses have it).
        task_type: type[Any] = self._task_type
        waited: T = await wait_for_task(
            self._client,
            task,
            task_type,
            self.result,
            timeout=timeout,
            on_progress=on_progress,
            resume_hint=resume_hint,
        )
        return waited
