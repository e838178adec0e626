"""``examples/fastapi_workers.py`` for real: uvicorn worker processes sharing one key's limits.

The launcher is started as a user would start it, with several workers, against an emulator in
a process of its own (its control route sets latency and 429 bursts and reads its counters).
The same load runs twice:

- **shared** (``--limits`` on a test database): the emulator never sees more requests in flight
  than the shared bound, nor more in any second than the shared budget, although each worker
  alone allows more; a 429 answered to one worker pauses every worker (each says so), and no
  request arrives later in the Retry-After window than the pause takes to spread;
- **alone** (no ``--limits``: each worker with its own bound, as without this feature): the
  same load exceeds that bound and budget at the emulator, so it is the sharing that holds them.

Each run ends with SIGINT to the launcher: it exits 0, every worker stops (and gives its leases
back: no member is left in the database) and no process is left behind. A second test runs the
launcher's own ``--offline`` mode (its own emulator process) end to end.

Upper bounds only for the shared run; the contrast's exceedances are far above them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability._emulator import API_KEY, EmulatorProcess  # noqa: E402

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("psycopg")

pytestmark = pytest.mark.slow
pytest_plugins = ["pg_support"]  # pg_dsn, pg_schema

LAUNCHER = ROOT / "examples" / "fastapi_workers.py"
WORKERS = 3
BOUND = 3  # the shared concurrency bound
OWN = 8  # each worker's own bound (max_connections): alone, each would allow this many
RATE = 12.0  # the shared budget, requests per second
GENERATIONS = 24
LATENCY = 0.4  # seconds the emulator takes per answer while the streams poll
RETRY_AFTER = 1.5
SPREAD = 0.5  # a 429 reaches every worker within this (a round trip and a NOTIFY, loaded box)
STARTUP = 90.0  # seconds for every worker to start (2 cores, the suite running beside)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Launcher:
    """``python examples/fastapi_workers.py ...`` in a child process, its output collected."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, str(LAUNCHER), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_started(self, workers: int) -> None:
        """Until every worker has run its startup (its client and shared gate are open)."""
        deadline = time.monotonic() + STARTUP
        while sum("Application startup complete" in line for line in self.lines) < workers:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the workers did not start:\n{self.output}")
            time.sleep(0.05)

    def processes(self) -> list[Any]:
        """The launcher and everything it started (workers, an emulator, helpers)."""
        import psutil

        me = psutil.Process(self.proc.pid)
        return [me, *me.children(recursive=True)]

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would: the launcher's exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(60)
        finally:
            if self.proc.poll() is None:  # only the process we started, by its handle
                self.proc.kill()
                self.proc.wait(10)
            self._reader.join(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return code

    def worker_reports(self) -> list[dict[str, str]]:
        """What each worker printed when it stopped (``worker stops: pid=... requests=...``)."""
        return [
            dict(re.findall(r"(\w+)=(\S+)", line.split(":", 1)[1]))
            for line in self.lines
            if line.startswith("worker stops:")
        ]


@contextmanager
def launched(args: list[str], env: dict[str, str], workers: int) -> Iterator[Launcher]:
    """Start the launcher, wait for its workers; at the end stop it and check what is left."""
    launcher = Launcher(args, env)
    try:
        launcher.wait_started(workers)
        started = launcher.processes()
        yield launcher
    finally:
        code = launcher.stop()
    assert code == 0, launcher.output
    import psutil

    # multiprocessing's resource tracker ends a moment after the launcher (when its pipe closes)
    _, alive = psutil.wait_procs(started, timeout=10)
    left = []
    for p in alive:
        with suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append((p.pid, " ".join(p.cmdline())[:120]))
    assert not left, f"processes left behind: {left}\n{launcher.output}"
    assert len(started) >= 1 + workers  # the workers were really separate processes


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


async def _pinned_connections(url: str, stack: AsyncExitStack) -> list[httpx.AsyncClient]:
    """GENERATIONS kept-alive connections, as many to each worker (a client of one connection
    each), opened one at a time until the workers' shares are even.

    uvicorn's workers accept from one shared socket: a burst of new connections may all go to
    whichever worker wakes first, and the load would not be spread at all. Connections opened
    one by one do go round, and a kept-alive connection stays with its worker."""
    share = GENERATIONS // WORKERS
    pool: dict[int, list[httpx.AsyncClient]] = {}
    with anyio.move_on_after(STARTUP) as scope:
        while sum(len(v) for v in pool.values()) < share * WORKERS:
            http = httpx.AsyncClient(
                base_url=url, timeout=120, limits=httpx.Limits(max_connections=1)
            )
            try:
                r = await http.get("/limits")
            except BaseException:
                await http.aclose()
                raise
            assert r.status_code == 200, r.text
            mine = pool.setdefault(int(r.json()["pid"]), [])
            if len(pool) > WORKERS:
                raise AssertionError(f"more workers than {WORKERS} answer: {sorted(pool)}")
            if len(mine) < share:
                mine.append(http)
                stack.push_async_callback(http.aclose)
            else:
                await http.aclose()
    if scope.cancelled_caught:
        shares = {pid: len(v) for pid, v in pool.items()}
        raise AssertionError(f"no even spread of connections in {STARTUP:g} s: {shares}")
    return [worker[n] for n in range(share) for worker in pool.values()]  # round the workers


async def _drive(url: str, emu: EmulatorProcess) -> None:
    """The load: every generation created at once (the budget binds), then every event
    stream at once under a slow API (the bound binds), with a 429 burst in the middle;
    each generation on its own connection, as many on each worker."""
    async with AsyncExitStack() as stack:
        pool = await _pinned_connections(url, stack)
        ids: dict[int, str] = {}

        async def post(n: int) -> None:
            prompt = {"prompt": f"a fox, number {n}"}
            r = await pool[n % len(pool)].post("/generations", json=prompt)
            assert r.status_code == 202, r.text
            ids[n] = r.json()["id"]

        async with anyio.create_task_group() as tg:
            for n in range(GENERATIONS):
                tg.start_soon(post, n)
        await anyio.to_thread.run_sync(lambda: emu.control("faults", latency=LATENCY))

        finals: list[str] = []

        async def stream(n: int) -> None:
            r = await pool[n % len(pool)].get(f"/generations/{ids[n]}/events")
            assert r.status_code == 200, r.text
            last = [b for b in r.text.split("\n\n") if b.strip()][-1]
            finals.append(last.splitlines()[0].removeprefix("event: "))

        async with anyio.create_task_group() as tg:
            for n in range(GENERATIONS):
                tg.start_soon(stream, n)
            await anyio.sleep(1.0)  # the streams are polling: every answer 429 for a moment
            await anyio.to_thread.run_sync(
                lambda: emu.control("faults", burst_429=[0.4, RETRY_AFTER])
            )
        assert finals == ["done"] * GENERATIONS


def _run_load(launcher: Launcher, emu: EmulatorProcess) -> dict[str, Any]:
    emu.control("reset")
    anyio.run(_drive, launcher.url, emu, backend="asyncio")
    counters: dict[str, Any] = emu.control("counters")
    return counters


def _db(dsn: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def test_workers_share_one_bound_budget_and_pause(pg_dsn: str, pg_schema: str) -> None:
    with EmulatorProcess(time_scale=20.0, seed=3) as emu:
        env = _env(GPTUNNEL_API_KEY=API_KEY, GPTUNNEL_BASE_URL=emu.url)
        common = ["--workers", str(WORKERS), "--max-connections", str(OWN)]
        shared_args = [
            *common,
            *("--limits", pg_dsn, "--schema", pg_schema),
            *("--max-concurrency", str(BOUND), "--rps", str(RATE)),
        ]
        members = f"SELECT count(*) FROM {pg_schema}.limit_members"
        with launched(shared_args, env, WORKERS) as launcher:
            assert _db(pg_dsn, members) == WORKERS  # every worker joined the shared limits
            shared = _run_load(launcher, emu)
            stored = _db(
                pg_dsn,
                f"SELECT string_agg(t, ' ') FROM (SELECT l::text AS t FROM {pg_schema}.limits l"
                f" UNION ALL SELECT m::text FROM {pg_schema}.limit_members m) x",
            )
        reports = launcher.worker_reports()
        assert _db(pg_dsn, members) == 0  # each worker gave its leases back as it stopped

        with launched(common, env, WORKERS) as launcher:
            alone = _run_load(launcher, emu)

    summary = json.dumps({"shared": shared, "alone": alone, "workers": reports}, default=str)
    print(summary)
    # The work was spread over the worker processes, and each learned of the 429 pause
    # (through the database), whether or not a 429 was answered to it.
    assert len(reports) == WORKERS, launcher.output
    assert all(int(r["requests"]) > 0 for r in reports), summary
    assert all(int(r["pauses"]) >= 1 for r in reports), summary
    assert all(r["members"] == str(WORKERS) for r in reports), summary
    assert API_KEY not in (stored or "")

    # Shared: the emulator saw one bound, one budget and one pause.
    assert shared["creates_total"] == GENERATIONS
    assert shared["max_in_flight"] <= BOUND, summary
    assert shared["max_requests_in_window_1s"] <= 1.05 * RATE, summary
    assert shared["sent_429"] >= 1, summary  # the burst met requests
    assert all(lag <= SPREAD for lag in shared["violation_lags"]), summary

    # Alone: the same load goes past that bound and budget (each worker allows OWN at once).
    assert alone["creates_total"] == GENERATIONS
    assert alone["max_in_flight"] > BOUND, summary
    assert alone["max_requests_in_window_1s"] > 1.05 * RATE, summary
    assert alone["retry_after_violations"] > 0, summary  # each paused only for its own 429s


def test_offline_launcher_serves_and_stops_cleanly(pg_dsn: str, pg_schema: str) -> None:
    """``fastapi_workers.py --offline --limits ...``: its own emulator, two workers sharing."""
    args = ["--offline", "--workers", "2", "--limits", pg_dsn, "--schema", pg_schema]
    args += ["--max-concurrency", "2", "--rps", "20", "--time-scale", "200"]
    with launched(args, _env(), 2) as launcher:
        with httpx.Client(base_url=launcher.url, timeout=60) as http:
            created = http.post("/generations", json={"prompt": "a red fox"})
            assert created.status_code == 202, created.text
            events = http.get(created.json()["events"]).text
            assert "event: done" in events
            report = http.get("/limits").json()
        assert report["shared"] is True
        assert report["members"] == 2
    assert "shared limits: SharedLimits(" in launcher.output
    assert len(launcher.worker_reports()) == 2


def test_launcher_refuses_an_unreachable_database() -> None:
    """PostgreSQL does not answer: one line before any worker starts (no key needed)."""
    dsn = "postgresql://postgres:pw-never-shown@127.0.0.1:1/nowhere"
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--offline", "--workers", "2", "--limits", dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    error = done.stderr.strip()
    assert error.startswith("error: shared limits: PostgreSQL at 127.0.0.1:1/nowhere")
    assert "\n" not in error
    assert "pw-never-shown" not in done.stdout + done.stderr
    assert "Started server process" not in done.stdout + done.stderr
