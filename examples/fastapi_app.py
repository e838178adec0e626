"""A FastAPI backend that starts generations and streams their status as Server-Sent Events.

    POST /generations              {"prompt": "...", "model"?: "...", "ar"?: "16:9"}
                                   -> 202 {"id": "...", "status": "idle", "events": "<url>"}
    GET  /generations/{id}/events  -> text/event-stream: "status" events while the task runs,
                                      then one final "done" (with the url) or "failed" event.

What it shows:

* one ``AsyncGPTunnel`` for the whole app, opened and closed in the app's lifespan (it holds a
  connection pool and the adaptive schedule that learns how long each model takes);
* billed creates: the SDK checks the input locally before anything is sent, and SDK errors map
  to HTTP errors (``InvalidInputError`` -> 422, ``InsufficientBalanceError`` -> 402, anything
  else -> 502, saying whether the task may exist anyway);
* the event stream waits with ``client.media.wait(..., on_progress=...)``: one event per poll,
  polls on the SDK's adaptive schedule; when the browser goes away, the wait is cancelled at
  once (no more polls for a client that is not listening).

Run it (needs ``pip install uvicorn``):

    python examples/fastapi_app.py --offline          # against the built-in emulator, no key
    GPTUNNEL_API_KEY=... python examples/fastapi_app.py   # against the real API
    curl -s -XPOST localhost:8000/generations -H 'content-type: application/json' \\
         -d '{"prompt": "a red fox"}'
    curl -N localhost:8000/generations/<id>/events

Or, without a server at all, one round trip in-process: ``python examples/fastapi_app.py --demo``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gptunnel_async import (
    MODELS,
    AsyncGPTunnel,
    GPTunnelError,
    InsufficientBalanceError,
    InvalidInputError,
    MediaTask,
    NotFoundError,
    SharedLimits,
    TaskFailedError,
    TaskTimeoutError,
)
from gptunnel_async.testing import Emulator, EmulatorConfig, offline_client

DEFAULT_MODEL = "google-imagen-3"
#: A comment line every so often keeps proxies from closing a quiet stream (videos take minutes).
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class Settings:
    """How the app reaches GPTunnel.

    ``api_key``/``base_url`` default to ``GPTUNNEL_API_KEY``/``GPTUNNEL_BASE_URL``.
    ``offline=True`` starts the emulator inside the app (no key, no network).
    ``time_scale`` is how much faster than real time the API runs: 1 for the real service, the
    emulator's speed-up otherwise (the poll schedule follows it).
    ``max_connections`` bounds this process's simultaneous requests (None: the SDK's
    default). ``limits`` shares one
    concurrency bound, rate budget and 429 pause with every other process using the same key
    and database (several workers: see ``fastapi_workers.py``); not with ``offline``, where
    each process would have an emulator of its own.
    """

    api_key: str | None = None
    base_url: str | None = None
    offline: bool = False
    time_scale: float = 1.0
    wait_timeout: float = 3600.0
    max_connections: int | None = None
    limits: SharedLimits | None = None


class GenerationRequest(BaseModel):
    prompt: str = Field(min_length=1)
    model: str = DEFAULT_MODEL
    ar: str | None = None


class GenerationCreated(BaseModel):
    id: str
    status: str
    events: str


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; ``settings`` say which API (or emulator) it talks to."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # One client for the whole app: its pool, its limits and its learned schedule are
            # shared by every request. It is closed when the app shuts down.
            if settings.offline:
                if settings.limits is not None:
                    raise ValueError("shared limits need one API for every process, not offline")
                emulator = Emulator(EmulatorConfig(time_scale=settings.time_scale))
                app.state.emulator = emulator
                client = offline_client(emulator)
            else:
                own: dict[str, Any] = {}
                if settings.max_connections is not None:
                    own["max_connections"] = settings.max_connections
                client = AsyncGPTunnel(
                    settings.api_key,
                    base_url=settings.base_url,
                    limits=settings.limits,  # opened by `async with`: PostgreSQL checked there
                    **own,
                )
            app.state.gptunnel = await stack.enter_async_context(client)
            # Tasks this process created, so a wait knows their age and polls on schedule.
            # (A real service would keep ids in its database; a bare id works too, see below.)
            app.state.tasks = {}
            yield

    app = FastAPI(title="gptunnel_async example", lifespan=lifespan)

    @app.post("/generations", status_code=202, response_model=GenerationCreated)
    async def start_generation(body: GenerationRequest, request: Request) -> GenerationCreated:
        client: AsyncGPTunnel = request.app.state.gptunnel
        spec = MODELS.get(body.model)
        if spec is None or spec.endpoint != "create":
            # The SDK sends unknown model ids as-is (the provider adds models all the time);
            # a public endpoint should not let its callers pick any billed model they like.
            allowed = sorted(m.id for m in MODELS.values() if m.endpoint == "create")
            raise HTTPException(422, detail=f"unknown model {body.model!r}; use one of {allowed}")
        try:
            # Billed. The SDK validates model/ar/prompt locally first: a bad request raises
            # InvalidInputError and nothing is sent. A create is never re-sent once it may have
            # reached the server, so this cannot pay twice.
            task = await client.media.create(model=body.model, prompt=body.prompt, ar=body.ar)
        except GPTunnelError as exc:
            raise http_error(exc) from None
        request.app.state.tasks[task.id] = task
        return GenerationCreated(
            id=task.id, status=task.status, events=f"/generations/{task.id}/events"
        )

    @app.get("/generations/{task_id}/events")
    async def generation_events(task_id: str, request: Request) -> Response:
        client: AsyncGPTunnel = request.app.state.gptunnel
        task: MediaTask | None = request.app.state.tasks.get(task_id)
        if task is None:
            # Not created by this process (e.g. after a restart): look it up once, so that an
            # unknown id is a 404 here rather than an error inside a 200 stream.
            try:
                task = await client.media.result(task_id)
            except GPTunnelError as exc:
                raise http_error(exc) from None
        return TaskEventStream(client, task, timeout=settings.wait_timeout)

    return app


def http_error(exc: GPTunnelError) -> HTTPException:
    """An SDK error as the HTTP error this API answers with."""
    if isinstance(exc, InvalidInputError):
        return HTTPException(422, detail=str(exc))  # bad input: nothing was sent or billed
    if isinstance(exc, InsufficientBalanceError):
        return HTTPException(402, detail="the generation account is out of funds")
    if isinstance(exc, NotFoundError):
        return HTTPException(404, detail="no such generation")
    # Anything else is the upstream's failure. For a create, say whether the task may exist
    # (and be billed) anyway, so that the caller does not blindly retry.
    detail: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message}
    may_exist = getattr(exc, "may_have_been_created", None)
    if may_exist is not None:
        detail["may_have_been_created"] = may_exist
    return HTTPException(502, detail=detail)


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class TaskEventStream(Response):
    """A ``text/event-stream`` response that waits for one task and reports each poll.

    It is written as a plain ASGI response rather than a ``StreamingResponse`` over a generator,
    so that the wait runs in a task group this response owns: when the client disconnects, the
    group is cancelled and the wait stops at once, in the task that started it.
    """

    media_type = "text/event-stream"

    def __init__(self, client: AsyncGPTunnel, task: MediaTask, *, timeout: float) -> None:
        # No body and no content-length: the stream ends when the task does.
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.client = client
        self.task = task
        self.timeout = timeout
        self.disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def emit(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.disconnected = True
                tg.cancel_scope.cancel()  # the client left: stop waiting (and polling)

            async def keepalive() -> None:
                while True:
                    await anyio.sleep(KEEPALIVE_SECONDS)
                    await emit(b": keep-alive\n\n")

            tg.start_soon(watch_disconnect)
            tg.start_soon(keepalive)
            try:
                await emit(sse("status", describe(self.task)))
                await emit(await self.final_event(emit))
            except OSError:  # ASGI servers may report a gone client by failing the send
                self.disconnected = True
            tg.cancel_scope.cancel()
        if not self.disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def final_event(self, emit: Callable[[bytes], Awaitable[None]]) -> bytes:
        """Wait for the task, emitting a ``status`` event per poll; the last event's bytes."""

        async def on_progress(latest: MediaTask) -> None:
            await emit(sse("status", describe(latest)))

        try:
            done = await self.client.media.wait(
                self.task, timeout=self.timeout, on_progress=on_progress
            )
        except (TaskFailedError, TaskTimeoutError) as exc:
            return sse("failed", {"id": self.task.id, "error": exc.message})
        except GPTunnelError as exc:  # e.g. the API kept refusing: still end the stream cleanly
            return sse("failed", {"id": self.task.id, "error": f"{type(exc).__name__}: {exc}"})
        return sse("done", describe(done))


