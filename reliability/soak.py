"""Soak: 10,000 tasks through one poller, watching memory, file descriptors and connections.

``python reliability/soak.py [--quick] [--tasks N]``

One ``generate_many`` run (one ``Poller``) with a journal and ``download_to``, against the
emulator in its own process (time scale 200). A sampler thread reads this process's RSS,
``num_fds()`` and TCP connections (psutil) every second. Reported: the RSS curve, the first
and last plateau (medians of the samples in the second and the last tenth of the run), and
the range of fds and connections. Downloaded files are deleted as results arrive, so the disk
does not grow either. Bounded: the run has a ``deadline`` and the sampler a sample cap.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped,unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import (  # noqa: E402
    AsyncGPTunnel,
    PollerOptions,
    generate_many,
)
from gptunnel_async.poller import AdaptivePolicy  # noqa: E402
from reliability._common import OK_FILE, classify, machine_note, mark, md_table  # noqa: E402
from reliability._emulator import API_KEY, MODEL, EmulatorProcess  # noqa: E402

MB = 1024 * 1024


@dataclass
class Settings:
    tasks: int = 10_000
    time_scale: float = 200.0
    concurrency: int = 32
    max_connections: int = 64
    max_pending: int = 500
    deadline: float = 290.0
    seed: int = 1


@dataclass
class Sample:
    t: float
    rss: int
    fds: int
    conns: int
    finished: int
    other_fds: int  # fds that are not sockets, counted in one look (see ``non_socket_fds``)


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    yielded: int = 0
    fds_before: int = 0
    fds_after: int = 0
    conns_after: int = 0


class Sampler(threading.Thread):
    """Samples this process once a second until stopped (at most ``max_samples``)."""

    def __init__(self, progress: Any, max_samples: int = 3600) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.progress = progress
        self.max_samples = max_samples
        self.samples: list[Sample] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> None:
        self.samples.append(
            Sample(
                t=time.monotonic() - self.t0,
                rss=self.proc.memory_info().rss,
                fds=self.proc.num_fds(),
                conns=len(self.proc.net_connections(kind="tcp")),
                finished=self.progress[0],
                other_fds=non_socket_fds(self.proc),
            )
        )

    def run(self) -> None:
        while len(self.samples) < self.max_samples and not self.stop.wait(1.0):
            self.sample()


def non_socket_fds(proc: psutil.Process) -> int:
    """The fds that are not sockets, from one listing of ``/proc/PID/fd`` on Linux. Taken as
    fds − TCP connections (two looks), a socket opened or closed between the looks (each
    download opens its own connection) counted as a leak; elsewhere that is the fallback."""
    fd_dir = f"/proc/{proc.pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return proc.num_fds() - len(proc.net_connections(kind="tcp"))
    count = 0
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:  # closed since the listing
            continue
        count += not target.startswith("socket:")
    return count


async def soak(s: Settings, url: str, work: Path) -> SoakResult:
    out = SoakResult()
    proc = psutil.Process()
    out.fds_before = proc.num_fds()
    requests = ({"model": MODEL, "prompt": f"soak-{s.seed}-{i:06d}"} for i in range(s.tasks))
    finished = [0]
    sampler = Sampler(finished)
    start = time.monotonic()
    async with AsyncGPTunnel(
        API_KEY,
        base_url=url,
        poll_policy=AdaptivePolicy(clock_scale=s.time_scale),
        max_connections=s.max_connections,
    ) as client:
        sampler.start()
        try:
            async with generate_many(
                client,
                requests,
                PollerOptions(
                    max_concurrency=s.concurrency, deadline=s.deadline, task_timeout=30.0
                ),
                max_pending=s.max_pending,
                journal=work / "journal.sqlite",
                download_to=work / "out",
            ) as run:
                async for r in run:
                    out.outcomes[classify(r)] += 1
                    out.yielded += 1
                    finished[0] = out.yielded
                    if r.path is not None:
                        await anyio.Path(r.path).unlink()
        finally:
            sampler.sample()
            sampler.stop.set()
            await anyio.to_thread.run_sync(sampler.join, 5.0)
    out.wall = time.monotonic() - start
    out.samples = sampler.samples
    out.fds_after = proc.num_fds()
    out.conns_after = len(proc.net_connections(kind="tcp"))
    return out


def _window(samples: list[Sample], lo: float, hi: float) -> list[Sample]:
    n = len(samples)
    part = samples[int(n * lo) : max(int(n * hi), int(n * lo) + 1)]
    return part or samples[-1:]


def analyse(s: Settings, res: SoakResult) -> tuple[str, bool, dict[str, Any]]:
    xs = res.samples
    # "steady" = after the pipeline filled (the first tenth) and before it drains (the last 5 %)
    first = _window(xs, 0.1, 0.2)
    last = _window(xs, 0.85, 0.95)
    steady = _window(xs, 0.1, 0.95)
    rss_first = statistics.median(x.rss for x in first) / MB
    rss_last = statistics.median(x.rss for x in last) / MB
    early = _window(xs, 0.1, 0.5)  # fds and connections: the last plateau vs the first half
    # fds = sockets + everything else; sockets follow the load, and so do open files (one per
    # download in flight): a leak raises the floor of the rest, which must stay flat
    fds_first = min(x.other_fds for x in early)
    fds_last = min(x.other_fds for x in last)
    conn_cap = s.max_connections + s.concurrency  # API pool + at most one download per slot
    conns_first = max(x.conns for x in early)
    conns_last = max(x.conns for x in last)
    growth = rss_last - rss_first
    checks = {
        "every task yielded": res.yielded == s.tasks,
        "all ok": res.outcomes[OK_FILE] == s.tasks,
        "rss steady (last - first plateau < 10 MB)": growth < 10.0,
        "fds steady": fds_last <= fds_first + 2,
        "connections bounded": max(x.conns for x in xs) <= conn_cap,
        "fds back after close": res.fds_after <= res.fds_before + 2,
    }
    fig = [
        ("tasks", s.tasks, ""),
        ("yielded / ok with file", f"{res.yielded} / {res.outcomes[OK_FILE]}",
         mark(checks["every task yielded"] and checks["all ok"])),
        ("wall time (s)", round(res.wall, 1), ""),
        ("throughput (tasks/s)", round(res.yielded / res.wall, 1) if res.wall else 0, ""),
        ("samples (1 s apart)", len(xs), ""),
        ("RSS first plateau (MB, median of 10–20 %)", round(rss_first, 1), ""),
        ("RSS last plateau (MB, median of 85–95 %)", round(rss_last, 1), ""),
        ("RSS growth, last − first (MB)", round(growth, 1), mark(growth < 10.0)),
        ("RSS min / max over the steady part (MB)",
         f"{min(x.rss for x in steady) / MB:.1f} / {max(x.rss for x in steady) / MB:.1f}", ""),
        ("non-socket fds: before (all fds) / floor of first half / floor of last plateau"
         " / after close",
         f"{res.fds_before} / {fds_first} / {fds_last} / {res.fds_after}",
         mark(checks["fds steady"] and checks["fds back after close"])),
        ("fds min / max over the steady part",
         f"{min(x.fds for x in steady)} / {max(x.fds for x in steady)}", ""),
        ("TCP connections: max of first half / max of last plateau / max / after close "
         f"(bound {conn_cap})",
         f"{conns_first} / {conns_last} / {max(x.conns for x in xs)} / {res.conns_after}",
         mark(checks["connections bounded"])),
    ]  # fmt: skip
    step = max(1, len(xs) // 12)
    curve = [
        (f"{x.t:.0f}", x.finished, f"{x.rss / MB:.1f}", x.fds, x.conns)
        for x in xs[::step] + ([xs[-1]] if (len(xs) - 1) % step else [])
    ]
    report = [
        f"### Soak: {s.tasks} tasks through one poller, time scale {s.time_scale:g}",
        "",
        machine_note(),
        "",
        md_table(("figure", "value", "check"), fig),
        "",
        f"RSS curve (one sample per second; one row per {step} samples, plus the last):",
        "",
        md_table(("t (s)", "finished", "RSS (MB)", "fds", "TCP conns"), curve),
    ]
    failed = [k for k, v in checks.items() if not v]
    if failed:
        report += ["", f"**FAILED checks: {', '.join(failed)}**"]
    figures = {
        "checks": checks,
        "rss_first": rss_first,
        "rss_last": rss_last,
        "fds": [fds_first, fds_last],
        "conns": [conns_first, conns_last],
        "outcomes": dict(res.outcomes),
    }
    return "\n".join(report), not failed, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,000 tasks (the CI size)")
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    logging.getLogger("gptunnel_async").setLevel(logging.ERROR)
    s = Settings(tasks=1000, deadline=60.0) if args.quick else Settings()
    if args.tasks:
        s.tasks = args.tasks
    with (
        tempfile.TemporaryDirectory(prefix="gptunnel-soak-") as tmp,
        EmulatorProcess(time_scale=s.time_scale, seed=s.seed) as emu,
    ):
        res = anyio.run(soak, s, emu.url, Path(tmp))
    report, ok, figures = analyse(s, res)
    print(report)
    if args.json:
        print(json.dumps(figures, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
