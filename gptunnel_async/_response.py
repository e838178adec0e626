"""Turn an HTTP response into decoded JSON or the right typed error. Pure: no I/O.

GPTunnel reports failures three ways: an error envelope with a 4xx/5xx status, a validation body
under HTTP 200 (``"code": 3`` with ``issues``), and plain non-JSON bodies from proxies. All three
end up as one ``APIStatusError`` subclass carrying the status, message, ``type`` and task id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from ._errors import (
    APIResponseValidationError,
    APIStatusError,
    InvalidRequestError,
    RateLimitError,
    status_error_class,
)
from ._logs import clip, redact, scrub
from ._retry import parse_retry_after

_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_MESSAGE = 500

M = TypeVar("M", bound=pydantic.BaseModel)


def decode_json(content: bytes) -> Any:
    """JSON, forgiving the trailing commas seen in the provider's own examples; else ValueError."""
    text = content.decode("utf-8", errors="replace")
    try:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = json.loads(_TRAILING_COMMA.sub(r"\1", text))
        return _without_lone_surrogates(doc) if _SURROGATE_ESCAPE.search(text) else doc
    except RecursionError:  # nesting deeper than the stack: not a document this API sends
        failure = "JSON nested too deeply"
    except json.JSONDecodeError as exc:
        failure = f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    # Raised outside the handlers, so no __context__: a JSONDecodeError holds the whole body
    # (``.doc``), which may echo a secret back.
    raise ValueError(failure)


def _without_lone_surrogates(doc: Any) -> Any:
    """``doc`` with every lone surrogate (a ``\\ud800`` escape without its partner) made U+FFFD.

    Such a string cannot be encoded as UTF-8, so a server's error text holding one would crash
    whatever writes it down (the journal, a manifest, a log). Walked without recursion: the
    document may nest as deep as the parser allowed.
    """
    if isinstance(doc, str):
        return _SURROGATE.sub("\ufffd", doc)
    stack = [doc] if isinstance(doc, (dict, list)) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in [k for k in node if _SURROGATE.search(k)]:
                node[_SURROGATE.sub("\ufffd", key)] = node.pop(key)
        for slot, item in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(item, str):
                node[slot] = _SURROGATE.sub("\ufffd", item)
            elif isinstance(item, (dict, list)):
                stack.append(item)
    return doc


def _short(text: str, secret: str | None) -> str:
    """One line of at most ``_MAX_MESSAGE`` characters, redacted before it is cut."""
    return clip(" ".join(text.split()), _MAX_MESSAGE, secret)


def _envelope(body: Any) -> tuple[str | None, str | None]:
    """``(message, type)`` from ``{"error": {...}}``, ``{"error": "..."}``, ``{"message"}``."""
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error")
    if isinstance(error, Mapping):
        message, kind = error.get("message"), error.get("type")
        return (str(message) if message is not None else None, str(kind) if kind else None)
    if isinstance(error, str) and error:
        return error, None
    message = body.get("message")
    return (str(message) if message is not None else None, None)


def _issues_text(issues: list[Mapping[str, Any]]) -> str:
    parts = []
    for issue in issues[:5]:
        path = issue.get("path")
        where = ".".join(str(p) for p in path) if isinstance(path, list) else str(path or "?")
        what = issue.get("message") or "invalid"
        expected = issue.get("expected")
        parts.append(f"{where}: {what}" + (f" (expected {expected})" if expected else ""))
    return "; ".join(parts)


def error_from_response(
    *,
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    method: str,
    path: str,
    task_id: str | None = None,
    may_have_been_created: bool = False,
    secret: str | None = None,
) -> APIStatusError:
    """The typed error for a non-2xx response, or for a 2xx whose body says it failed."""
    try:
        body: Any = decode_json(content)
    except ValueError:
        body = content.decode("utf-8", errors="replace")
    # A server may echo the key back: scrub the whole body first, then cut what is kept.
    body = scrub(body, secret)
    if isinstance(body, str):
        body = clip(body, _MAX_MESSAGE, secret)
    message, error_type = _envelope(body)
    code = body.get("code") if isinstance(body, Mapping) else None
    raw_issues = body.get("issues") if isinstance(body, Mapping) else None
    issues = (
        [i for i in raw_issues if isinstance(i, Mapping)] if isinstance(raw_issues, list) else []
    )
    cls = status_error_class(status_code, error_type)
    if not message:
        message = _issues_text(issues) or (body if isinstance(body, str) and body else "")
    elif issues:
        message = f"{message}: {_issues_text(issues)}"
    summary = f"{method} {path} → HTTP {status_code}"
    if isinstance(code, int) and code != 0:
        summary += f", code {code}"
    text = redact(f"{summary}: {_short(str(message), secret)}" if message else summary, secret)
    common: dict[str, Any] = {
        "method": method,
        "path": path,
        "status_code": status_code,
        "error_type": error_type,
        "task_id": task_id,
        "body": body,
        "may_have_been_created": may_have_been_created,
    }
    if cls is InvalidRequestError:
        return InvalidRequestError(
            text, code=code if isinstance(code, int) else None, issues=issues, **common
        )
    if cls is RateLimitError:
        return RateLimitError(text, retry_after=parse_retry_after(headers), **common)
    return cls(text, **common)


def body_failure(body: Any) -> bool:
    """A 2xx body that is really an error: ``code`` != 0, or an error envelope."""
    if not isinstance(body, Mapping):
        return False
    code = body.get("code")
    if code is not None and code != 0 and not isinstance(code, bool):
        return True
    error = body.get("error")
    return isinstance(error, Mapping) and "id" not in body


def parse_model(
    model: type[M], data: Any, *, method: str, path: str, may_have_been_created: bool = False
) -> M:
    """Validate a decoded body into ``model``; a body of the wrong shape is a typed API error.

    For a create, ``may_have_been_created`` marks that the server accepted it all the same.
    """
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "<body>" for e in exc.errors()[:5])
        raise APIResponseValidationError(
            f"{method} {path}: unexpected response shape for {model.__name__} (fields: {fields})",
            method=method,
            path=path,
            may_have_been_created=may_have_been_created,
        ) from None
