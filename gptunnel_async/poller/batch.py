"""``generate_many``: create with bounded concurrency, poll, save files — resumably.

Three stages in one task group, joined by the poller:

- the **feeder** reads requests from any iterable or async iterable as the run goes (a
  million-line file is never loaded at once), validates each, consults the journal, and either
  creates the task through the poller's gate (creates and polls share one concurrency bound,
  one rate budget and one 429 pause), resumes polling a task created by an earlier run, or
  reports what an earlier run already finished;
- the **poller** polls every created task on its adaptive schedule;
- the **drain** records each outcome in the journal and, with ``download_to``, saves each file
  as its task finishes, then hands the result to the caller.

Every request comes out exactly once: a finished task, or a failure that says why — bad input
(nothing sent), a create the server refused, or a create whose outcome is unknown
(``may_have_been_created`` / ``CreateOutcomeUnknownError``: never re-sent).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import (
    CreateOutcomeUnknownError,
    GPTunnelError,
    InvalidInputError,
    JournalAwayError,
    JournalError,
    JournalTakenOverError,
    JournalUnavailableError,
    PollerClosedError,
    TaskFailedError,
    TaskTimeoutError,
)
from .._logs import logger
from ..download import DownloadError, remove_partial_downloads
from ..resources.media import build_create_body
from ..stores import (
    CLAIMABLE_STATES,
    Claim,
    Journal,
    JournalLocation,
    JournalRecord,
    SharedJournal,
    State,
    body_digest,
    open_journal,
)
from .options import PollerOptions
from .results import BatchResult, PollResult
from .scheduler import Poller

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel

_FIELDS = ("model", "prompt", "ar", "images", "tag")
# How often a run sharing a journal, its input read, looks for work a dead run left.
_SWEEP_INTERVAL = 1.0


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


@dataclass
class BatchProgress:
    """Live counters of a batch run (for progress bars and summaries).

    ``resumed`` counts requests an earlier run had left in the journal: ``repolled`` of them
    were polled again, ``already_saved`` had their file on disk, the rest were reported as
    they stood (failed, or create outcome unknown). ``created`` counts creates of this run.
    With a shared journal, ``elsewhere`` counts requests another live run is working on (their
    results come out of that run), ``taken_over`` requests of runs that died, done here.
    """

    read: int = 0
    created: int = 0
    elsewhere: int = 0
    taken_over: int = 0
    resumed: int = 0
    repolled: int = 0
    already_saved: int = 0
    succeeded: int = 0
    failed: int = 0
    saved: int = 0
    in_flight: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


class BatchRun:
    """What ``generate_many`` yields: iterate it for one ``BatchResult`` per request."""

    def __init__(self, poller: Poller, receive: MemoryObjectReceiveStream[BatchResult]) -> None:
        self.poller = poller
        self.progress: BatchProgress = BatchProgress()
        self._receive = receive

    def __aiter__(self) -> BatchRun:
        return self

    async def __anext__(self) -> BatchResult:
        try:
            result = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self.progress.in_flight = self.poller.pending
        return result


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
    options: PollerOptions | None = None,
    *,
    max_pending: int = 1000,
    create_retries: int = 3,
    journal: JournalLocation | None = None,
    batch: str | None = None,
    download_to: str | os.PathLike[str] | None = None,
    download_concurrency: int | None = None,
) -> AsyncIterator[BatchRun]:
    """Run every request; the ``BatchRun`` it yields iterates one ``BatchResult`` per request.

    ::

        async with generate_many(client, requests, PollerOptions(max_concurrency=16)) as run:
            async for r in run:        # completion order, each request exactly once
                print(r.index, r.ok, r.url or r.error)

    ``requests``: ``MediaRequest`` objects or mappings with ``model``, ``prompt``, ``ar``,
    ``images``, ``tag`` (other keys go into the body), from any iterable or async iterable.
    ``options`` are the poller's (its concurrency bound and rate budget cover the creates too).
    ``max_pending`` bounds tasks created and not yet finished (and so how far ahead of the
    results the input is read). ``create_retries`` applies only where re-sending is safe.
    ``journal`` (a path for the SQLite default, or a ``Journal``) makes the run resumable; it
    is taken for this run before anything else (``JournalInUseError`` if another live run has
    it). A ``postgresql://`` journal is shared by every run naming the same ``batch``: they
    work the batch together (each request is claimed and created by one of them and comes out
    of that run only) and take over the work of a run that dies. ``download_to`` saves each
    file as its task finishes (``result.path``). When the run is cancelled, creates already
    sent are allowed to finish (the client never abandons one) and their task ids are
    journaled.
    """
    if max_pending < 1:
        raise InvalidInputError("max_pending must be >= 1")
    store, owns_store = (None, False) if journal is None else open_journal(journal, batch=batch)
    try:
        if store is not None:  # first: a second run on this journal is refused at once
            await store.acquire()
        folder = Path(download_to) if download_to is not None else None
        if folder is not None:  # a folder by definition: create it so files are named per task
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
            # a killed earlier run may have left half-written temporaries: never results, remove
            await anyio.to_thread.run_sync(remove_partial_downloads, folder)
        options = replace(options or PollerOptions(), keep_open=True)
        poller = Poller(client, options)
        send, receive = anyio.create_memory_object_stream[BatchResult](max_pending)
        try:
            async with poller, anyio.create_task_group() as tg:
                run = BatchRun(poller, receive)
                shared = _Shared(client, poller, run.progress, store)
                feeder = _Feeder(shared, max_pending, create_retries, files=folder is not None)
                drain = _Drain(shared, folder, download_concurrency or options.max_concurrency)
                tg.start_soon(feeder.run, requests, options.max_concurrency)
                tg.start_soon(drain.run, send)
                yield run
                tg.cancel_scope.cancel()
        except Exception as exc:  # (groups of) journal errors: one typed, one-line error
            lost = _one_journal_error(exc)
            if lost is None:
                raise
            raise lost from None
        finally:
            receive.close()
    finally:
        if owns_store and store is not None:
            await store.aclose()


@dataclass(frozen=True)
class _Shared:
    """What every stage of one run works with."""

    client: AsyncGPTunnel
    poller: Poller
    progress: BatchProgress
    journal: Journal | None


class _Stage:
    def __init__(self, shared: _Shared) -> None:
        self._client = shared.client
        self._poller = shared.poller
        self._progress = shared.progress
        self._journal = shared.journal


class _Feeder(_Stage):
    """Reads requests, creates (or resumes) their tasks, hands them to the poller."""

    def __init__(
        self, shared: _Shared, max_pending: int, create_retries: int, *, files: bool
    ) -> None:
        super().__init__(shared)
        self._max_pending = max_pending
        self._files = files  # the run saves files: a dead run's `done` rows are work left
        self._sharing = shared.journal if isinstance(shared.journal, SharedJournal) else None
        self._swept: set[str] = set()  # keys the sweep took that the input has not reached
        self._create_retries = create_retries
        self._creating = 0
        self._seen: Counter[str] = Counter()

    async def run(self, requests: RequestSource, workers: int) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[int, Any]](0)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._create_worker, receive.clone())
                receive.close()
                read = anyio.Event()
                if self._sharing is not None:
                    tg.start_soon(self._sweep, self._sharing, send.clone(), read)
                async with send, aclosing(_aiter(requests)) as source:
                    index = 0
                    async for raw in source:
                        if self._poller.closed:  # the run's deadline passed: read no further
                            break
                        await self._dispatch(send, index, raw)
                        self._progress.read += 1
                        index += 1
                read.set()
        finally:
            self._poller.close()

    async def _dispatch(
        self, send: MemoryObjectSendStream[tuple[int, Any]], index: int, item: Any
    ) -> None:
        while self._poller.pending + self._creating >= self._max_pending:
            await self._poller.wait_for_change()
        self._creating += 1
        await send.send((index, item))

    async def _sweep(
        self,
        journal: SharedJournal,
        send: MemoryObjectSendStream[tuple[int, Any]],
        read: anyio.Event,
    ) -> None:
        """A shared journal: take over the requests of runs that died, every
        ``_SWEEP_INTERVAL`` from the run's start (and at once when its input is read), so a
        dead run's tasks are polled again within about that long, however far this run is
        from the end of its input; once the input is read, stay until no other live run has
        work left (it may die too).

        Taken-over work goes ahead of the input: it may take this run up to ``max_pending``
        past its bound (the tasks exist and are billed; their links age), and the input waits
        until the run is back under it.
        """
        async with send:
            while not self._poller.closed:
                room = 2 * self._max_pending - self._poller.pending - self._creating
                if room > 0:
                    rows = await journal.take_over(limit=room, files=self._files)
                    # noted before any await: the input's claim of one of these keys, queued
                    # behind this call on the journal's connection, must find it here
                    self._swept.update(record.key for record, _ in rows)
                    # tasks first, polled at once; then the creates, each waiting for a create
                    # worker (they wait for the gate, 429 pauses...): not the other way round
                    rows.sort(key=lambda row: row[0].state in CLAIMABLE_STATES)
                    for record, body in rows:
                        if record.state in CLAIMABLE_STATES:
                            self._creating += 1
                            await send.send((record.index, _TakenOver(record, body)))
                        else:
                            try:
                                await self._handle_taken_over(
                                    record.index, _TakenOver(record, body)
                                )
                            except JournalTakenOverError as exc:  # and taken back meanwhile
                                self._taken_away(record.index, exc)
                    if rows:
                        continue
                    if read.is_set() and not await journal.others_working(files=self._files):
                        return
                if read.is_set():
                    await anyio.sleep(_SWEEP_INTERVAL)
                else:
                    with anyio.move_on_after(_SWEEP_INTERVAL):
                        await read.wait()

    async def _create_worker(self, receive: MemoryObjectReceiveStream[tuple[int, Any]]) -> None:
        async with receive:
            async for index, raw in receive:
                try:
                    await self._handle(index, raw)
                except JournalTakenOverError as exc:
                    self._taken_away(index, exc)
                finally:
                    self._creating -= 1

    def _taken_away(self, index: int, exc: JournalTakenOverError) -> None:
        """Another run took this request over while this run was cut off from the shared
        journal: it is that run's now (sent, polled and reported there), dropped here."""
        logger.info("request #%d: %s", index, exc)
        self._progress.elsewhere += 1

    async def _handle(self, index: int, raw: Any) -> None:
        if isinstance(raw, _TakenOver):
            await self._handle_taken_over(index, raw)
            return
        tag = raw.get("tag") if isinstance(raw, Mapping) else getattr(raw, "tag", None)
        try:
            request = MediaRequest.coerce(raw)
            body = request.body()
        except InvalidInputError as exc:
            self._emit(BatchResult(id=None, ok=False, error=exc, tag=tag), raw, index)
            return
        key = None
        if self._journal is not None:
            digest = body_digest(body)
            key = f"{digest}#{self._seen[digest]}"  # the n-th identical request is its own task
            self._seen[digest] += 1
            claim = None if key in self._swept else await self._journal.claim(key, index, body)
            if claim is None or key in self._swept:
                # this run's sweep took it over from a dead run: its result comes from there
                self._swept.discard(key)
                return
            if not claim.won:
                await self._resume(claim, request, raw, index)
                return
        await self._create(body, key, request, raw, index)

    async def _create(
        self, body: dict[str, Any], key: str | None, request: MediaRequest, raw: Any, index: int
    ) -> Any:
        """Send one create, journal its outcome and poll its task; ``None`` if it failed
        (already reported)."""
        wire = _JournalWire(self._journal, key) if self._journal and key else None
        try:
            while True:
                if self._sharing is not None:  # its database lost: creates wait for it here
                    await self._sharing.wait_ready()
                try:
                    task = await self._client.media.create_from_body(
                        body,
                        gate=self._poller.gate,
                        max_retries=self._create_retries,
                        write_ahead=wire,
                    )
                    break
                except JournalAwayError:  # lost just now: nothing sent, send it once back
                    continue
        except JournalError:
            raise  # without its record the batch must not go on
        except GPTunnelError as exc:
            unknown = bool(getattr(exc, "may_have_been_created", False))
            if unknown:
                logger.warning("create #%d: outcome unknown, not re-sent: %s", index, exc)
            if self._journal is not None and key is not None:
                state: State = "unknown" if unknown else "rejected"
                await self._journal.record(key, state, error=str(exc))
            self._emit(BatchResult(id=None, ok=False, error=exc, tag=request.tag), raw, index)
            return None
        self._progress.created += 1
        if self._journal is None or key is None:
            self._add(task, _Request(raw, index, request.tag))
            return task
        # Polled at once, even while a lost shared journal keeps its task id waiting (in
        # memory, here); its outcome is written after its task id (the drain waits for this).
        written = anyio.Event()
        try:
            self._add(task, _Request(raw, index, request.tag, key, written=written))
            # The client let this create finish even if the run is being cancelled (a create
            # that has left is never abandoned); record its task id before the cancellation
            # lands, so a resumed run polls it instead of reporting an unknown outcome.
            with anyio.CancelScope(shield=True):
                await self._journal.record(key, "created", task_id=task.id, kind=task.poll_kind)
        finally:
            written.set()
        return task

    async def _handle_taken_over(self, index: int, taken: _TakenOver) -> None:
        """A request a run that died left behind (now this run's): send it if nothing of it
        was sent, else continue it like any request an earlier run left."""
        self._progress.taken_over += 1
        request = MediaRequest.coerce(taken.body)
        if taken.record.state in CLAIMABLE_STATES:
            await self._create(request.body(), taken.record.key, request, taken.body, index)
            return
        await self._resume(Claim(taken.record, won=False), request, taken.body, index)

    async def _resume(self, claim: Claim, request: MediaRequest, raw: Any, index: int) -> None:
        """Continue a request an earlier run left in the journal (it is not created again)."""
        assert self._journal is not None
        record = claim.record
        if claim.elsewhere:  # a live run sharing this journal works on it: its result is there
            self._progress.elsewhere += 1
            return
        self._progress.resumed += 1

        def report(error: GPTunnelError, **fields: Any) -> None:
            result = BatchResult(
                ok=False, error=error, tag=request.tag, from_journal=True, **fields
            )
            self._emit(result, raw, index)

        if record.state in CLAIMABLE_STATES:  # held by this very run (not expected)
            report(JournalError(f"request #{record.index} is being run by {record.owner}"), id=None)
            return
        if record.state in ("sending", "unknown"):
            if record.state == "sending":  # the run that sent it died waiting for the answer
                await self._journal.record(
                    record.key, "unknown", error="the run was stopped while its create was sent"
                )
            unknown = CreateOutcomeUnknownError(
                f"request #{record.index}: an earlier run sent its create and got no answer; "
                "the task may exist and be billed, so it is not sent again"
                + (f" ({record.error})" if record.error else ""),
            )
            report(unknown, id=None)
            return
        if record.state == "failed":
            failed = TaskFailedError(
                f"in an earlier run: {record.error or 'failed'}", task_id=record.task_id
            )
            report(failed, id=record.task_id)
            return
        if record.state == "saved" and record.path and await anyio.Path(record.path).is_file():
            self._progress.already_saved += 1
            result = BatchResult(
                id=record.task_id,
                ok=True,
                kind=record.kind,
                tag=request.tag,
                path=Path(record.path),
                link=record.url,
                from_journal=True,
            )
            self._emit(result, raw, index)
            return
        # created, done (file not saved yet) or saved-but-missing: poll the task again
        assert record.task_id is not None
        folder = None
        if record.state == "done" and record.path and await anyio.Path(record.path).is_dir():
            folder = Path(record.path)  # where its run began to save it
        self._progress.repolled += 1
        origin = _Request(raw, index, request.tag, record.key, folder=folder, repolled=True)
        self._add(record.task_id, origin, kind=record.kind)

    def _add(self, task: Any, origin: _Request, kind: str | None = None) -> None:
        raw, index, tag = origin.raw, origin.index, origin.tag
        try:
            self._poller.add(task, kind=kind, tag=origin)
        except PollerClosedError:  # the run's deadline passed while this create was in flight
            task_id = task if isinstance(task, str) else task.id
            error = TaskTimeoutError(
                f"task {task_id} was created after the run's deadline; not polled",
                task_id=task_id,
            )
            snapshot = None if isinstance(task, str) else task
            result = BatchResult(id=task_id, ok=False, task=snapshot, error=error, tag=tag)
            self._emit(result, raw, index)

    def _emit(self, result: BatchResult, raw: Any, index: int) -> None:
        self._poller.add_result(replace(result, request=raw, index=index))


