"""The emulator's result files, and the links that serve them.

Each file is small but real, and drawn from its task: a picture of the prompt (PNG or lossless
WebP, ``_pictures``), a two-second H.264 MP4 of the same scene (``_video``), a short MP3 tune
(``_audio``), so a newcomer opening an offline result sees or hears that it worked and two
prompts give two different files. The content type always matches the bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Final

from ._audio import tune
from ._http import Response
from ._pictures import PNG_SIGNATURE, encode_png, picture
from ._state import Task
from ._video import clip

CONTENT_TYPES: Final = {
    "png": "image/png",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
}
#: A known-valid 1x1 lossless WebP (RIFF/WEBP/VP8L): a tiny image for tests to upload.
WEBP_1X1: Final = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
_AR_IN_PROMPT: Final = re.compile(r"--ar\s+(\d+:\d+)")


@lru_cache(maxsize=256)
def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A solid ``size``x``size`` RGB PNG (an input image for tests: masks, uploads)."""
    return encode_png(bytes(rgb) * (size * size), size, size)


def _subject(task: Task) -> str:
    """What a task's files depict: its prompt, its model and, for Midjourney, its action."""
    return f"{task.model}|{task.type}|{task.prompt}"


def _aspect(task: Task) -> str | None:
    ar = task.args.get("ar")
    if isinstance(ar, str):
        return ar
    found = _AR_IN_PROMPT.search(task.prompt)
    return found.group(1) if found else None


def content(task: Task, ext: str, suffix: str = "result") -> bytes:
    """The bytes of one of a task's files (``suffix`` tells Suno's tracks apart)."""
    if ext in ("png", "webp"):
        return picture(_subject(task), ext, _aspect(task))
    if ext == "mp4":
        return clip(_subject(task))
    return tune(f"{_subject(task)}|{suffix}")


def link(base_url: str, task: Task, suffix: str = "result", ext: str | None = None) -> str:
    """An expiring link to one of a task's files, served by the emulator under ``/files``."""
    return f"{base_url}/files/{task.id}_{suffix}.{ext or task.ext}?expires={task.expires_unix()}"


def is_png_base64(value: object) -> bool:
    """True for base64 (or a ``data:`` URL) whose bytes start with the PNG signature."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(PNG_SIGNATURE)


def s3_error(status: int, code: str, message: str) -> Response:
    """An S3-style XML error, as a storage bucket answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return Response(status, body, [("content-type", "application/xml")])


def serve_file(task: Task | None, suffix: str, ext: str, now: float) -> Response:
    """Answer ``GET /files/<id>_<suffix>.<ext>``: the bytes, 404 if absent, 403 if expired."""
    missing = s3_error(404, "NoSuchKey", "The specified key does not exist.")
    if task is None or ext not in CONTENT_TYPES:
        return missing
    status = task.status(now)
    if suffix == "preview":
        if status == "idle":
            return missing
    elif status != "done" or not _has_file(task, suffix, ext):
        return missing
    if now >= task.link_expires_at():
        return s3_error(403, "AccessDenied", "Request has expired")
    return Response(200, content(task, ext, suffix), [("content-type", CONTENT_TYPES[ext])])


def _has_file(task: Task, suffix: str, ext: str) -> bool:
    if task.family == "suno":
        return suffix in ("track1", "track2") and ext == "mp3"
    return suffix == "result" and ext == task.ext
