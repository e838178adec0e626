"""``Poller``: one scheduler owning every in-flight task, yielding each as it finishes.

Shape: a heap of ``(due time, seq, entry)``; one scheduler coroutine pops due entries and hands
them over a zero-buffer stream to ``max_concurrency`` workers; every request passes the shared
gate. So there is no sleeping coroutine per task (10,000 tasks cost 10,000 small entries, not
10,000 coroutines), and a slow consumer or a 429 pause back-pressures the whole machine instead
of piling up requests. What an answer means and when the next poll is due is decided by each
task's ``TaskPolling``, the same state machine ``wait()`` drives.

Contract: every task added is yielded exactly once as a ``PollResult`` — done, failed, timed
out, or given up after its polls kept failing — never raised out of the iterator, never dropped.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import (
    GPTunnelError,
    InvalidInputError,
    PollerClosedError,
    RateLimitError,
    TaskTimeoutError,
)
from .._logs import logger
from .._polling.limits import Gate, RequestGate
from .._polling.policy import PollPolicy
from .._polling.shared import SharedGate
from .._polling.task import PollAt, PollRules, Step, TaskPolling
from .._validation import check_task_id
from .endpoints import TASK_KINDS, TaskKind, kind_of_task
from .options import PollerOptions
from .results import PollResult

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel


class _Entry:
    """One task in this poller: its polling state, how to fetch it, and the caller's tag."""

    __slots__ = ("done", "kind", "polling", "tag")

    def __init__(self, polling: TaskPolling, kind: TaskKind, tag: Any) -> None:
        self.polling = polling
        self.kind = kind
        self.tag = tag
        self.done = False


class PollerStats:
    """Counters a caller or a benchmark can read while or after running."""

    __slots__ = ("added", "failed_polls", "polls", "rate_limited", "timed_out", "yielded")

    def __init__(self) -> None:
        self.added: int = 0
        self.polls: int = 0
        self.failed_polls: int = 0
        self.rate_limited: int = 0
        self.yielded: int = 0
        self.timed_out: int = 0