@dataclass(frozen=True)
class _TakenOver:
    """A request of a run that died, taken over from a shared journal, with its create body."""

    record: JournalRecord
    body: dict[str, Any]


@dataclass(frozen=True)
class _JournalWire:
    """One create's write-ahead: ``sending`` just before it leaves, ``claimed`` once refused.

    A cancellation needs no handling: the row is ``claimed`` if the create never left (the next
    run sends it) or ``sending`` if it may have (the next run reports it, never re-sends it).
    """

    journal: Journal
    key: str

    async def on_wire(self) -> None:
        await self.journal.mark_on_wire(self.key)

    async def not_sent(self) -> None:
        await self.journal.release(self.key)


class _Drain(_Stage):
    """Records each outcome, saves files as tasks finish, passes results on to the caller."""

    def __init__(self, shared: _Shared, folder: Path | None, downloads: int) -> None:
        super().__init__(shared)
        self._folder = folder
        self._where = folder.absolute() if folder is not None else None  # as the journal has it
        # A semaphore, not a CapacityLimiter: a slot is taken here and given back by the
        # download task that uses it.
        self._downloads = anyio.Semaphore(max(downloads, 1))

    async def run(self, send: MemoryObjectSendStream[BatchResult]) -> None:
        async with send, anyio.create_task_group() as tg:
            async for outcome in self._poller:
                if isinstance(outcome, BatchResult):  # the feeder's own report, as it stood
                    await self._deliver(send, outcome)
                    continue
                origin = outcome.tag
                assert isinstance(origin, _Request)
                result = _as_batch_result(outcome, origin)
                if origin.repolled:  # an earlier run created it
                    result = replace(result, from_journal=True)
                if result.error is not None and result.error.status_code == 404:
                    result = replace(result, error=_unknown_task(result))
                if result.ok and self._folder is not None:
                    await self._downloads.acquire()
                    tg.start_soon(self._save, send, result, origin)
                elif await self._record(result, origin):
                    await self._deliver(send, result)

    async def _record(
        self, result: BatchResult, origin: _Request, folder: Path | None = None
    ) -> bool:
        """Journal a polled task's outcome; False if the task is not this run's any more
        (taken over while this run was cut off from a shared journal: that run reports it)."""
        if origin.written is not None:  # its task id first (a lost shared journal holds it)
            await origin.written.wait()
        try:
            await self._write_outcome(result, origin.key, folder)
        except JournalTakenOverError as exc:
            logger.info("task %s: %s", result.id, exc)
            self._progress.elsewhere += 1
            return False
        return True

    async def _write_outcome(
        self, result: BatchResult, key: str | None, folder: Path | None
    ) -> None:
        if self._journal is None or key is None:
            return
        if result.ok and folder is not None:  # where the file goes, for a run taking over
            where = self._where if folder == self._folder else folder
            await self._journal.record(key, "done", url=result.url, path=str(where))
        elif result.ok:
            await self._journal.record(key, "done", url=result.url)
        elif isinstance(result.error, TaskFailedError):
            await self._journal.record(key, "failed", error=str(result.error))
        else:  # timed out or polls kept failing: the task may still finish; a rerun polls it
            await self._journal.record(key, "created", error=str(result.error))

    async def _save(
        self,
        send: MemoryObjectSendStream[BatchResult],
        result: BatchResult,
        origin: _Request,
    ) -> None:
        # a run that died began to save it in its folder: saved there (the same names replace
        # what it may have written), so a task is saved once
        folder = origin.folder or self._folder
        assert folder is not None
        key = origin.key
        try:
            if not await self._record(result, origin, folder):
                return
            try:
                # the task's own download: a Suno song saves every track (the first is reported)
                path = await result.task.download(folder)
            except (GPTunnelError, OSError) as exc:
                # The task is done and paid for; the file is not (the link died, the disk is
                # full or read-only...). The journal keeps it "done", so a rerun fetches it
                # again while the link lives; the other requests go on.
                await self._deliver(send, replace(result, ok=False, error=_typed(exc)))
                return
            if self._journal is not None and key is not None:
                # The file is on disk: record it even if the run is being cancelled right now.
                # Absolute: a shared journal's reader (any machine, any folder) must know where.
                with anyio.CancelScope(shield=True):
                    where = str(await anyio.Path(path).absolute())
                    try:
                        await self._journal.record(key, "saved", path=where)
                    except JournalTakenOverError as exc:  # the file is here all the same
                        logger.warning("task %s: saved at %s; %s", result.id, where, exc)
            self._progress.saved += 1
            await self._deliver(send, replace(result, path=path))
        finally:
            self._downloads.release()

    async def _deliver(
        self, send: MemoryObjectSendStream[BatchResult], result: BatchResult
    ) -> None:
        if result.ok:
            self._progress.succeeded += 1
            if result.from_journal and result.path is not None:
                self._progress.saved += 1
        else:
            self._progress.failed += 1
        self._progress.in_flight = self._poller.pending
        await send.send(result)


