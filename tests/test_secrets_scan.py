"""A canary key runs every main flow; then everything the SDK left behind is scanned for it.

Flows: create, wait, the poller, ``generate_many``, the Midjourney chain, downloads, retries
(with DEBUG logging on for every logger, httpx's included), and every error class that can be
triggered. Scanned: every log record (message, ``msg``, ``args``, extras, formatted output and
exception text), every exception's ``str``/``repr``/``args``/attributes and its whole
``__cause__``/``__context__`` chain and traceback, the ``repr`` of the client, tasks and results,
and every byte of every file written under the tmp dir.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from gptunnel_async import (
    AdaptivePolicy,
    AsyncGPTunnel,
    GPTunnelError,
    Poller,
    PollerOptions,
    RetryPolicy,
    generate_many,
)
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

KEY = "sk-CANARY-7f3a9c"
SCALE = 1000.0
TASK_ID = "0123456789abcdef01234567"


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.formatted: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.formatted.append(self.format(record))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """DEBUG on for every logger (the SDK's, httpx's, httpcore's), recorded at the root."""
    handler = Recorder()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    sdk = logging.getLogger("gptunnel_async")
    old_levels = (root.level, sdk.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sdk.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_levels[0])
        sdk.setLevel(old_levels[1])


class Evidence:
    """Everything a flow produced that might carry the key."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.objects: list[Any] = []
        self.kinds: set[str] = set()

    async def expect_error(self, call: Awaitable[Any]) -> BaseException:
        try:
            await call
        except GPTunnelError as exc:
            self.errors.append(exc)
            self.kinds.add(type(exc).__name__)
            return exc
        raise AssertionError("expected an error")

    def keep(self, *objects: Any) -> None:
        self.objects.extend(objects)
        for obj in objects:
            error = getattr(obj, "error", None)
            if isinstance(error, BaseException):
                self.errors.append(error)
                self.kinds.add(type(error).__name__)


def chain(exc: BaseException, *, suppressed: bool = False) -> Iterator[BaseException]:
    """The exception and every exception reachable from it, each once: causes, contexts,
    group members and wrapped errors (``.error``).

    A context hidden by ``raise ... from None`` is followed only with ``suppressed=True``:
    ``traceback`` (and so any log or report) does not show it, but it is still reachable.
    """
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        if current.__context__ is not None and (suppressed or not current.__suppress_context__):
            todo.append(current.__context__)
        todo += list(getattr(current, "exceptions", ()))
        wrapped = getattr(current, "error", None)
        if isinstance(wrapped, BaseException):
            todo.append(wrapped)


def texts_of_error(exc: BaseException, *, suppressed: bool = False) -> Iterator[str]:
    for e in chain(exc, suppressed=suppressed):
        yield str(e)
        yield repr(e)
        yield repr(e.args)
        yield "".join(traceback.format_exception(e))
        for name, value in vars(e).items():
            yield f"{name}={value!r}"
            yield str(value)
            if isinstance(value, httpx.Request):  # an httpx error's request, headers and all
                yield repr(dict(value.headers))


def texts_of_record(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield str(record.msg)
    yield repr(record.args)
    yield repr(vars(record))
    if record.exc_info and record.exc_info[1] is not None:
        yield from texts_of_error(record.exc_info[1])


def assert_no_key(where: str, text: str) -> None:
    assert KEY not in text, f"the key leaked in {where}: {text[:300]!r}"


def scan(recorder: Recorder, evidence: Evidence, folder: Path) -> None:
    assert recorder.records, "DEBUG logging recorded nothing: the scan would prove nothing"
    for record in recorder.records:
        for text in texts_of_record(record):
            assert_no_key(f"log record {record.name}:{record.lineno}", text)
    for text in recorder.formatted:
        assert_no_key("a formatted log line", text)
    for exc in evidence.errors:
        for text in texts_of_error(exc):
            assert_no_key(f"{type(exc).__name__}", text)
    for obj in evidence.objects:
        assert_no_key(f"repr of {type(obj).__name__}", repr(obj))
        assert_no_key(f"str of {type(obj).__name__}", str(obj))
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"the key was written to {path}"


def emulator(**config: Any) -> Emulator:
    config.setdefault("time_scale", SCALE)
    config.setdefault("seed", 7)
    emu = Emulator(EmulatorConfig(api_keys={KEY}, **config))
    for model in ("google-imagen-3", "flux-dev", "midjourney", "faceswap", "bgremover"):
        emu.config.durations[model] = DurationDist.fixed(20.0)
    for kind in ("imagine", "upsample", "variation"):
        emu.config.durations[f"midjourney/{kind}"] = DurationDist.fixed(20.0)
    return emu


def client_of(url: str, **kwargs: Any) -> AsyncGPTunnel:
    kwargs.setdefault("poll_policy", AdaptivePolicy(clock_scale=SCALE))
    kwargs.setdefault(
        "retry_policy",
        RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.005, retry_after_cap=0.01),
    )
    kwargs.setdefault("timeout", 5.0)
    return AsyncGPTunnel(KEY, base_url=url, **kwargs)


@asynccontextmanager
async def emulated(**config: Any) -> AsyncIterator[tuple[Emulator, AsyncGPTunnel]]:
    emu = emulator(**config)
    async with serve(emu) as server, client_of(server.url) as client:
        yield emu, client


@pytest.mark.anyio
async def test_the_canary_key_appears_nowhere_after_every_main_flow(
    recorder: Recorder, tmp_path: Path
) -> None:
    ev = Evidence()
    async with emulated() as (emu, client):
        ev.keep(client, client.downloader)
        # create, wait, downloads
        task = await client.media.create(model="google-imagen-3", prompt="a canary")
        done = await client.media.wait(task)
        saved = await done.download(tmp_path / "files")
        ev.keep(task, done, saved, await client.media.result(task.id))
        assert await client.download_bytes(done)
        # retries on reads and on a create that surely never arrived, with DEBUG logs
        emu.faults.script("GET /v1/media/result", [502, "drop", (429, {"retry-after": "0"})])
        ev.keep(await client.media.result(task.id))
        emu.faults.script("POST /v1/media/create", [(429, {"retry-after": "0"})])
        ev.keep(await client.media.create(model="flux-dev", prompt="after a 429"))
        # the poller, with failures as values
        emu.faults.task_failure_rate = 0.5
        created = [
            await client.media.create(model="flux-dev", prompt=f"poll {i}") for i in range(6)
        ]
        async with Poller(client, PollerOptions(max_concurrency=4)) as poller:
            ev.keep(poller)
            for t in created:
                poller.add(t)
            poller.add(TASK_ID, kind="media")  # an unknown id: a NotFoundError value
            async for result in poller:
                ev.keep(result)
        emu.faults.task_failure_rate = 0.0
        # generate_many, with bad input among the requests
        requests = [
            {"model": "flux-dev", "prompt": "batch 1"},
            {"model": "google-imagen-3", "prompt": "bad ar", "ar": "7:3"},
            {"model": "flux-dev", "prompt": "\ud800"},
            {"model": "flux-dev", "prompt": "batch 2"},
        ]
        async with generate_many(client, requests, PollerOptions(max_concurrency=4)) as results:
            async for r in results:
                ev.keep(r)
        # the Midjourney chain
        grid = await client.midjourney.generate("a canary, oil painting")
        up = await client.midjourney.generate_upsample(grid, 2)
        vary = await client.midjourney.wait(await client.midjourney.variation(up, mode="high"))
        ev.keep(grid, up, vary, await client.download(vary, tmp_path / "files"))
        # faceswap and bgremover
        png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        swap = await client.faceswap.generate(png, "https://example.com/face.jpg")
        cut = await client.bgremover.generate("https://example.com/photo.jpg")
        ev.keep(swap, cut, await client.balance(), await client.models())

        # -- every error class the emulator can produce --
        await ev.expect_error(client.media.create(model="google-imagen-3", prompt=" "))
        await ev.expect_error(client.media.result(TASK_ID))  # 404
        await ev.expect_error(  # code 3 under HTTP 200
            client.media.create_from_body({"model": "google-imagen-3", "prompt": "x", "ar": "1"})
        )
        emu.faults.script("GET /v1/balance", [403])
        await ev.expect_error(client.balance())
        emu.faults.script("GET /v1/balance", [(429, {"retry-after": "0"})] * 5)
        await ev.expect_error(client.balance())
        emu.faults.script("GET /v1/balance", [503] * 5)
        await ev.expect_error(client.balance())
        emu.faults.script("GET /v1/balance", [418])
        await ev.expect_error(client.balance())
        emu.faults.script("POST /v1/media/create", ["drop_after"])
        await ev.expect_error(client.media.create(model="flux-dev", prompt="lost answer"))
        emu.faults.script("POST /v1/media/create", [500])
        await ev.expect_error(client.media.create(model="flux-dev", prompt="a 500"))
        saved_balance = emu.org_balance
        emu.org_balance = 0.0
        await ev.expect_error(client.media.create(model="flux-dev", prompt="no money"))
        emu.org_balance = saved_balance
        emu.faults.never_finish_rate = 1.0
        stuck = await client.media.create(model="flux-dev", prompt="never")
        await ev.expect_error(client.media.wait(stuck, timeout=0.05))
        emu.faults.never_finish_rate = 0.0
        emu.faults.task_failure_rate = 1.0
        await ev.expect_error(client.media.generate(model="flux-dev", prompt="fails"))
        emu.faults.task_failure_rate = 0.0
        emu.expire_links(done.id)
        await ev.expect_error(client.download(done, tmp_path / "files" / "expired"))
        await ev.expect_error(
            client.download(done.model_copy(update={"url": "https://10.0.0.1/x"}), tmp_path)
        )
        await ev.expect_error(client.download_bytes(vary, max_bytes=10))
        emu.faults.script("GET /v1/balance", [("delay", 2.0)])
        no_retry = RetryPolicy(max_retries=0)
        async with client_of(client.base_url, timeout=0.2, retry_policy=no_retry) as impatient:
            await ev.expect_error(impatient.balance())
        await anyio.lowlevel.checkpoint()

    async with client_of(f"http://127.0.0.1:{_closed_port()}") as nowhere:
        ev.keep(nowhere)
        await ev.expect_error(nowhere.balance())
        await ev.expect_error(nowhere.media.create(model="flux-dev", prompt="refused"))

    emu = emulator()
    emu.config.api_keys = {"a-different-key"}
    async with serve(emu) as server, client_of(server.url) as rejected:
        await ev.expect_error(rejected.balance())  # 401
    await ev.expect_error(_closed_client())

    expected = {
        "InvalidInputError", "NotFoundError", "InvalidRequestError", "PermissionDeniedError",
        "RateLimitError", "InternalServerError", "APIStatusError", "APIConnectionError",
        "APITimeoutError", "InsufficientBalanceError", "TaskTimeoutError", "TaskFailedError",
        "LinkExpiredError", "UnsafeLinkError", "FileTooLargeError", "AuthenticationError",
        "ConfigurationError",
    }  # fmt: skip
    assert expected <= ev.kinds, expected - ev.kinds
    scan(recorder, ev, tmp_path)


def _closed_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _closed_client() -> None:
    AsyncGPTunnel(KEY, base_url="http://files.example.com")  # ConfigurationError


# -- a hostile server that echoes the key back ------------------------------------------------

EchoMode = Callable[[httpx.Request, str], httpx.Response]


def echo_json(status: int) -> EchoMode:
    def answer(request: httpx.Request, key: str) -> httpx.Response:
        body = {
            "error": {"message": f"bad key {key}", "type": f"t-{key}"},
            "code": 3 if status == 200 else status,
            "issues": [{"path": ["prompt", key], "message": key, "expected": key}],
            "echo": {"nested": [key, {"deeper": key}]},
        }
        return httpx.Response(status, json=body, headers={"x-echo": key, "retry-after": "0"})

    return answer


def echo_text(status: int, content_type: str = "text/html") -> EchoMode:
    def answer(request: httpx.Request, key: str) -> httpx.Response:
        body = f"<html>Authorization: {key}</html>".encode()
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return answer


def echo_transport_error(request: httpx.Request, key: str) -> httpx.Response:
    raise httpx.ConnectError(f"cannot connect with Authorization: {key}", request=request)


def echo_read_error(request: httpx.Request, key: str) -> httpx.Response:
    raise httpx.ReadTimeout(f"timed out reading for {key}", request=request)


ECHOES: dict[str, EchoMode] = {
    **{f"json-{s}": echo_json(s) for s in (200, 400, 401, 402, 403, 404, 418, 422, 429, 500)},
    "html-200": echo_text(200),
    "html-502": echo_text(502),
    "json-200-garbage": echo_text(200, "application/json"),
    "connect-error": echo_transport_error,
    "read-timeout": echo_read_error,
}


@pytest.mark.parametrize("mode", list(ECHOES))
@pytest.mark.anyio
async def test_a_server_echoing_the_key_does_not_put_it_in_errors_or_logs(
    mode: str, recorder: Recorder, tmp_path: Path
) -> None:
    echo = ECHOES[mode]

    def handler(request: httpx.Request) -> httpx.Response:
        return echo(request, request.headers["authorization"])

    ev = Evidence()
    calls: list[Callable[[AsyncGPTunnel], Awaitable[Any]]] = [
        lambda c: c.media.create(model="flux-dev", prompt="p"),
        lambda c: c.media.result(TASK_ID),
        lambda c: c.media.wait(TASK_ID, timeout=0.05),
        lambda c: c.midjourney.imagine("p"),
        lambda c: c.faceswap.result(TASK_ID),
        lambda c: c.balance(),
        lambda c: c.models(),
    ]
    async with AsyncGPTunnel(
        KEY,
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.002),
    ) as client:
        ev.keep(client)
        for call in calls:
            await ev.expect_error(call(client))
    scan(recorder, ev, tmp_path)


@pytest.mark.parametrize("retries", [0, 1])
@pytest.mark.anyio
async def test_no_exception_reachable_from_an_error_holds_the_key(retries: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    async with AsyncGPTunnel(
        KEY,
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=retries, initial_delay=0.001, max_delay=0.002),
    ) as client:
        with pytest.raises(GPTunnelError) as info:
            await client.balance()
    for text in texts_of_error(info.value, suppressed=True):
        assert_no_key("the suppressed __context__ chain", text)
