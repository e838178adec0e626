"""A faithful, configurable fake of the GPTunnel API, for tests and benchmarks.

In-process::

    emu = Emulator(EmulatorConfig(time_scale=1000))
    client = httpx.AsyncClient(transport=EmulatorTransport(emu), base_url="http://emulator")

Over a loopback socket::

    async with serve(emu) as server:
        ...  # server.url

    with run_in_thread(emu) as url:  # no event loop needed
        ...

In a child process (its CPU apart from yours, its state alive if your process dies)::

    with EmulatorProcess(["--time-scale", "50"]) as emu:
        ...  # emu.url

Or from a shell: ``python -m gptunnel_async.testing --port 8787 --time-scale 60``.
"""

from __future__ import annotations

from ._app import Emulator
from ._config import DurationDist, EmulatorConfig
from ._counters import Counters
from ._faults import Faults, Outcome
from ._http import Drop, Request, Response
from ._offline import OFFLINE_API_KEY, offline_client
from ._process import EmulatorProcess, serve_forever
from ._server import EmulatorServer, run_in_thread, serve
from ._state import Task
from ._transport import EmulatorTransport

__all__ = [
    "OFFLINE_API_KEY",
    "Counters",
    "Drop",
    "DurationDist",
    "Emulator",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "EmulatorTransport",
    "Faults",
    "Outcome",
    "Request",
    "Response",
    "Task",
    "offline_client",
    "run_in_thread",
    "serve",
    "serve_forever",
]
