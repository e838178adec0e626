"""Turn an HTTP response into decoded JSON or the right typed error. Pure: no I/O.

GPTunnel reports failures three ways: an error envelope with a 4xx/5xx status, a validation body
under HTTP 200 (``"code": 3`` with ``issues``), and plain non-JSON bodies from proxies. All three
end up as one ``APIStatusError`` subclass carrying the status, message, ``type`` and task id.
"""

from __future__ import annotations

import difflib
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
from ._json import UnsafeJSONError, load_json
from ._logs import clip, redact, scrub
from ._retry import parse_retry_after
from .catalog import MODELS

_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_MESSAGE = 500
#: zod's rendering of the allowed values, ``'a' | 'b' | 'c'``, and of the rejected one.
_ENUM = re.compile(r"'([^']*)'(?:\s*\|\s*|$)")
_RECEIVED = re.compile(r"received '([^']*)'")
_SHOWN_VALUES = 8

M = TypeVar("M", bound=pydantic.BaseModel)


def decode_json(content: bytes) -> Any:
    """JSON, forgiving the trailing commas seen in the provider's own examples; else ValueError."""
    text = content.decode("utf-8", errors="replace")
    try:
        try:
            doc = load_json(text)
        except json.JSONDecodeError:
            doc = load_json(_TRAILING_COMMA.sub(r"\1", text))
        return _without_lone_surrogates(doc) if _SURROGATE_ESCAPE.search(text) else doc
    except UnsafeJSONError as exc:  # too deep, or an absurd number: not what this API sends
        failure = f"JSON refused: {exc}"
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
    """One line of at most ~``_MAX_MESSAGE`` characters: redacted *before* it is cut (a cut
    cannot keep half a key), then cut between words, saying how much was left out."""
    text = redact(" ".join(text.split()), secret)
    if len(text) <= _MAX_MESSAGE:
        return text
    cut = text.rfind(" ", _MAX_MESSAGE // 2, _MAX_MESSAGE)
    cut = cut if cut > 0 else _MAX_MESSAGE
    return f"{text[:cut]} … ({len(text) - cut} more characters)"


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
    return "; ".join(_issue_text(issue) for issue in issues[:5])


def _issue_text(issue: Mapping[str, Any]) -> str:
    """``model: 'google-imagen3' is not accepted; did you mean 'google-imagen-3'? (...)``.

    A zod enum failure lists every allowed value (every model id, for ``model``): that list is
    summarised, and the values closest to the rejected one are suggested from it (from the
    SDK's catalogue when the server lists none).
    """
    path = issue.get("path")
    where = ".".join(str(p) for p in path) if isinstance(path, list) else str(path or "?")
    what = str(issue.get("message") or "invalid")
    expected = issue.get("expected")
    values = _enum_values(expected)
    received = _RECEIVED.search(what)
    if received is None or (values is None and where != "model"):
        return f"{where}: {what}" + (f" (expected {expected})" if expected else "")
    rejected = received.group(1)
    text = f"{where}: {rejected!r} is not accepted"
    if values and len(values) <= _SHOWN_VALUES:  # short enough to read whole
        return text + f"; expected one of {', '.join(repr(v) for v in values)}"
    close = _close_matches(rejected, values or _known_models())
    if not values and not close:
        return f"{where}: {what}" + (f" (expected {expected})" if expected else "")
    if close:
        text += f"; did you mean {' or '.join(repr(v) for v in close)}?"
    if values and close:
        text += f" ({len(values)} values accepted)"
    elif values:
        shown = ", ".join(repr(v) for v in values[:_SHOWN_VALUES])
        text += f" (expected one of {shown} and {len(values) - _SHOWN_VALUES} more)"
    return text


def _enum_values(expected: Any) -> list[str] | None:
    """The values of ``'a' | 'b'``, or ``None`` when ``expected`` is not such a list."""
    if not isinstance(expected, str) or not expected.startswith("'"):
        return None
    values = _ENUM.findall(expected)
    return values if _ENUM.sub("", expected).strip() == "" and values else None


def _close_matches(value: str, choices: list[str]) -> list[str]:
    if len(value) > 200:  # no id is that long; and difflib is quadratic
        return []
    return difflib.get_close_matches(value, choices, n=3, cutoff=0.6)


def _known_models() -> list[str]:
    return list(MODELS)


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
