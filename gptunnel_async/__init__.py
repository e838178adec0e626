"""Async SDK for GPTunnel's media-generation API (asyncio and trio, through anyio)."""

from ._client import AsyncGPTunnel, ConfigurationError
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    GPTunnelError,
    InsufficientBalanceError,
    InternalServerError,
    InvalidInputError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TaskFailedError,
    TaskTimeoutError,
)
from ._retry import RetryPolicy
from ._version import __version__
from .catalog import MODELS, ModelSpec
from .poller import (
    AdaptivePolicy,
    FixedIntervalPolicy,
    MediaRequest,
    Poller,
    PollerClosedError,
    PollPolicy,
    PollResult,
)
from .types import MediaTask, SunoTrack, TaskState

__all__ = [
    "MODELS",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptivePolicy",
    "AsyncGPTunnel",
    "AuthenticationError",
    "ConfigurationError",
    "FixedIntervalPolicy",
    "GPTunnelError",
    "InsufficientBalanceError",
    "InternalServerError",
    "InvalidInputError",
    "InvalidRequestError",
    "MediaRequest",
    "MediaTask",
    "ModelSpec",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "PollResult",
    "Poller",
    "PollerClosedError",
    "RateLimitError",
    "RetryPolicy",
    "SunoTrack",
    "TaskFailedError",
    "TaskState",
    "TaskTimeoutError",
    "__version__",
]
