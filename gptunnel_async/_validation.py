"""Local checks of user input, run before a request is sent (so before anything is billed).

A known model with a wrong ``ar`` or too many ``images`` fails here with the allowed values; an
unknown model id passes (the provider adds models all the time) and is sent as-is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from ._errors import APIResponseValidationError, InvalidInputError
from ._logs import clip, redact
from .catalog import MODELS, PROMPT_MAX_LEN, ModelSpec, prompt_limit

_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: An extra body field, as JSON, is at most this long (a small data: URL fits; a file does not).
FIELD_MAX_JSON_CHARS = 1 << 20
_Answer = TypeVar("_Answer")


def check_task_id(task_id: Any) -> str:
    """A task id is a short token of letters, digits, ``-`` and ``_`` (24 hex in practice)."""
    # fullmatch: ``$`` alone would accept a trailing newline ("abc\n").
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        shown = clip(repr(task_id), 60)  # redacted before the cut: an id may echo the key
        raise InvalidInputError(
            f"invalid task id {shown}: expected letters, digits, '-' or '_' (24 hex in practice)"
        )
    return task_id


def check_answer_is_for(answer: _Answer, task_id: str, *, method: str, path: str) -> _Answer:
    """A result answer must be the record of the task asked about, or it is not an answer.

    A server (or a cache that ignores the query string) that returns another task's record
    would otherwise pass that task's status and file off as this one's: a batch would save one
    file for many requests. So a different (or missing) id is an ``APIResponseValidationError``.
    """
    got = getattr(answer, "id", None)
    if got == task_id:
        return answer
    if got is None:
        about = "no task id"
    elif isinstance(got, str) and _TASK_ID.fullmatch(got):
        about = f"task {redact(got)}"
    else:
        about = "a malformed task id"
    raise APIResponseValidationError(
        f"{method} {path}: asked for task {task_id}, the answer is for {about}",
        method=method,
        path=path,
        task_id=task_id,
    )


def check_encodable(name: str, value: str) -> str:
    """Text must be valid Unicode: a lone surrogate cannot be sent as UTF-8 JSON."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{name} is not valid Unicode: {value[exc.start : exc.end]!r} at position "
            f"{exc.start} is a lone surrogate (it cannot be encoded as UTF-8)"
        ) from None
    return value


def check_json_value(name: str, value: Any) -> Any:
    """An extra body field must serialise to UTF-8 JSON (no lone surrogates, no objects, not
    nested past the interpreter's recursion limit) of at most ``FIELD_MAX_JSON_CHARS``."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError: a ValueError
        raise InvalidInputError(f"{name} cannot be sent as JSON: {type(exc).__name__}") from None
    if len(text) > FIELD_MAX_JSON_CHARS:
        raise InvalidInputError(
            f"{name} is {len(text):,} characters as JSON; the limit is {FIELD_MAX_JSON_CHARS:,}"
        )
    return value


def check_text(name: str, value: Any, *, max_len: int = PROMPT_MAX_LEN, whose: str = "") -> str:
    """Non-empty, valid Unicode, at most ``max_len`` characters (``whose`` names the limit's
    owner in the error, e.g. " for model 'suno'")."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_len:  # before anything else walks a huge string
        raise InvalidInputError(
            f"{name} is {len(value):,} characters long; the limit is {max_len:,}{whose}"
        )
    if not value.strip():
        raise InvalidInputError(f"{name} must not be empty")
    check_encodable(name, value)
    return value


def check_images(images: Any) -> list[str] | None:
    if images is None:
        return None
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise InvalidInputError(
            "images must be a list of image URLs (or data: URLs), not a single "
            f"{type(images).__name__}"
        )
    out: list[str] = []
    for i, item in enumerate(images):
        if not isinstance(item, str) or not item.strip():
            raise InvalidInputError(f"images[{i}] must be a non-empty URL string")
        out.append(check_encodable(f"images[{i}]", item))
    return out


def _quote_all(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def check_media_create(
    model: Any, prompt: Any, ar: Any, images: Any
) -> tuple[str, str, str | None, list[str] | None, ModelSpec | None]:
    """Validate a media create against the catalogue; return the cleaned values and the spec."""
    model = check_text("model", model)
    spec = MODELS.get(model)
    documented = spec is not None and spec.prompt_max_len is not None
    whose = f" for model {model!r}" if documented else " for models without a documented one"
    prompt = check_text("prompt", prompt, max_len=prompt_limit(model), whose=whose)
    if ar is not None and not isinstance(ar, str):
        raise InvalidInputError(f"ar must be a string such as '16:9', got {type(ar).__name__}")
    if ar is not None:
        check_encodable("ar", ar)
    image_list = check_images(images)
    if spec is None:
        return model, prompt, ar, image_list, None
    if spec.endpoint != "create":
        raise InvalidInputError(
            f"model {model!r} is served by /media/generate, not /media/create "
            "(the synchronous POST /v1/media/generate endpoint)"
        )
    if ar is not None and spec.ar is not None and ar not in spec.ar:
        allowed = f"one of {_quote_all(spec.ar)}" if spec.ar else "no ar at all"
        raise InvalidInputError(f"model {model!r} does not accept ar={ar!r}; it takes {allowed}")
    if image_list and spec.max_images is not None and len(image_list) > spec.max_images:
        allowed = f"at most {spec.max_images}" if spec.max_images else "none"
        raise InvalidInputError(f"model {model!r} takes {allowed} image(s); got {len(image_list)}")
    return model, prompt, ar, image_list, spec