class Poller:
    """Poll many tasks with bounded concurrency; iterate to get each one as it finishes.

    ::

        async with Poller(client, PollerOptions(max_concurrency=16)) as poller:
            for prompt in prompts:
                poller.add(await client.media.create(model=..., prompt=prompt))
            async for finished in poller:   # completion order, each task exactly once
                ...

    It sits on top of the client (the client knows nothing of it). Settings: ``PollerOptions``.
    Iteration ends once every added task has been yielded — or, with ``keep_open=True``, only
    after ``close()`` says no more tasks will come (for producers running beside the consumer).
    Tasks past their ``task_timeout`` or the run's ``deadline`` are yielded with
    ``TaskTimeoutError``; ``max_poll_failures`` consecutive failed polls of one task yield it
    with the last error. Leaving the ``async with`` cancels all polling. ``limits`` (a
    ``SharedLimits``) shares the concurrency bound, the rate budget and the 429 pause with other
    processes through PostgreSQL (a client opened with ``limits=`` shares its own);
    ``max_concurrency`` then bounds only this poller's workers.
    """

    def __init__(self, client: AsyncGPTunnel, options: PollerOptions | None = None) -> None:
        options = options if options is not None else PollerOptions()
        if options.requests_per_second is not None and client.limits is not None:
            raise InvalidInputError(
                "with shared limits, the rate budget is SharedLimits.requests_per_second"
            )
        self._client = client
        self.options = options
        self.policy: PollPolicy = self.options.policy or client.poll_policy
        self._rules = PollRules(
            self.policy,
            client.retry_policy,
            max_failures=self.options.max_poll_failures,
            telemetry=client.telemetry,
        )
        self.stats: PollerStats = PollerStats()
        self.gate: Gate | None = None
        self._gate_exit: AsyncExitStack | None = None
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._entries: dict[str, _Entry] = {}
        self._results: deque[PollResult] = deque()
        self._closed = False  # no more tasks accepted (close(), the deadline, or left)
        self._close_called = False  # the owner said no more will come: iteration may end
        self._entered = False
        self._exited = False
        self._tg: TaskGroup | None = None
        self._wakeup: anyio.Event | None = None
        self._changed: anyio.Event | None = None
        self._run_deadline = math.inf

    # -- lifecycle --

    async def __aenter__(self) -> Poller:
        if self._entered:
            raise RuntimeError("a Poller can be entered only once")
        self._entered = True
        self.gate = await self._open_gate()
        self._wakeup = anyio.Event()
        self._changed = anyio.Event()
        now = anyio.current_time()
        if self.options.deadline is not None:
            self._run_deadline = now + self.options.deadline
        send, receive = anyio.create_memory_object_stream[_Entry](0)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._schedule_loop, send)
        for _ in range(self.options.max_concurrency):
            tg.start_soon(self._worker, receive.clone())
        receive.close()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closed = True
        self._exited = True
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._client.telemetry.tasks_in_flight(-len(self._entries))  # left unfinished
            if self._gate_exit is not None:
                await self._gate_exit.aclose()

    async def _open_gate(self) -> Gate:
        """This poller's own limits, its shared ``limits``, or its client's shared gate."""
        if self.options.limits is not None:
            self._gate_exit = AsyncExitStack()
            fingerprint = self._client.limits_fingerprint()
            gate = SharedGate(
                self.options.limits, fingerprint, local_concurrency=self.options.max_concurrency
            )
            return await self._gate_exit.enter_async_context(gate)
        shared = self._client.shared_gate
        if shared is not None:
            return shared
        if self._client.limits is not None:
            raise RuntimeError("enter the client (`async with client:`) to use its shared limits")
        return RequestGate(self.options.max_concurrency, self.options.requests_per_second)

    def close(self) -> None:
        """No more tasks: iteration ends once everything added has been yielded."""
        self._closed = True
        self._close_called = True
        self._notify()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Tasks added and not yet yielded."""
        return len(self._entries)

    # -- adding --

    def add(
        self,
        task: Any,
        *,
        kind: str | None = None,
        model: str | None = None,
        tag: Any = None,
        timeout: float | None = None,
    ) -> str:
        """Start polling a task (a task object from a create, or a bare task id).

        A bare id (e.g. read back after a restart) is polled right away to learn its state;
        ``kind`` says which endpoint polls it (default ``"media"``). ``tag`` comes back on the
        result. ``timeout`` overrides the options' ``task_timeout`` for this task (seconds from
        its creation; from now for a bare id; ``0``: one poll). Returns the task id.
        """
        if self._closed:
            raise PollerClosedError("this poller is closed for new tasks")
        if not self._entered:
            raise RuntimeError("enter the poller (`async with Poller(client) as poller:`) first")
        if timeout is not None and not timeout >= 0:
            raise InvalidInputError("timeout must be >= 0 seconds (or None)")
        if isinstance(task, str):
            task_id = check_task_id(task)
            if kind is not None and kind not in TASK_KINDS:
                raise InvalidInputError(
                    f"unknown task kind {kind!r}; known: {', '.join(TASK_KINDS)}"
                )
            task_kind = TASK_KINDS[kind or "media"]
            origin: float | None = None
            snapshot: Any = None
        else:
            task_id = check_task_id(getattr(task, "id", None))
            try:
                task_kind = TASK_KINDS[kind] if kind else kind_of_task(task)
            except (KeyError, ValueError) as exc:
                raise InvalidInputError(str(exc)) from None
            origin = getattr(task, "created_mono", None)
            snapshot = task
        if task_id in self._entries:
            raise InvalidInputError(f"task {task_id} is already being polled by this poller")
        now = anyio.current_time()
        polling = TaskPolling(task_id, now=now, snapshot=snapshot, model=model, origin=origin)
        limit = timeout if timeout is not None else self.options.task_timeout
        if limit is not None:  # from the task's creation (from now for a bare id)
            polling.limit(polling.origin + limit, f"{limit:g} s (its timeout)")
        polling.limit(self._run_deadline, "the poller's deadline")
        entry = _Entry(polling, task_kind, tag)
        self._entries[task_id] = entry
        self.stats.added += 1
        self._client.telemetry.tasks_in_flight(1)
        self._step(entry, polling.start(self._rules, now))
        return task_id

    def add_result(self, result: PollResult) -> None:
        """Yield an outcome that needs no polling, in turn with the polled tasks.

        For what feeds the poller: a batch reports a request that failed before it had a task
        (bad input, a refused create) or that an earlier run already finished, so its caller
        gets every outcome from one iterator. Allowed until the poller is left.
        """
        if self._exited:
            raise PollerClosedError("this poller has been left")
        self._results.append(result)
        self.stats.yielded += 1
        self._notify()

    # -- iteration --

    def __aiter__(self) -> Poller:
        return self

    async def __anext__(self) -> PollResult:
        while True:
            if self._results:
                return self._results.popleft()
            if not self.pending and (self._close_called or not self.options.keep_open):
                raise StopAsyncIteration
            if self._exited:
                raise RuntimeError("iterate a Poller inside its `async with` block")
            await self.wait_for_change()

    async def wait_for_change(self) -> None:
        """Return after the next result or close (used to apply back-pressure to producers)."""
        if self._changed is None:
            raise RuntimeError("iterate a Poller inside its `async with` block")
        event = self._changed
        await event.wait()
        if self._changed is event:
            self._changed = anyio.Event()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # -- scheduling --

    def _push(self, entry: _Entry, due: float) -> None:
        head = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        if due < head and self._wakeup is not None:
            self._wakeup.set()

    async def _sleep_until_woken(self, seconds: float) -> None:
        assert self._wakeup is not None
        event = self._wakeup
        with anyio.move_on_after(seconds):
            await event.wait()
        if event.is_set():
            self._wakeup = anyio.Event()

    async def _schedule_loop(self, send: MemoryObjectSendStream[_Entry]) -> None:
        async with send:
            while True:
                now = anyio.current_time()
                if now >= self._run_deadline and not self._closed:
                    self._closed = True  # no new tasks; those added still get their last poll
                    self._notify()
                if not self._heap:
                    wake = self._run_deadline if not self._closed else math.inf
                    await self._sleep_until_woken(max(wake - now, 0.0))
                    continue
                due, _, entry = self._heap[0]
                if due > now:
                    await self._sleep_until_woken(due - now)
                    continue
                heapq.heappop(self._heap)
                if not entry.done:
                    await send.send(entry)

    async def _worker(self, receive: MemoryObjectReceiveStream[_Entry]) -> None:
        async with receive:
            async for entry in receive:
                await self._poll(entry)

    async def _poll(self, entry: _Entry) -> None:
        assert self.gate is not None
        task_id = entry.polling.id
        try:
            async with self.gate.slot():
                task = await entry.kind.fetch(self._client, task_id)
        except GPTunnelError as exc:
            self._poll_failed(entry, exc)
            return
        except Exception as exc:  # a bug or a surprise must not lose the task
            logger.warning("unexpected error polling task %s: %r", task_id, exc)
            self._poll_failed(entry, GPTunnelError(f"unexpected error: {exc!r}", task_id=task_id))
            return
        self.stats.polls += 1
        self._step(entry, entry.polling.answered(task, self._rules, anyio.current_time()))

    def _poll_failed(self, entry: _Entry, exc: GPTunnelError) -> None:
        assert self.gate is not None
        self.stats.failed_polls += 1
        if isinstance(exc, RateLimitError):  # pause everybody, not only this task
            self.stats.rate_limited += 1
            self.gate.rate_limited(exc.retry_after)
        logger.debug("poll of %s failed: %s", entry.polling.id, exc)
        self._step(entry, entry.polling.failed(exc, self._rules, anyio.current_time()))

    def _step(self, entry: _Entry, step: Step) -> None:
        """Do what the task's state machine decided: poll it again later, or yield it."""
        if isinstance(step, PollAt):
            self._push(entry, step.at)
            return
        entry.done = True
        self._entries.pop(entry.polling.id, None)
        self._client.telemetry.tasks_in_flight(-1)
        if isinstance(step.error, TaskTimeoutError):
            self.stats.timed_out += 1
        self.stats.yielded += 1
        self._results.append(
            PollResult(
                id=entry.polling.id,
                ok=step.error is None,
                task=step.task,
                error=step.error,
                kind=entry.kind.name,
                polls=entry.polling.polls,
                tag=entry.tag,
            )
        )
        self._notify()
