"""Offline result files are small real media: a picture of the prompt, an MP4, an MP3.

Checked against the formats' structure (``media_checks``), and by ffmpeg when it is installed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from media_checks import ffprobe_ok, parse_mp3, parse_mp4, parse_png, parse_webp

from gptunnel_async.testing._audio import tune
from gptunnel_async.testing._pictures import picture
from gptunnel_async.testing._video import clip

Poll = Callable[..., Awaitable[dict[str, Any]]]  # the `poll` fixture from conftest
PARSERS = {"image/png": parse_png, "image/webp": parse_webp, "video/mp4": parse_mp4}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        ({"model": "yandex-art", "prompt": "a fox"}, "image/webp"),
        ({"model": "gpt-image-1-high", "prompt": "a fox"}, "image/png"),
        ({"model": "glabs-veo-3-1-fast", "prompt": "waves"}, "video/mp4"),
        ({"model": "suno", "prompt": "a folk song"}, "audio/mpeg"),
    ],
)
async def test_each_kind_serves_its_own_valid_format(
    client: httpx.AsyncClient, poll: Poll, body: dict[str, str], ctype: str
) -> None:
    tid = (await client.post("/v1/media/create", json=body)).json()["id"]
    done = await poll("/v1/media/result", "task_id", tid)
    links = [t["audio_url"] for t in done["result"]] if body["model"] == "suno" else [done["url"]]
    for url in links:
        r = await client.get(url)
        assert r.headers["content-type"] == ctype
        parsed = PARSERS.get(ctype, parse_mp3)(r.content)
        assert parsed is not None


def test_pictures_differ_per_prompt_and_are_not_flat() -> None:
    fox, owl = parse_png(picture("a fox", "png")), parse_png(picture("an owl", "png"))
    assert fox.pixels != owl.pixels
    colours = {fox.pixels[i : i + 3] for i in range(0, len(fox.pixels), 3)}
    assert len(colours) > 20  # a scene, not a solid square
    assert picture("a fox", "png") == picture("a fox", "png")  # same prompt, same picture


@pytest.mark.parametrize(("aspect", "wide"), [("16:9", True), ("9:16", False), ("1:1", None)])
def test_pictures_take_the_requested_aspect_ratio(aspect: str, wide: bool | None) -> None:
    for ext, parse in (("png", parse_png), ("webp", parse_webp)):
        pic = parse(picture("a fox", ext, aspect))
        assert (pic.width == pic.height) if wide is None else ((pic.width > pic.height) is wide)


def test_video_is_an_h264_clip_of_several_frames() -> None:
    video = parse_mp4(clip("waves"))
    assert (video.width, video.height) == (64, 48)
    assert video.frames >= 4 and 1.0 <= video.seconds <= 5.0
    assert clip("waves") != clip("a city at night")


def test_audio_is_a_short_tune_that_is_never_silent() -> None:
    audio = parse_mp3(tune("a folk song"))
    assert 1.0 <= audio.seconds <= 5.0
    assert audio.loud_granules == 2 * audio.frames  # every granule carries a note
    assert tune("a folk song") != tune("heavy metal")


@pytest.mark.parametrize(
    ("data", "suffix"),
    [
        (picture("a fox", "png"), "png"),
        (picture("a fox", "webp"), "webp"),
        (clip("waves"), "mp4"),
        (tune("a song"), "mp3"),
    ],
    ids=["png", "webp", "mp4", "mp3"],
)
def test_ffmpeg_decodes_every_kind(data: bytes, suffix: str) -> None:
    verdict = ffprobe_ok(data, suffix)
    if verdict is None:
        pytest.skip("ffmpeg is not installed")
    assert verdict
