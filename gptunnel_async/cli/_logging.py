"""``-v``: SDK debug logging to stderr, with the API key scrubbed from every line.

The SDK's logger already redacts keys of live clients; this handler redacts again (and the
CLI's own key, before any client exists), because a leaked key in a pasted log is the worst
thing a debug flag could do.
"""

from __future__ import annotations

import logging

from .._logs import redact, stderr_handler


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


#: What each -v handler set aside, to put back when it is removed.
_set_aside: dict[logging.Handler, tuple[list[logging.Handler], int]] = {}


def enable_debug(secret: str | None) -> logging.Handler:
    """Send ``gptunnel_async`` DEBUG records to stderr; returns the handler (to remove later).

    While it is on, a ``GPTUNNEL_LOG`` handler is set aside (else every line would print twice).
    """
    handler = stderr_handler()
    handler.addFilter(_KeyFilter(secret))
    logger = logging.getLogger("gptunnel_async")
    others = [h for h in logger.handlers if getattr(h, "_gptunnel_env", False)]
    _set_aside[handler] = (others, logger.level)
    for other in others:
        logger.removeHandler(other)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


def disable_debug(handler: logging.Handler) -> None:
    logger = logging.getLogger("gptunnel_async")
    logger.removeHandler(handler)
    others, level = _set_aside.pop(handler, ([], logging.NOTSET))
    for other in others:
        logger.addHandler(other)
    logger.setLevel(level)
