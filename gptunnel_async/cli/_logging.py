"""``-v``: SDK debug logging to stderr, with the API key scrubbed from every line.

The SDK's logger already redacts keys of live clients; this handler redacts again (and the
CLI's own key, before any client exists), because a leaked key in a pasted log is the worst
thing a debug flag could do.
"""

from __future__ import annotations

import logging
import sys

from .._logs import RedactingFilter, redact


class _KeyFilter(logging.Filter):
    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        secret = self._secret
        if not secret:
            return True
        message = record.getMessage()
        if secret in message or record.args:
            record.msg = redact(message, secret)  # whole-secret matching: no mangled words
            record.args = None
        return True


def enable_debug(secret: str | None) -> logging.Handler:
    """Send ``gptunnel_async`` DEBUG records to stderr; returns the handler (to remove later)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler.addFilter(_KeyFilter(secret))
    logger = logging.getLogger("gptunnel_async")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


def disable_debug(handler: logging.Handler) -> None:
    logger = logging.getLogger("gptunnel_async")
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
