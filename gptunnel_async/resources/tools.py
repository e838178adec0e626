"""``client.faceswap`` and ``client.bgremover``: one image task each, created then polled.

Images may be URLs, bytes or file paths; bytes and paths are checked (magic bytes, size) and sent
as ``data:`` URLs, so a non-image is refused before anything is billed. A ``webhook`` must be an
https URL. Results may be deleted after 3 days [doc]: download what you need to keep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from .._images import ImageInput, check_webhook, image_to_url
from ..types.tools import BGRemoverTask, FaceSwapTask
from ._base import TaskResource

#: FaceSwap takes 1-30 s [doc]; a wait gives up after this unless told otherwise.
DEFAULT_WAIT_TIMEOUT = 600.0

T = TypeVar("T", FaceSwapTask, BGRemoverTask)


class _ToolResource(TaskResource[T]):
    """Create/wait for one ``/v1/<family>`` tool (shared by FaceSwap and BGRemover)."""

    _family: ClassVar[str]

    async def _create(self, body: dict[str, Any], webhook: str | None) -> T:
        hook = check_webhook(webhook)
        if hook is not None:
            body["webhook"] = hook
        return await self._create_task(f"/v1/{self._family}/create", body)

    async def wait(
        self,
        task: T | str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: Callable[[T], Awaitable[None] | None] | None = None,
    ) -> T:
        """Poll until the task finishes; ``TaskFailedError`` if it failed."""
        return await self._wait(
            task,
            timeout=timeout,
            on_progress=on_progress,
            resume_hint=f"client.{self._family}.wait(task_id)",
        )


class FaceSwapResource(_ToolResource[FaceSwapTask]):
    """``client.faceswap``: put the face of one image onto another."""

    _family = "faceswap"
    _task_type = FaceSwapTask
    _result_path = "/v1/faceswap/result"

    async def create(
        self, source_image: ImageInput, face_image: ImageInput, webhook: str | None = None
    ) -> FaceSwapTask:
        """Start a swap (billed): ``face_image``'s face onto ``source_image``."""
        body = {
            "sourceImage": await image_to_url(source_image, name="source_image"),
            "faceImage": await image_to_url(face_image, name="face_image"),
        }
        return await self._create(body, webhook)

    async def generate(
        self,
        source_image: ImageInput,
        face_image: ImageInput,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    ) -> FaceSwapTask:
        """``create`` then ``wait``: the finished task (``url`` = the swapped image)."""
        return await self.wait(await self.create(source_image, face_image), timeout=timeout)


class BGRemoverResource(_ToolResource[BGRemoverTask]):
    """``client.bgremover``: cut the subject out of an image."""

    _family = "bgremover"
    _task_type = BGRemoverTask
    _result_path = "/v1/bgremover/result"

    async def create(self, image: ImageInput, webhook: str | None = None) -> BGRemoverTask:
        """Start a background removal (billed)."""
        body = {"image": await image_to_url(image, name="image")}
        return await self._create(body, webhook)

    async def generate(
        self, image: ImageInput, *, timeout: float | None = DEFAULT_WAIT_TIMEOUT
    ) -> BGRemoverTask:
        """``create`` then ``wait``: the finished task (``url`` = the cut-out image)."""
        return await self.wait(await self.create(image), timeout=timeout)
