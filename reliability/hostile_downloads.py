"""Hostile file hosts, measured: a stacked gzip bomb, a trickling host, names that hide loopback.

``python reliability/hostile_downloads.py [--quick]``

Each attack runs against the project's hostile server on loopback (``tests/hostile_server.py``)
and is compared, in the same run, with a baseline that lacks the defence:

- **bomb**: ``Content-Encoding: gzip, gzip`` over gzip(gzip(N zeros)), fetched with
  ``max_bytes=1_000_000``. SDK: ``client.download_bytes`` (the bounded inflater). Baseline: the
  same response read with httpx's own ``aiter_bytes()`` and the same cap check (how downloads
  read before). Peak traced memory (tracemalloc) and wall time of each.
- **trickle**: a file sent one byte every ``pause`` seconds, with a 2 s read timeout that never
  fires. SDK: ``DownloadDeadline(grace=2)``. Baseline: no total deadline. Bytes received and
  wall time of each.
- **names**: every name this machine resolves to loopback (aliases and ``/etc/hosts``), fetched
  by a downloader whose API is not on loopback. Outcome per name and connections the server saw.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hostile_server import hostile_server  # noqa: E402
from scripted_answers import Answer, port_of, scripted, trickle  # noqa: E402
from scripted_answers import gzip_layers as layered  # noqa: E402

from gptunnel_async import AsyncGPTunnel, MediaTask, RetryPolicy  # noqa: E402
from gptunnel_async._errors import GPTunnelError  # noqa: E402
from gptunnel_async.download import DownloadDeadline, Downloader, LinkPolicy  # noqa: E402
from reliability._common import md_table  # noqa: E402

CAP = 1_000_000
TASK_ID = "0123456789abcdef01234567"


def _task(url: str) -> MediaTask:
    return MediaTask.model_validate({"id": TASK_ID, "status": "done", "url": url})


async def _measure(call: Any) -> tuple[str, float, float]:
    """(outcome, peak MB, seconds) of awaiting ``call()``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        await call()
        outcome = "completed"
    except GPTunnelError as exc:
        outcome = type(exc).__name__
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak / 1e6, time.perf_counter() - started


async def bomb(size: int) -> list[list[Any]]:
    body = layered(size, 2)
    answer = Answer(headers=[("content-encoding", "gzip, gzip")], body=body)
    rows = []
    async with hostile_server(scripted(lambda _: answer)) as server:
        url = f"{server.url}/bomb.webp"
        async with AsyncGPTunnel("sk-reliability-hostile", base_url=server.url) as client:
            outcome, peak, secs = await _measure(
                lambda: client.download_bytes(_task(url), max_bytes=CAP)
            )
            rows.append(["SDK (bounded inflater)", outcome, f"{peak:.1f}", f"{secs:.2f}"])

        async def old_way() -> None:  # httpx inflates each chunk in full before the check
            size_seen = 0
            async with httpx.AsyncClient() as http, http.stream("GET", url) as response:
                async for chunk in response.aiter_bytes():
                    size_seen += len(chunk)
                    if size_seen > CAP:
                        raise GPTunnelError("over the cap")

        outcome, base_peak, base_secs = await _measure(old_way)
        rows.append(["baseline (httpx aiter_bytes)", "over the cap", f"{base_peak:.1f}",
                     f"{base_secs:.2f}"])  # fmt: skip
    rows.append(["ratio baseline / SDK", "", f"{base_peak / max(peak, 1e-9):.0f}x", ""])
    rows.insert(0, [f"wire bytes: {len(body)}; inflated: {size} (cap {CAP})", "", "", ""])
    return rows


async def trickling(size: int, pause: float) -> list[list[Any]]:
    data = b"RIFF\x00\x00\x00\x00WEBP" + b"\x00" * (size - 12)
    answer = Answer(headers=[("content-type", "image/webp")], body=trickle(data), pause=pause)
    rows = []
    for label, deadline in (
        ("SDK, DownloadDeadline(grace=2)", DownloadDeadline(grace=2.0)),
        ("baseline: no total deadline", DownloadDeadline(grace=1e9)),
    ):
        host = scripted(lambda _: answer)
        async with (
            hostile_server(host) as server,
            AsyncGPTunnel("sk-reliability-hostile", base_url=server.url, timeout=2.0) as client,
        ):
            started = time.perf_counter()
            try:
                await client.download_bytes(_task(f"{server.url}/slow"), deadline=deadline)
                outcome = "completed"
            except GPTunnelError as exc:
                outcome = type(exc).__name__
            secs = time.perf_counter() - started
        rows.append([label, outcome, f"{host.sent} of {size}", f"{secs:.1f}"])
    return rows


def loopback_names() -> list[str]:
    names = ["localhost.localdomain", "ip6-localhost", "ip6-loopback", socket.gethostname()]
    hosts = Path("/etc/hosts")
    if hosts.exists():
        for line in hosts.read_text().splitlines():
            names += line.split("#", 1)[0].split()[1:]
    found = []
    for name in dict.fromkeys(names):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if name != "localhost" and all(str(i[4][0]).startswith(("127.", "::1")) for i in infos):
            found.append(name)
    return found


async def names() -> list[list[Any]]:
    rows = []
    async with hostile_server(scripted(lambda _: Answer(body=b"x"))) as server:
        downloader = Downloader(
            link_policy=LinkPolicy(allow_insecure=True), retry_policy=RetryPolicy(max_retries=0)
        )
        try:
            for name in loopback_names():
                try:
                    await downloader.fetch_bytes(f"http://{name}:{port_of(server)}/f")
                    outcome = "FETCHED"
                except GPTunnelError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                rows.append([name, outcome])
        finally:
            await downloader.aclose()
        rows.append(["connections the server saw", str(len(server.requests))])
    return rows


async def main(quick: bool) -> None:
    size = 64 * 1024 * 1024 if quick else 256 * 1024 * 1024
    print(f"### Hostile file hosts ({'quick' if quick else 'full'})\n")
    print(md_table(["stacked gzip bomb", "outcome", "peak MB", "s"], await bomb(size)))
    print()
    size, pause = (24, 0.25) if quick else (40, 0.25)
    print(md_table(["trickle, 1 byte / 0.25 s", "outcome", "bytes sent", "s"],
                   await trickling(size, pause)))  # fmt: skip
    print()
    print(md_table(["name resolving to loopback", "outcome"], await names()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    anyio.run(main, parser.parse_args().quick)
