"""``client.media``: create, result, wait and generate for ``/v1/media``.

Thin on purpose: bodies are validated locally (``_validation``) so nothing billable is sent that
the provider would reject, and waiting uses the client's shared ``AdaptivePolicy`` so that every
``wait()`` teaches the next one how long this model takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from .._errors import InvalidInputError
from .._images import ImageInput, image_to_url
from .._response import parse_model
from .._retry import RequestKind
from .._validation import check_json_value, check_media_create, check_text
from ..catalog import MODELS, SUNO_VERSIONS, prompt_limit
from ..types.account import GeneratedImage
from ..types.media import MediaTask
from ._base import TaskResource

if TYPE_CHECKING:
    from .._client import WriteAhead
    from .._polling.limits import Gate

CREATE_PATH = "/v1/media/create"
RESULT_PATH = "/v1/media/result"
GENERATE_PATH = "/v1/media/generate"
#: ``size`` values of the synchronous ``/media/generate`` [doc].
GENERATE_SIZES = ("1K", "2K", "3K", "4K")
#: ``/media/generate`` answers only when the image is ready: allow it this long to read.
GENERATE_READ_TIMEOUT = 300.0
#: ``wait()`` gives up after this many seconds unless told otherwise (every wait is bounded).
DEFAULT_WAIT_TIMEOUT = 3600.0

ProgressCallback = Callable[[MediaTask], "Awaitable[None] | None"]


def build_create_body(
    *,
    model: str,
    prompt: str,
    ar: str | None = None,
    images: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A checked ``/media/create`` body; raises ``InvalidInputError`` before anything is sent."""
    model, prompt, ar, image_list, _ = check_media_create(model, prompt, ar, images)
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    if ar is not None:
        body["ar"] = ar
    if image_list is not None:
        body["images"] = image_list
    if model.startswith("suno") and extra.get("version") is not None:
        check_suno_version(extra["version"])
    for key, value in extra.items():
        if key in body:
            raise InvalidInputError(f"{key!r} given twice")
        if value is not None:
            body[key] = check_json_value(key, value)
    return body


def check_suno_version(version: Any) -> str:
    """Suno's ``version`` must be one of ``catalog.SUNO_VERSIONS`` [doc]."""
    if version not in SUNO_VERSIONS:
        allowed = ", ".join(repr(v) for v in SUNO_VERSIONS)
        raise InvalidInputError(f"suno version must be one of {allowed}; got {version!r}")
    return str(version)


