"""Downloads: whole files or nothing, no key sent to the file host, caps, expiry, unsafe links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import httpx
import pytest

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel, MediaTask
from gptunnel_async.download import (
    Downloader,
    FileTooLargeError,
    LinkExpiredError,
    LinkPolicy,
    UnsafeLinkError,
    extension_for,
)
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

SCALE = 1000.0
KEY = "sk-download-test-KEY-123"


@asynccontextmanager
async def finished_task(
    model: str = "google-imagen-3",
) -> AsyncIterator[tuple[Emulator, AsyncGPTunnel, MediaTask]]:
    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=2))
    emu.config.durations[model] = DurationDist.fixed(5.0)
    async with (
        serve(emu) as server,
        AsyncGPTunnel(
            KEY, base_url=server.url, poll_policy=AdaptivePolicy(clock_scale=SCALE)
        ) as client,
    ):
        task = await client.media.generate(model=model, prompt="a file")
        yield emu, client, task


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.anyio
async def test_download_to_a_folder_names_the_file_after_the_task(tmp_path: Path) -> None:
    sent_headers: list[httpx.Headers] = []
    async with finished_task() as (_, client, task):

        async def record(request: httpx.Request) -> None:
            sent_headers.append(request.headers)

        client.downloader._http.event_hooks["request"].append(record)
        path = await task.download(tmp_path)
    assert path == tmp_path / f"{task.id}.webp"
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert leftovers(tmp_path) == [path.name]  # no temporary file left behind
    assert sent_headers and all("authorization" not in h for h in sent_headers)
    assert all(KEY not in str(v) for h in sent_headers for v in h.values())


@pytest.mark.anyio
async def test_download_to_a_file_path_takes_the_extension_from_the_content_type(
    tmp_path: Path,
) -> None:
    async with finished_task("glabs-veo-3-1-fast") as (_, client, task):
        path = await client.download(task, tmp_path / "nested" / "clip")
        data = await client.download_bytes(task)
    assert path == tmp_path / "nested" / "clip.mp4"
    assert path.read_bytes() == data
    assert data[4:8] == b"ftyp"


@pytest.mark.anyio
async def test_an_expired_link_is_refused_before_any_request(tmp_path: Path) -> None:
    async with finished_task() as (emu, client, task):
        old = task.model_copy(update={"created_at": datetime.now(timezone.utc) - timedelta(days=3)})
        before = emu.counters.requests_total
        with pytest.raises(LinkExpiredError, match="expired"):
            await client.download(old, tmp_path)
        assert emu.counters.requests_total == before
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_a_link_the_host_says_expired_writes_nothing(tmp_path: Path) -> None:
    async with finished_task() as (emu, client, task):
        emu.expire_links(task.id)
        with pytest.raises(LinkExpiredError):
            await client.download(task, tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_the_size_cap_writes_nothing(tmp_path: Path) -> None:
    async with finished_task("glabs-veo-3-1-fast") as (_, client, task):
        with pytest.raises(FileTooLargeError):
            await client.download(task, tmp_path, max_bytes=16)
        with pytest.raises(FileTooLargeError):
            await client.download_bytes(task, max_bytes=16)
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_transient_file_host_errors_are_retried(tmp_path: Path) -> None:
    async with finished_task() as (emu, client, task):
        emu.faults.script("GET /files/*", [503, "drop", (429, {"Retry-After": "0"}), "pass"])
        path = await client.download(task, tmp_path)
        assert emu.faults.pending_script() == 0
    assert path.stat().st_size > 0
    assert leftovers(tmp_path) == [path.name]


@pytest.mark.anyio
async def test_a_cancelled_download_leaves_no_file(tmp_path: Path) -> None:
    async with finished_task() as (emu, client, task):
        emu.faults.script("GET /files/*", [("delay", 5.0)])
        with anyio.move_on_after(0.2):
            await client.download(task, tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_a_redirect_to_a_private_address_is_refused(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://10.0.0.7/steal"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        downloader = Downloader(http_client=http)
        with pytest.raises(UnsafeLinkError, match="private"):
            await downloader.fetch_to(
                "https://files.example.com/a.webp", tmp_path, task_id="0123456789abcdef01234567"
            )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "policy", "ok"),
    [
        ("https://storage.yandexcloud.net/x/a.webp", LinkPolicy(), True),
        ("http://storage.yandexcloud.net/x/a.webp", LinkPolicy(), False),
        ("http://storage.yandexcloud.net/x/a.webp", LinkPolicy(allow_insecure=True), True),
        ("https://192.168.1.10/a.webp", LinkPolicy(allow_insecure=True), False),
        ("https://169.254.169.254/latest/meta-data", LinkPolicy(), False),
        ("https://[::1]/a.webp", LinkPolicy(), False),
        ("http://127.0.0.1:8000/files/a.webp", LinkPolicy(allow_loopback=True), True),
        ("file:///etc/passwd", LinkPolicy(allow_insecure=True), False),
        ("not a url at all", LinkPolicy(), False),
    ],
)
def test_link_policy(url: str, policy: LinkPolicy, ok: bool) -> None:
    if ok:
        policy.check(url)
    else:
        with pytest.raises(UnsafeLinkError):
            policy.check(url)


@pytest.mark.anyio
async def test_a_task_id_cannot_escape_the_output_folder(tmp_path: Path) -> None:
    async with finished_task() as (_, client, task):
        evil = task.model_copy(update={"id": "../../escape"})
        with pytest.raises(ValueError, match="task id"):
            await client.download(evil, tmp_path)
    assert leftovers(tmp_path) == []


def test_extension_for() -> None:
    assert extension_for("image/png", "https://h/x") == ".png"
    assert extension_for("video/mp4; codecs=avc1", "https://h/x") == ".mp4"
    assert extension_for(None, "https://h/x/file.webp?sig=1") == ".webp"
    assert extension_for("application/octet-stream", "https://h/x") == ".bin"


@pytest.mark.anyio
async def test_a_trailing_slash_means_a_folder_even_before_it_exists(tmp_path: Path) -> None:
    async with finished_task() as (_, client, task):
        first = await client.download(task, f"{tmp_path}/new-folder/")
    assert first == tmp_path / "new-folder" / f"{task.id}.webp"
