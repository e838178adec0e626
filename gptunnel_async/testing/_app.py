"""The emulator: auth, body parsing, fault injection and counting around the route table.

``Emulator.handle`` is the single entry point used by both the socket server and the in-process
transport, so both behave identically.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import anyio

from ._config import EmulatorConfig
from ._context import Call
from ._counters import Counters
from ._faults import Decision, Faults
from ._files import serve_file
from ._http import DROP, TIME_SCALE_HEADER, Drop, Request, Response, error_response
from ._routes import ROUTES
from ._state import Task, TaskStore


def _retry_after(resp: Response) -> float | None:
    """The wait a 429 announced, whichever header form it used."""
    headers = dict(resp.headers)
    if "retry-after-ms" in headers:
        return float(headers["retry-after-ms"]) / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())


class Emulator:
    """A fake GPTunnel: serve it with :func:`serve`/:func:`run_in_thread` or
    :class:`EmulatorTransport`, steer it with ``faults``, and inspect ``counters``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config: EmulatorConfig = config if config is not None else EmulatorConfig()
        self.faults: Faults = Faults(self.config.seed)
        self.store: TaskStore = TaskStore(self.config, self.faults)
        self.counters: Counters = Counters(
            self.store, grace=self.config.retry_after_grace, max_arrivals=self.config.max_arrivals
        )
        self.internal_errors: list[Exception] = []

    # -- inspection and control -----------------------------------------------------------

    @property
    def org_balance(self) -> float:
        return self.store.org_balance

    @org_balance.setter
    def org_balance(self, value: float) -> None:
        self.store.org_balance = value

    @property
    def wallet_balance(self) -> float:
        return self.store.wallet_balance

    @wallet_balance.setter
    def wallet_balance(self, value: float) -> None:
        self.store.wallet_balance = value

    def task(self, task_id: str) -> Task | None:
        return self.store.get(task_id)

    def finished_at(self, task_id: str) -> float | None:
        return self.counters.finished_at(task_id)

    def expire_links(self, task_id: str) -> None:
        """Make every link of this task answer 403 from now on."""
        self.store.tasks[task_id].expired_at = time.monotonic()

    def reset(self) -> None:
        """Forget tasks, restore balances, clear faults and counters."""
        self.store = TaskStore(self.config, self.faults)
        self.faults.reset()
        self.counters = Counters(
            self.store, grace=self.config.retry_after_grace, max_arrivals=self.config.max_arrivals
        )
        self.internal_errors.clear()

    def request_cut_off(self, partial: Request) -> None:
        """Called by the socket server when a connection ends midway through a request (never
        handled); ``partial`` holds what had arrived of it. A hook for tests: no-op here."""

    # -- request handling -----------------------------------------------------------------

    async def handle(self, request: Request) -> Response | Drop:
        """Answer one request, or return ``DROP`` to close the connection unanswered."""
        now = time.monotonic()
        if request.path.startswith("/files/"):
            self.counters.on_request(f"{request.method} /files", now, api=False)
            decision = self.faults.decide(request.method, request.path, now, is_file=True)
            return await self._apply(decision, request, api=False)
        counters = self.counters
        counters.on_request(f"{request.method} {request.path}", now, api=True)
        counters.enter()
        try:
            decision = self.faults.decide(request.method, request.path, now)
            answer = await self._apply(decision, request, api=True)
        finally:
            counters.leave()
        if isinstance(answer, Response):  # so a client on loopback polls at this pace
            answer.headers.append((TIME_SCALE_HEADER, f"{self.config.time_scale:g}"))
        return answer

    async def _apply(self, decision: Decision, request: Request, *, api: bool) -> Response | Drop:
        if decision.kind in ("drop", "status"):
            if api:  # a poll answered by a fault is still a request for that task
                self._count_poll(request)
            if decision.delay:
                await anyio.sleep(decision.delay)
            if decision.kind == "drop":
                self.counters.drops += 1
                return DROP
            response = error_response(decision.status, headers=list(decision.headers))
        else:
            response = await (self._dispatch(request) if api else self._file(request))
            if decision.delay:
                await anyio.sleep(decision.delay)
            if decision.kind == "drop_after":
                self.counters.drops += 1
                return DROP
        retry_after = _retry_after(response) if response.status == 429 else None
        self.counters.on_response(response.status, time.monotonic(), retry_after)
        return response

    def _count_poll(self, request: Request) -> None:
        """Count a result poll that a fault answered, as the handler would have."""
        if not request.path.endswith("/result"):
            return
        task_id: object = next(
            (request.query[k] for k in ("task_id", "taskId", "id") if k in request.query), None
        )
        if task_id is None and request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = None
            if isinstance(body, dict):
                task_id = next((body[k] for k in ("task_id", "taskId", "id") if k in body), None)
        if isinstance(task_id, str) and self.store.get(task_id) is not None:
            self.counters.requests_by_task[task_id] += 1

    def _authorised(self, header: str | None) -> bool:
        key = (header or "").strip()
        if key[:7].lower() == "bearer ":
            key = key[7:].strip()
        if not key:
            return False
        keys = self.config.api_keys
        return keys is None or key in keys

    async def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        handler = ROUTES.get((request.method, path))
        if handler is None:
            return error_response(404, f"Cannot {request.method} {request.path}")
        if not self._authorised(request.headers.get("authorization")):
            return error_response(401)
        body: Any = {}
        if request.body.strip():
            try:
                body = json.loads(request.body)
            except ValueError:
                return error_response(400, "Request body is not valid JSON")
            if not isinstance(body, dict):
                return error_response(400, "Request body must be a JSON object")
        call = Call(self.store, self.counters, request, body)
        try:
            return await handler(call)
        except Exception as exc:
            self.internal_errors.append(exc)
            return error_response(500, f"Internal emulator error: {exc!r}")

    async def _file(self, request: Request) -> Response:
        name = request.path[len("/files/") :]
        stem, _, ext = name.rpartition(".")
        task_id, _, suffix = stem.partition("_")
        # Drawing a file takes milliseconds of CPU: off the event loop, so that the other
        # requests' arrival times (and the 429 counters built on them) stay true.
        task = self.store.get(task_id)
        response = await anyio.to_thread.run_sync(serve_file, task, suffix, ext, time.monotonic())
        if request.method == "HEAD":
            response.headers.append(("content-length", str(len(response.body))))
            response.body = b""
        elif request.method != "GET":
            return error_response(405, "Method not allowed")
        return response
