"""The FastAPI example (``fastapi_app.py``) served by several worker processes that share one
API key's limits through PostgreSQL.

Each uvicorn worker is a process with its own ``AsyncGPTunnel``. On their own, 4 workers with 8
connections each may have 32 requests in flight on one key, each has its own rate budget, and
each pauses only for the 429s it saw itself. With ``GPTUNNEL_LIMITS`` set, every worker's client
gets ``limits=SharedLimits(...)``: one concurrency bound, one requests-per-second budget and one
429 pause for all of them, and for any other process using the same key and database (a batch,
a bot). The database stores a fingerprint of the key, never the key.

Offline (one emulator process serves every worker; no key, no network):

    python examples/fastapi_workers.py --offline --workers 4 \\
        --limits postgresql://postgres@127.0.0.1/postgres --max-concurrency 4 --rps 10

Against the real API, with uvicorn itself (the settings come from the environment):

    GPTUNNEL_API_KEY=... GPTUNNEL_LIMITS=postgresql://user@db/app GPTUNNEL_MAX_CONCURRENCY=8 \\
        GPTUNNEL_RPS=20 uvicorn fastapi_workers:app --app-dir examples --workers 4

The endpoints are those of ``fastapi_app.py`` (``POST /generations``, ``GET
/generations/{id}/events``; any worker can stream any task), plus ``GET /limits``: the answering
worker's pid and what its client's shared gate saw. Each worker prints the same when it stops.

Environment: ``GPTUNNEL_API_KEY``, ``GPTUNNEL_BASE_URL``; ``GPTUNNEL_LIMITS`` (a PostgreSQL URL;
unset: each worker alone), ``GPTUNNEL_MAX_CONCURRENCY`` and ``GPTUNNEL_RPS`` (the shared bound and
budget), ``GPTUNNEL_LIMITS_SCHEMA`` (the tables' schema, default ``gptunnel``) and
``GPTUNNEL_MAX_CONNECTIONS`` (each worker's own bound).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # fastapi_app.py sits beside this file
    sys.path.insert(0, str(HERE))

from fastapi_app import Settings, create_app  # noqa: E402

from gptunnel_async import AsyncGPTunnel, CoordinatorUnavailableError, SharedLimits  # noqa: E402
from gptunnel_async.testing import EmulatorProcess  # noqa: E402


def _number(name: str, kind: type[int] | type[float]) -> Any:
    value = os.environ.get(name)
    try:
        return None if value in (None, "") else kind(value)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {value!r}") from None


def settings_from_env() -> Settings:
    """The app's settings from the environment (the same in every worker)."""
    dsn = os.environ.get("GPTUNNEL_LIMITS")
    limits = None
    if dsn:
        limits = SharedLimits(
            dsn,
            max_concurrency=_number("GPTUNNEL_MAX_CONCURRENCY", int),
            requests_per_second=_number("GPTUNNEL_RPS", float),
            schema=os.environ.get("GPTUNNEL_LIMITS_SCHEMA") or "gptunnel",
        )
    return Settings(max_connections=_number("GPTUNNEL_MAX_CONNECTIONS", int), limits=limits)


def gate_report(client: AsyncGPTunnel) -> dict[str, Any]:
    """This worker's pid and what its shared gate saw (``shared: false`` without limits)."""
    gate: Any = client.shared_gate
    report: dict[str, Any] = {"pid": os.getpid(), "shared": gate is not None}
    if gate is not None:
        report.update(
            members=gate.members,  # processes sharing the limits, as last seen
            requests=gate.stats.requests,
            in_flight=gate.in_flight,
            max_in_flight=gate.stats.max_in_flight,  # in this worker
            pauses=gate.stats.pauses,  # 429 pauses, its own and the other workers'
        )
    return report


def create_worker_app(settings: Settings) -> FastAPI:
    """``fastapi_app``'s app, with ``GET /limits`` and a report when the worker stops."""
    app = create_app(settings)
    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serve(app):
            yield
            report = gate_report(app.state.gptunnel)
            print("worker stops:", " ".join(f"{k}={v}" for k, v in report.items()), flush=True)

    app.router.lifespan_context = lifespan

    @app.get("/limits")
    async def limits(request: Request) -> dict[str, Any]:
        return gate_report(request.app.state.gptunnel)

    return app


#: What ``uvicorn fastapi_workers:app --workers N`` serves in each worker.
app = create_worker_app(settings_from_env())


async def check_database(limits: SharedLimits) -> None:
    """Open the shared limits once before any worker starts: a database that does not answer
    is one clear line here, not a failed start in every worker."""
    async with AsyncGPTunnel(limits=limits):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument(
        "--limits",
        metavar="POSTGRESQL_URL",
        default=os.environ.get("GPTUNNEL_LIMITS"),
        help="share the limits through this database (default: $GPTUNNEL_LIMITS; none: "
        "each worker alone)",
    )
    parser.add_argument("--max-concurrency", type=int, help="shared: requests in flight, at most")
    parser.add_argument("--rps", type=float, help="shared: requests per second, at most")
    parser.add_argument("--schema", help="shared: the tables' schema (default gptunnel)")
    parser.add_argument("--max-connections", type=int, help="each worker's own bound")
    parser.add_argument("--offline", action="store_true", help="serve one emulator to all")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("GPTUNNEL_EXAMPLE_TIME_SCALE", "20")),
        help="offline: how much faster than real time the emulator runs (default 20)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("serving needs uvicorn: pip install uvicorn") from None

    # The workers read their settings from the environment they inherit.
    for name, value in (
        ("GPTUNNEL_LIMITS", args.limits),
        ("GPTUNNEL_MAX_CONCURRENCY", args.max_concurrency),
        ("GPTUNNEL_RPS", args.rps),
        ("GPTUNNEL_LIMITS_SCHEMA", args.schema),
        ("GPTUNNEL_MAX_CONNECTIONS", args.max_connections),
    ):
        if value is not None:
            os.environ[name] = str(value)
    offline = args.offline or not os.environ.get("GPTUNNEL_API_KEY")
    with ExitStack() as stack:
        if offline:
            # One emulator for every worker (each worker's own would be a different "API").
            emulator = stack.enter_context(EmulatorProcess(["--time-scale", str(args.time_scale)]))
            os.environ["GPTUNNEL_BASE_URL"] = emulator.url
            os.environ["GPTUNNEL_API_KEY"] = "offline"
        settings = settings_from_env()
        if settings.limits is not None:
            try:
                anyio.run(check_database, settings.limits)
            except CoordinatorUnavailableError as exc:
                raise SystemExit(f"error: {exc}") from None
        shared = settings.limits or "none: each worker alone"
        print(f"{args.workers} workers; API {os.environ.get('GPTUNNEL_BASE_URL') or 'GPTunnel'}")
        print(f"shared limits: {shared}", flush=True)
        uvicorn.run(
            "fastapi_workers:app",
            app_dir=str(HERE),
            host=args.host,
            port=args.port,
            workers=args.workers,
            timeout_graceful_shutdown=5,  # event streams still open when asked to stop
        )


if __name__ == "__main__":
    main()
