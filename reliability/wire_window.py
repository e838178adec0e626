"""The write-ahead's residual window, measured: from the ``sending`` commit to the first byte.

``python reliability/wire_window.py [--quick] [--creates N]``

A kill can still land after a create's ``sending`` row is durable and before its first byte
leaves: that create is then reported "unknown" although it never left. This measures how long
that window is. ``N`` creates go one after another through the SDK's own request path
(``client.request(..., kind=CREATE, write_ahead=...)``, the write-ahead being the batch's:
``SQLiteJournal.mark_on_wire``), against the campaigns' emulator in its own process on
loopback, which notes the monotonic time of each request's first byte (one clock for every
process on the machine). For each create: first byte at the server minus the moment
``mark_on_wire`` returned to the request path (its commit is the last thing it does). This is
an upper bound: it includes the server's own delay in reading a byte already sent.

Baseline in the same run: the same interval for the journal in ``durable=True`` mode, whose
mark still goes through a worker thread (the window there also holds the hop back to the
event loop, which this figure does not see: it starts when the hop is over).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import AsyncGPTunnel  # noqa: E402
from gptunnel_async._retry import RequestKind  # noqa: E402
from gptunnel_async.stores import SQLiteJournal  # noqa: E402
from reliability._common import machine_note, md_table  # noqa: E402
from reliability._emulator import API_KEY, MODEL, EmulatorProcess  # noqa: E402


class _Wire:
    """The batch's write-ahead (``_JournalWire``), noting when the mark returned and when the
    next socket write began (asyncio's transport, wrapped below)."""

    armed: _Wire | None = None

    def __init__(self, journal: SQLiteJournal, key: str) -> None:
        self.journal, self.key = journal, key
        self.marked = self.written = 0.0

    async def on_wire(self) -> None:
        await self.journal.mark_on_wire(self.key)
        self.marked = time.monotonic()
        _Wire.armed = self

    async def not_sent(self) -> None:
        await self.journal.release(self.key)


async def _run(url: str, journal: SQLiteJournal, tag: str, n: int) -> dict[str, _Wire]:
    marks: dict[str, _Wire] = {}
    async with AsyncGPTunnel(API_KEY, base_url=url) as client:
        for i in range(n):
            body = {"model": MODEL, "prompt": f"window-{tag}-{i}"}
            key = f"{tag}#{i}"
            assert (await journal.claim(key, i, body)).won
            wire = _Wire(journal, key)
            await client.request(
                "POST", "/v1/media/create", json=body, kind=RequestKind.CREATE, write_ahead=wire
            )
            marks[body["prompt"]] = wire
    return marks


def _note_writes() -> None:
    """Note the time of the first socket write after each mark (the create's headers)."""
    from asyncio import selector_events

    cls: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009
    write = cls.write

    def noted(self: Any, data: Any) -> None:
        wire, _Wire.armed = _Wire.armed, None
        if wire is not None:
            wire.written = time.monotonic()
        write(self, data)

    cls.write = noted


def _row(name: str, gaps: list[float]) -> tuple[Any, ...]:
    us = sorted(g * 1e6 for g in gaps)
    p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
    return (name, len(us), f"{statistics.median(us):.0f}", f"{p99:.0f}", f"{us[-1]:.0f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="50 creates per mode")
    p.add_argument("--creates", type=int, default=None)
    args = p.parse_args(argv)
    n = args.creates or (50 if args.quick else 500)
    _note_writes()
    rows = []
    with EmulatorProcess(time_scale=200.0) as emu, tempfile.TemporaryDirectory() as tmp:
        emu.control("reset", seed=1)
        for tag, durable in (("loop", False), ("durable", True)):

            async def go(durable: bool = durable, tag: str = tag) -> dict[str, _Wire]:
                journal = SQLiteJournal(Path(tmp) / f"{tag}.sqlite", durable=durable)
                try:
                    await journal.acquire()
                    return await _run(emu.url, journal, tag, n)
                finally:
                    await journal.aclose()

            marks = anyio.run(go)
            arrived = {e["prompt"]: e["arrived"] for e in emu.control("create_log")}
            name = "commit on the event loop (default)" if not durable else "durable=True (thread)"
            rows.append(
                _row(f"{name}: to the socket write", [w.written - w.marked for w in marks.values()])
            )
            rows.append(
                _row(
                    f"{name}: to the first byte at the server",
                    [arrived[p] - w.marked for p, w in marks.items()],
                )
            )
    print(f"### Write-ahead window: from the `sending` mark's return, {n} creates\n")
    print(machine_note() + "\n")
    print(md_table(("journal mark: interval", "creates", "median µs", "p99 µs", "max µs"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
