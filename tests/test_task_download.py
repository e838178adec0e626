"""Every task a resource returns is bound to its client, so ``task.download()`` just works.

Media, Midjourney, FaceSwap and BGRemover tasks come from one base (``resources/_base.py``):
whichever method returned a task (create, result, wait, generate), ``download`` needs no client
argument. A Suno song has two tracks: ``download`` saves both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from client_helpers import emulated

from gptunnel_async import AsyncGPTunnel, generate_many
from gptunnel_async.types._task import TaskBase
from gptunnel_async.types.media import MediaTask

pytestmark = pytest.mark.anyio

PHOTO = "https://example.com/photo.jpg"

GETTERS: dict[str, Callable[[AsyncGPTunnel], Awaitable[TaskBase]]] = {}


def getter(name: str) -> Callable[[Any], Any]:
    def register(fn: Callable[[AsyncGPTunnel], Awaitable[TaskBase]]) -> Any:
        GETTERS[name] = fn
        return fn

    return register


@getter("media.generate")
async def _media_generate(c: AsyncGPTunnel) -> TaskBase:
    return await c.media.generate(model="yandex-art", prompt="a fox")


@getter("media.result")
async def _media_result(c: AsyncGPTunnel) -> TaskBase:
    done = await c.media.generate(model="yandex-art", prompt="a fox")
    return await c.media.result(done.id)


@getter("midjourney.generate")
async def _mj_generate(c: AsyncGPTunnel) -> TaskBase:
    return await c.midjourney.generate("a fox")


@getter("midjourney.wait(id)")
async def _mj_wait_id(c: AsyncGPTunnel) -> TaskBase:
    task = await c.midjourney.imagine("a fox")
    return await c.midjourney.wait(task.id)


@getter("midjourney.result")
async def _mj_result(c: AsyncGPTunnel) -> TaskBase:
    task = await c.midjourney.generate("a fox")
    return await c.midjourney.result(task.id)


@getter("faceswap.generate")
async def _faceswap(c: AsyncGPTunnel) -> TaskBase:
    return await c.faceswap.generate(PHOTO, PHOTO)


@getter("bgremover.generate")
async def _bgremover(c: AsyncGPTunnel) -> TaskBase:
    return await c.bgremover.generate(PHOTO)


@getter("bgremover.wait(id)")
async def _bgremover_wait_id(c: AsyncGPTunnel) -> TaskBase:
    task = await c.bgremover.create(PHOTO)
    return await c.bgremover.wait(task.id)


@pytest.mark.parametrize("how", sorted(GETTERS))
async def test_every_task_downloads_without_a_client_argument(how: str, tmp_path: Path) -> None:
    async with emulated() as (_, client):
        task = await GETTERS[how](client)
        path = await task.download(f"{tmp_path}/")
    assert path.parent == tmp_path
    assert path.stem == task.id
    assert path.stat().st_size > 0


async def test_a_suno_download_saves_every_track(tmp_path: Path) -> None:
    async with emulated() as (_, client):
        done = await client.media.wait(await client.media.create_suno("a folk song"))
        first = await done.download(tmp_path)
        paths = await done.download_all(tmp_path / "song.mp3")
    tracks = done.result or []
    assert len(tracks) == 2
    assert first == tmp_path / f"{done.id}_track1.mp3"
    assert (tmp_path / f"{done.id}_track2.mp3").stat().st_size > 0
    assert paths == [tmp_path / "song_track1.mp3", tmp_path / "song_track2.mp3"]
    assert all(p.read_bytes() for p in paths)


async def test_a_suno_task_without_url_still_downloads_its_tracks(tmp_path: Path) -> None:
    """The docs' Suno answer has tracks in ``result`` and no top-level ``url``."""
    async with emulated() as (_, client):
        done = await client.media.wait(await client.media.create_suno("a folk song"))
        bare = MediaTask.model_validate(done.model_dump(exclude={"url"})).bind(client)
        paths = await bare.download_all(f"{tmp_path}/")
    assert [p.name for p in paths] == [f"{done.id}_track1.mp3", f"{done.id}_track2.mp3"]


async def test_an_unbound_task_says_how_to_download_it() -> None:
    task = MediaTask.model_validate({"id": "abc", "status": "done", "url": "https://x/y.png"})
    with pytest.raises(RuntimeError, match=r"client\.download"):
        await task.download("out/")


async def test_a_batch_saves_every_track_of_a_suno_song(tmp_path: Path) -> None:
    requests = [
        {"model": "suno", "prompt": "a folk song"},
        {"model": "suno", "prompt": "a sea shanty"},
    ]
    async with (
        emulated() as (_, client),
        generate_many(client, requests, download_to=tmp_path) as run,
    ):
        results = [result async for result in run]
    assert all(result.ok for result in results), [result.error for result in results]
    for result in results:
        assert result.path == tmp_path / f"{result.id}_track1.mp3"
        assert (tmp_path / f"{result.id}_track2.mp3").stat().st_size > 0
