"""Polling many tasks at once, on top of the client: the scheduler and batch runs.

The schedule policy and the request gate live below the client (``gptunnel_async._polling``);
they are re-exported here because they are what a poller is tuned with.
"""

from .._errors import PollerClosedError
from .._polling.limits import RequestGate
from .._polling.policy import AdaptivePolicy, FixedIntervalPolicy, PollPolicy, TaskHint
from .batch import BatchRun, MediaRequest, generate_many
from .options import PollerOptions
from .results import BatchResult, PollResult
from .scheduler import Poller, PollerStats

__all__ = [
    "AdaptivePolicy",
    "BatchResult",
    "BatchRun",
    "FixedIntervalPolicy",
    "MediaRequest",
    "PollPolicy",
    "PollResult",
    "Poller",
    "PollerClosedError",
    "PollerOptions",
    "PollerStats",
    "RequestGate",
    "TaskHint",
    "generate_many",
]
