"""The SDK's logger, and the one redaction rule that keeps API keys out of everything it emits.

The client never formats a key into a message on purpose. Redaction is the second line of
defence against a server that echoes the key back (in an error, a task's ``error``, a link, an
id): every decoded response body is scrubbed before anything reads it, every ``GPTunnelError``
message is scrubbed when it is built, and the logger's filter scrubs every record. Texts are
scrubbed *before* they are cut to a length (``clip``), so a cut never leaves half a key.

A secret is matched whole. A key of ``WHOLE_TEXT_MIN`` characters or more is replaced wherever
it appears (also glued to other text), since ordinary text does not contain a long random
token by accident; a shorter one (the emulator's ``"any"``, a test's ``"k"``) is replaced only
where it stands as a word of its own, so ``"not known"`` stays ``"not known"``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
import warnings
from typing import Any

from ._escape import clean

logger = logging.getLogger("gptunnel_async")
LOG_ENV = "GPTUNNEL_LOG"

REDACTED = "<redacted>"
#: Secrets at least this long are scrubbed wherever they occur; shorter ones only as words.
WHOLE_TEXT_MIN = 8
_lock = threading.Lock()
_secrets: dict[str, int] = {}  # secret -> number of live clients using it


def register_secret(secret: str) -> None:
    """Start scrubbing ``secret`` from log records, SDK errors and decoded responses."""
    if not secret:
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


@functools.lru_cache(maxsize=64)
def _matcher(secret: str) -> re.Pattern[str] | None:
    """``None``: a long secret, matched by plain substring search (the fast path)."""
    if len(secret) >= WHOLE_TEXT_MIN:
        return None
    return re.compile(rf"(?<!\w){re.escape(secret)}(?!\w)")


def _active(extra_secrets: tuple[str | None, ...]) -> list[str]:
    with _lock:
        found = list(_secrets)
    found += [s for s in extra_secrets if s and s not in found]
    return found


def _scrub_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        matcher = _matcher(secret)
        if matcher is None:
            if secret in text:
                text = text.replace(secret, REDACTED)
        elif secret in text:
            text = matcher.sub(REDACTED, text)
    return text


def redact(text: str, *extra_secrets: str | None) -> str:
    """``text`` with every registered secret (and the extra ones given) replaced."""
    secrets = _active(extra_secrets)
    return _scrub_text(text, secrets) if secrets else text


def clip(text: str, limit: int, *extra_secrets: str | None) -> str:
    """``text`` redacted, *then* cut to ``limit`` characters (a cut cannot keep half a key)."""
    text = redact(text, *extra_secrets)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def scrub(value: Any, *extra_secrets: str | None) -> Any:
    """Decoded JSON with every secret removed from its strings (keys included), at any depth.

    Containers are changed in place (the caller owns a freshly decoded body); the walk is
    iterative, so no nesting the JSON decoder accepted can exhaust the stack here.
    """
    secrets = _active(extra_secrets)
    if not secrets:
        return value
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    todo = [value] if isinstance(value, (dict, list)) else []
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = _scrub_text(item, secrets)
                elif isinstance(item, (dict, list)):
                    todo.append(item)
            continue
        for name in list(node):
            item = node[name]
            if isinstance(item, str):
                node[name] = item = _scrub_text(item, secrets)
            elif isinstance(item, (dict, list)):
                todo.append(item)
            clean = _scrub_text(name, secrets) if isinstance(name, str) else name
            if clean != name:
                del node[name]
                node[clean] = item
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


#: Loggers whose records can quote server data: the SDK's, and httpx's and httpcore's (their
#: DEBUG traces print response headers, which a server can fill with the key). A logger's
#: filter does not apply to its children, so each is named.
FILTERED_LOGGERS = (
    "gptunnel_async",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
for _name in FILTERED_LOGGERS:
    _target = logging.getLogger(_name)
    if not any(isinstance(f, RedactingFilter) for f in _target.filters):
        _target.addFilter(RedactingFilter())


class OneLineFormatter(logging.Formatter):
    """Each record on one line, control characters escaped: a message quoting a server cannot
    fake further log lines or send escape sequences to the terminal reading the log."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record))


def stderr_handler() -> logging.Handler:
    """A handler writing the SDK's records to stderr: one line each, keys redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    return handler


def configure_from_env(environ: Any = os.environ) -> logging.Handler | None:
    """``GPTUNNEL_LOG=debug`` (``info``, ``warning``, ...): the SDK's records to stderr.

    The switch other SDKs have (``OPENAI_LOG``, ``ANTHROPIC_LOG``), for a quick look without
    touching the program's logging setup: one stderr handler on the ``gptunnel_async`` logger
    only (never the root logger), keys redacted like every record. Unset, nothing is added.
    A value that is not a level name is reported once and ignored, never an import error.
    """
    value = str(environ.get(LOG_ENV, "")).strip()
    if not value:
        return None
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        warnings.warn(
            f"{LOG_ENV}={value!r} is not a log level (debug, info, warning, error, critical); "
            "ignored",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    for handler in logger.handlers:
        if getattr(handler, "_gptunnel_env", False):
            return handler  # configured already (a reload of this module)
    handler = stderr_handler()
    handler._gptunnel_env = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


configure_from_env()
