"""Result files: valid bytes, right headers, no auth, expiry as an S3-style 403."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, EmulatorTransport, serve

pytestmark = pytest.mark.anyio
Poll = Callable[..., Awaitable[dict[str, Any]]]  # the `poll` fixture from conftest


def _png_pixels(data: bytes) -> bytes:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        assert zlib.crc32(kind + chunk) == crc
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    return zlib.decompress(idat)


@pytest.mark.parametrize(
    ("model", "ctype", "magic"),
    [
        ("yandex-art", "image/webp", (0, b"RIFF")),
        ("gpt-image-1-high", "image/png", (0, b"\x89PNG")),
        ("glabs-veo-3-1-fast", "video/mp4", (4, b"ftyp")),
    ],
)
async def test_download_without_auth(
    client: httpx.AsyncClient, poll: Poll, model: str, ctype: str, magic: tuple[int, bytes]
) -> None:
    tid = (await client.post("/v1/media/create", json={"model": model, "prompt": "x"})).json()["id"]
    url = (await poll("/v1/media/result", "task_id", tid))["url"]
    async with httpx.AsyncClient() as bare:  # no Authorization at all
        r = await bare.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    assert int(r.headers["content-length"]) == len(r.content)
    offset, sig = magic
    assert r.content[offset : offset + len(sig)] == sig
    if ctype == "image/png":
        assert len(_png_pixels(r.content)) == 96 * (1 + 96 * 3)
    if ctype == "image/webp":
        assert r.content[8:16] == b"WEBPVP8L"
    if ctype == "video/mp4":
        assert b"moov" in r.content
        assert b"mvhd" in r.content
        assert b"mdat" in r.content


async def test_mp3_for_suno(client: httpx.AsyncClient, poll: Poll) -> None:
    tid = (await client.post("/v1/media/create", json={"model": "suno", "prompt": "x"})).json()[
        "id"
    ]
    data = await poll("/v1/media/result", "task_id", tid)
    r = await client.get(data["result"][1]["audio_url"])
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.content[:2] == b"\xff\xfb"


async def test_links_expire_with_403(anyio_backend: str) -> None:
    config = EmulatorConfig(time_scale=1000.0, link_ttl=200.0)  # 0.2 s of real time
    config.durations["yandex-art"] = DurationDist.fixed(10.0)
    emu = Emulator(config)
    async with serve(emu) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        r = await c.post(
            "/v1/media/create",
            json={"model": "yandex-art", "prompt": "x"},
            headers={"Authorization": "k"},
        )
        tid = r.json()["id"]
        await anyio.sleep(0.05)
        r = await c.get("/v1/media/result", params={"task_id": tid}, headers={"Authorization": "k"})
        url = r.json()["url"]
        assert (await c.get(url)).status_code == 200
        await anyio.sleep(0.25)
        r = await c.get(url)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/xml"
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in r.content
    assert b"Authorization" not in r.content


async def test_expire_links_now_and_unknown_file(
    client: httpx.AsyncClient, emu: Emulator, poll: Poll
) -> None:
    tid = (
        await client.post("/v1/media/create", json={"model": "yandex-art", "prompt": "x"})
    ).json()["id"]
    url = (await poll("/v1/media/result", "task_id", tid))["url"]
    emu.expire_links(tid)
    assert (await client.get(url)).status_code == 403
    r = await client.get("/files/ffffffffffffffffffffffff_result.webp")
    assert r.status_code == 404
    assert b"NoSuchKey" in r.content
    assert (await client.get(url.replace(".webp", ".mp4"))).status_code == 404
    head = await client.head(url.replace(tid, tid))
    assert head.status_code == 403


async def test_links_follow_host_in_process() -> None:
    config = EmulatorConfig(time_scale=1000.0)
    config.durations["flux-dev"] = DurationDist.fixed(1.0)
    emu = Emulator(config)
    transport = EmulatorTransport(emu)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test") as c:
        headers = {"Authorization": "k"}
        tid = (
            await c.post(
                "/v1/media/create", json={"model": "flux-dev", "prompt": "x"}, headers=headers
            )
        ).json()["id"]
        await anyio.sleep(0.01)
        url = (await c.post("/v1/media/result", json={"task_id": tid}, headers=headers)).json()[
            "url"
        ]
        assert url.startswith("http://emulator.test/files/")
        r = await c.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/webp"
        assert (await c.head(url)).headers["content-length"] == str(len(r.content))
