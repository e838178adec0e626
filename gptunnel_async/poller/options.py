"""``PollerOptions``: every setting of a poller in one frozen value.

The poller, ``generate_many`` and the CLI all take this one object, so a new setting is one
field here rather than a keyword repeated in every signature. Values are checked when the object
is built: a bad setting fails where it was written, with a one-line ``InvalidInputError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidInputError

if TYPE_CHECKING:
    from .._polling.policy import PollPolicy
    from .._polling.shared import SharedLimits


@dataclass(frozen=True)
class PollerOptions:
    """How a ``Poller`` polls. Every field has a default; change only what you need.

    - ``max_concurrency``: requests in flight at once (polls, and a batch's creates).
    - ``requests_per_second``: a paced budget for starting requests (``None``: no budget).
    - ``policy``: the schedule (``None``: the client's shared ``poll_policy``).
    - ``task_timeout``: seconds from a task's creation after which it is yielded with
      ``TaskTimeoutError`` (its last poll happens at that moment at the latest).
    - ``deadline``: seconds from entering the poller after which no task is polled again; every
      task still running gets one last poll at the deadline.
    - ``max_poll_failures``: consecutive failed polls of one task before it is given up.
    - ``keep_open``: iterate until ``close()`` rather than until every added task is yielded.
    - ``limits``: a ``SharedLimits`` to share the concurrency bound, the rate budget and the 429
      pause with other processes (``max_concurrency`` then bounds only this poller's workers).
    """

    max_concurrency: int = 16
    requests_per_second: float | None = None
    policy: PollPolicy | None = None
    task_timeout: float | None = None
    deadline: float | None = None
    max_poll_failures: int = 10
    keep_open: bool = False
    limits: SharedLimits | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_concurrency, bool) or self.max_concurrency < 1:
            raise InvalidInputError("max_concurrency must be an int >= 1")
        if self.requests_per_second is not None and not _positive(self.requests_per_second):
            raise InvalidInputError("requests_per_second must be > 0 (or None for no budget)")
        for name in ("task_timeout", "deadline"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise InvalidInputError(f"{name} must be > 0 seconds (or None)")
        if isinstance(self.max_poll_failures, bool) or self.max_poll_failures < 1:
            raise InvalidInputError("max_poll_failures must be an int >= 1")
        if self.requests_per_second is not None and self.limits is not None:
            raise InvalidInputError(
                "with shared limits, the rate budget is SharedLimits.requests_per_second"
            )


def _positive(value: float) -> bool:
    return not isinstance(value, bool) and value > 0 and not math.isnan(value)