def describe(task: MediaTask) -> dict[str, Any]:
    data: dict[str, Any] = {"id": task.id, "status": task.status}
    if task.is_done:
        data["url"] = task.url
        data["urls"] = task.urls
        if task.expires_at is not None:  # links live 48 h: download what you keep
            data["expires_at"] = task.expires_at.isoformat()
    return data


async def demo(prompt: str, settings: Settings) -> None:
    """One round trip through the app in-process: POST, then print the event stream."""
    import httpx

    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=None
        ) as http,
    ):
        created = await http.post("/generations", json={"prompt": prompt, "ar": "16:9"})
        print("POST /generations ->", created.status_code, created.json())
        created.raise_for_status()
        # (httpx's ASGI transport hands over the body when the stream ends; a real HTTP
        # client such as `curl -N` or a browser's EventSource sees each event as it is sent.)
        events = await http.get(created.json()["events"])
        print(events.text.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--offline", action="store_true", help="use the built-in emulator")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("GPTUNNEL_EXAMPLE_TIME_SCALE", "20")),
        help="offline: how much faster than real time the emulator runs (default 20)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--demo", metavar="PROMPT", nargs="?", const="a red fox in the snow")
    args = parser.parse_args()
    offline = args.offline or not os.environ.get("GPTUNNEL_API_KEY")
    settings = Settings(offline=offline, time_scale=args.time_scale if offline else 1.0)
    print("using", "the offline emulator" if offline else "the GPTunnel API")
    if args.demo is not None:
        anyio.run(demo, args.demo, settings)
        return
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("serving needs uvicorn: pip install uvicorn (or try --demo)") from None
    uvicorn.run(create_app(settings), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
