"""``-v``: SDK debug logging to stderr, with the API key scrubbed from every line.

The SDK's logger already redacts keys of live clients; this handler redacts again (and the
CLI's own key, before any client exists), because a leaked key in a pasted log is the worst
thing a debug flag could do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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


def enable_debug(secret: str | None) -> Callable[[], None]:
    """Send ``gptunnel_async`` DEBUG records to stderr; returns the function that undoes it.

    While it is on, a ``GPTUNNEL_LOG`` handler is set aside (else every line would print twice).
    """
    handler = stderr_handler()
    handler.addFilter(_KeyFilter(secret))
    logger = logging.getLogger("gptunnel_async")
    previous_level = logger.level
    set_aside = [h for h in logger.handlers if getattr(h, "_gptunnel_env", False)]
    for other in set_aside:
        logger.removeHandler(other)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        for other in set_aside:
            logger.addHandler(other)
        logger.setLevel(previous_level)

    return undo
