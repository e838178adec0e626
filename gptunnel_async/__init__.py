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
from .poller.policy import AdaptivePolicy, FixedIntervalPolicy, PollPolicy
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
    "MediaTask",
    "ModelSpec",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RetryPolicy",
    "SunoTrack",
    "TaskFailedError",
    "TaskState",
    "TaskTimeoutError",
    "__version__",
]