class MediaResource(TaskResource[MediaTask]):
    """``client.media``: media generations (images, video, Suno music)."""

    _task_type = MediaTask
    _result_path = RESULT_PATH
    _id_param = "task_id"

    async def create(
        self,
        *,
        model: str,
        prompt: str,
        ar: str | None = None,
        images: list[str] | None = None,
        **extra: Any,
    ) -> MediaTask:
        """Start a generation (billed). Returns the new task, usually ``idle``.

        Checked locally first against the catalogue; unknown models are sent as-is. ``extra``
        fields (e.g. Suno's ``version``) go into the body unchanged. A create is re-sent only
        when it certainly did not reach the server; otherwise the error says the task may exist.
        """
        body = build_create_body(model=model, prompt=prompt, ar=ar, images=images, **extra)
        return await self.create_from_body(body)

    async def create_from_body(
        self,
        body: dict[str, Any],
        *,
        gate: Gate | None = None,
        max_retries: int | None = None,
        write_ahead: WriteAhead | None = None,
    ) -> MediaTask:
        """Send an already validated create body (see ``build_create_body``)."""
        return await self._create_task(
            CREATE_PATH, body, gate=gate, max_retries=max_retries, write_ahead=write_ahead
        )

    async def wait(
        self,
        task: MediaTask | str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: ProgressCallback | None = None,
    ) -> MediaTask:
        """Poll until the task finishes and return it; raise ``TaskFailedError`` if it failed.

        Polls follow the client's adaptive schedule (no poll before the model's earliest
        plausible finish). Transient errors are polled through; ``TaskTimeoutError`` after
        ``timeout`` seconds (``None`` = no limit). Cancelling the caller stops the wait at once.
        """
        return await self._wait(
            task, timeout=timeout, on_progress=on_progress, resume_hint="client.media.wait(task_id)"
        )

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        ar: str | None = None,
        images: list[str] | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: ProgressCallback | None = None,
        **extra: Any,
    ) -> MediaTask:
        """``create`` then ``wait``: the finished task, or a typed error."""
        task = await self.create(model=model, prompt=prompt, ar=ar, images=images, **extra)
        return await self.wait(task, timeout=timeout, on_progress=on_progress)

    async def create_suno(
        self,
        prompt: str,
        *,
        lyric: str | None = None,
        title: str | None = None,
        tags: str | Sequence[str] | None = None,
        version: str | None = None,
        model: str = "suno",
    ) -> MediaTask:
        """Start a Suno song (billed): a description in ``prompt`` (<= 400 characters), or the
        custom mode with your own ``lyric``, ``title`` and style ``tags``.

        The finished task's ``result`` is a list of tracks (``SunoTrack.audio_url``), and
        ``urls`` lists every track. Wait for it with ``client.media.wait``.
        """
        check_text("prompt", prompt, max_len=prompt_limit("suno"), whose=" for Suno")
        extra: dict[str, Any] = {}
        if version is not None:
            extra["version"] = check_suno_version(version)
        if lyric is not None:
            extra["lyric"] = check_text("lyric", lyric)
        if title is not None:
            extra["title"] = check_text("title", title)
        if tags is not None:
            if not isinstance(tags, str):
                if not all(isinstance(t, str) and t.strip() for t in tags):
                    raise InvalidInputError("tags must be a string or a list of strings")
                tags = ", ".join(t.strip() for t in tags)
            extra["tags"] = check_text("tags", tags)
        return await self.create(model=model, prompt=prompt, **extra)

    async def generate_sync(
        self,
        *,
        model: str = "seedream-4",
        prompt: str,
        size: str | None = None,
        aspect_ratio: str | None = None,
        images: Sequence[ImageInput] | None = None,
        read_timeout: float = GENERATE_READ_TIMEOUT,
    ) -> GeneratedImage:
        """Generate an image synchronously via ``POST /v1/media/generate`` (billed).

        The request blocks until the image is ready, so it gets a ``read_timeout`` of its own
        (default 300 s). ``images`` (references) may be URLs, bytes or file paths; bytes and
        paths are sent as ``data:`` URLs. The link in ``result`` lives about 24 hours.
        """
        check_text("model", model)
        check_text("prompt", prompt)
        spec = MODELS.get(model)
        if spec is not None and spec.endpoint != "generate":
            raise InvalidInputError(
                f"model {model!r} is served by /media/create: use client.media.create/generate"
            )
        if size is not None and size not in GENERATE_SIZES:
            allowed = ", ".join(repr(s) for s in GENERATE_SIZES)
            raise InvalidInputError(f"size must be one of {allowed}; got {size!r}")
        if aspect_ratio is not None and not isinstance(aspect_ratio, str):
            raise InvalidInputError("aspect_ratio must be a string such as '21:9'")
        if not read_timeout > 0:
            raise InvalidInputError("read_timeout must be > 0 seconds")
        body: dict[str, Any] = {"model": model, "prompt": prompt, "response_format": "url"}
        if size is not None:
            body["size"] = size
        if aspect_ratio is not None:
            body["aspect_ratio"] = aspect_ratio
        if images is not None:
            if isinstance(images, (str, bytes)):
                raise InvalidInputError("images must be a list (of URLs, bytes or paths)")
            body["images"] = [
                await image_to_url(img, name=f"images[{i}]") for i, img in enumerate(images)
            ]
        base = self._client.timeout
        data = await self._client.request(
            "POST",
            GENERATE_PATH,
            json=body,
            kind=RequestKind.CREATE,
            timeout=httpx.Timeout(
                connect=base.connect, read=read_timeout, write=base.write, pool=base.pool
            ),
        )
        return parse_model(
            GeneratedImage, data, method="POST", path=GENERATE_PATH, may_have_been_created=True
        )
