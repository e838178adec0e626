"""Polling many tasks at once: scheduler, schedule policy, shared limits, batch runs."""

from .._polling.limits import RequestGate
from .._polling.policy import AdaptivePolicy, FixedIntervalPolicy, PollPolicy, TaskHint
from .batch import MediaRequest, generate_many
from .results import PollResult
from .scheduler import Poller, PollerClosedError, PollerStats

__all__ = [
    "AdaptivePolicy",
    "FixedIntervalPolicy",
    "MediaRequest",
    "PollPolicy",
    "PollResult",
    "Poller",
    "PollerClosedError",
    "PollerStats",
    "RequestGate",
    "TaskHint",
    "generate_many",
]
