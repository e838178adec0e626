"""The emulator's own tiny request/response model, shared by the socket server and the transport.

Keeping it independent of httpx and h11 lets the routing code be tested and reused by both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

JSON_TYPE: Final = "application/json; charset=utf-8"
#: Every API answer announces the emulator's clock (its time scale) here, so a client on
#: loopback can poll at its pace. Re-stated apart from the SDK's constant, like every rule.
TIME_SCALE_HEADER: Final = "x-gptunnel-emulator-time-scale"

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "unauthorized_request_error",
    402: "insufficient_balance_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    429: "rate_limit_error",
}
_ERROR_MESSAGES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Organization balance is too low to use API",
    404: "Not found",
    408: "Request timeout",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the emulator sees it; ``base_url`` is where links must point back to."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str
    #: ``time.monotonic()`` when the server had the request's first byte (over a socket; else
    #: when it was handed over), before any parsing, latency or fault.
    received: float = 0.0
    #: The server's serial number of the connection that carried it (0: no socket).
    connection: int = 0


@dataclass(slots=True)
class Response:
    """One HTTP response; ``headers`` excludes Content-Length (transports add it)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without answering (a lost response)."""


DROP: Final = Drop()


def json_response(
    data: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    """Serialise compactly; non-ASCII is kept as UTF-8 like the real service."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, [("content-type", JSON_TYPE), *(headers or [])])


def error_response(
    status: int,
    message: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    error_type: str | None = None,
) -> Response:
    """The documented error envelope ``{"error": {message, type, param, code}}``."""
    if error_type is None:
        error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    if message is None:
        message = _ERROR_MESSAGES.get(status, "Error")
    envelope = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    return json_response(envelope, status, headers)


def required(name: str) -> Response:
    """400 in the documented wording for a missing field."""
    return error_response(400, f"'{name}' is a required property")


def validation_error(issues: list[dict[str, Any]]) -> Response:
    """The media API's zod-style validation failure: HTTP 200 with ``code: 3``."""
    return json_response({"code": 3, "message": "Validation error", "issues": issues})


def issue(path: str, expected: str, message: str) -> dict[str, Any]:
    """One ``issues`` entry, exactly ``{path, expected, message}``."""
    return {"path": [path], "expected": expected, "message": message}


def one_of(values: Iterable[object]) -> str:
    """Render allowed values the way zod does: ``'a' | 'b'``."""
    return " | ".join(f"'{v}'" for v in values)