def _one_journal_error(exc: BaseException) -> JournalError | None:
    """The error to raise for a (nested) group whose every leaf is a journal error — e.g. each
    waiting call's ``JournalUnavailableError`` once a lost database is given up on — else
    None (the group is raised as it is)."""
    leaves: list[BaseException] = []
    pending = [exc]
    while pending:
        e = pending.pop()
        inner = getattr(e, "exceptions", None)
        if isinstance(inner, (list, tuple)) and inner:
            pending.extend(inner)
        else:
            leaves.append(e)
    errors = [e for e in leaves if isinstance(e, JournalError)]
    if leaves == [exc] or len(errors) != len(leaves):  # not a group, or not only these
        return None
    unavailable = [e for e in errors if isinstance(e, JournalUnavailableError)]
    return (unavailable or errors)[0]


def _unknown_task(result: BatchResult) -> TaskFailedError:
    """A 404 on a poll: the server does not know the task (not worth polling again)."""
    return TaskFailedError(
        f"the server does not know task {result.id} (404): it was created on another server "
        "(an emulator that has since stopped?) or is too old; it is not polled again",
        task_id=result.id,
    )


def _typed(exc: GPTunnelError | OSError) -> GPTunnelError:
    """A download failure as a one-line typed error (disk full, permission denied...)."""
    if isinstance(exc, GPTunnelError):
        return exc
    reason = exc.strerror or type(exc).__name__
    where = f" {exc.filename}" if exc.filename else ""
    return DownloadError(f"cannot write the file{where}: {reason}")


@dataclass(frozen=True)
class _Request:
    """Which request a polled task answers: the batch hands it to the poller as the task's tag,
    and what its outcome needs travels with it. Nothing is looked up by ``index``: a shared
    batch's rows taken over from a run of another input may carry this run's indexes too."""

    raw: Any
    index: int
    tag: Any
    key: str | None = None  # its journal row
    folder: Path | None = None  # where a run that died began to save its file
    repolled: bool = False  # an earlier run created it
    written: anyio.Event | None = None  # set once its task id is journaled (outcome after)


def _as_batch_result(outcome: PollResult, origin: _Request) -> BatchResult:
    """A polled task's outcome as the batch reports it, with its request and the caller's own
    tag (outcomes the feeder reported itself are ``BatchResult`` already)."""
    return BatchResult(
        id=outcome.id,
        ok=outcome.ok,
        task=outcome.task,
        error=outcome.error,
        kind=outcome.kind,
        polls=outcome.polls,
        tag=origin.tag,
        request=origin.raw,
        index=origin.index,
    )
