"""The SDK's logger, and the filter that keeps API keys out of every record it emits.

The client never formats a key into a message on purpose; the filter is the second line of
defence (a server that echoes the key back in an error, a user's ``extra``), and it also covers
records that handlers format later from ``args``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger("gptunnel_async")

REDACTED = "<redacted>"
_lock = threading.Lock()
_secrets: dict[str, int] = {}  # secret -> number of live clients using it


def register_secret(secret: str) -> None:
    """Start scrubbing ``secret`` from log records and SDK messages."""
    if len(secret) < 4:  # too short to scrub without mangling ordinary text; never logged anyway
        return
    with _lock:
        _secrets[secret] = _secrets.get(secret, 0) + 1


def unregister_secret(secret: str) -> None:
    with _lock:
        count = _secrets.get(secret, 0) - 1
        if count <= 0:
            _secrets.pop(secret, None)
        else:
            _secrets[secret] = count


def redact(text: str, *extra_secrets: str | None) -> str:
    """``text`` with every registered secret (and the extra ones given) replaced."""
    with _lock:
        secrets = [*_secrets, *(s for s in extra_secrets if s)]
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_deep(value: Any, *extra_secrets: str | None, _depth: int = 0) -> Any:
    """``value`` (decoded JSON) with every string redacted; bounded depth, copies containers."""
    if isinstance(value, str):
        return redact(value, *extra_secrets)
    if _depth > 50:
        return None
    if isinstance(value, dict):
        return {
            redact(str(k), *extra_secrets): redact_deep(v, *extra_secrets, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_deep(v, *extra_secrets, _depth=_depth + 1) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record's message so no registered secret survives formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            has_secrets = bool(_secrets)
        if not has_secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the handler's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


if not any(isinstance(f, RedactingFilter) for f in logger.filters):
    logger.addFilter(RedactingFilter())
