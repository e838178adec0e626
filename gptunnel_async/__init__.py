"""Async SDK for GPTunnel's media-generation API (asyncio and trio, through anyio).

Every public name is imported on first use (PEP 562), so ``import gptunnel_async`` costs almost
nothing and a program pays only for what it touches: a bot on a serverless cold start, or
``gptunnel --help``. Type checkers and IDEs see the ordinary imports under ``TYPE_CHECKING``;
``_EXPORTS`` says where each name lives at run time (a test keeps the two in step).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._imports import import_httpx_without_its_cli
from ._version import __version__

if TYPE_CHECKING:
    from ._client import AsyncGPTunnel, ConfigurationError
    from ._errors import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        CoordinatorUnavailableError,
        CreateOutcomeUnknownError,
        GPTunnelError,
        InsufficientBalanceError,
        InternalServerError,
        InvalidInputError,
        InvalidRequestError,
        NotFoundError,
        PermissionDeniedError,
        PollerClosedError,
        RateLimitError,
        TaskFailedError,
        TaskTimeoutError,
    )
    from ._polling.policy import AdaptivePolicy, FixedIntervalPolicy, PollPolicy
    from ._polling.shared import SharedLimits
    from ._retry import RetryPolicy
    from .catalog import MODELS, ModelSpec
    from .poller import (
        BatchResult,
        MediaRequest,
        Poller,
        PollerOptions,
        PollResult,
        generate_many,
    )
    from .types import (
        Balance,
        BGRemoverTask,
        FaceSwapTask,
        GeneratedImage,
        LLMModel,
        MediaTask,
        MidjourneyTask,
        SunoTrack,
        TaskState,
        Usage,
    )

_ERRORS = (
    "APIConnectionError APIError APIResponseValidationError APIStatusError APITimeoutError "
    "AuthenticationError CoordinatorUnavailableError CreateOutcomeUnknownError GPTunnelError "
    "InsufficientBalanceError "
    "InternalServerError InvalidInputError InvalidRequestError NotFoundError "
    "PermissionDeniedError PollerClosedError RateLimitError TaskFailedError TaskTimeoutError"
)
_POLICIES = "AdaptivePolicy FixedIntervalPolicy PollPolicy"
_POLLER = "BatchResult MediaRequest Poller PollerOptions PollResult generate_many"
_TYPES = (
    "Balance BGRemoverTask FaceSwapTask GeneratedImage LLMModel MediaTask MidjourneyTask "
    "SunoTrack TaskState Usage"
)
#: public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "AsyncGPTunnel": "._client",
    "ConfigurationError": "._client",
    "RetryPolicy": "._retry",
    "SharedLimits": "._polling.shared",
    "MODELS": ".catalog",
    "ModelSpec": ".catalog",
    **dict.fromkeys(_ERRORS.split(), "._errors"),
    **dict.fromkeys(_POLICIES.split(), "._polling.policy"),
    **dict.fromkeys(_POLLER.split(), ".poller"),
    **dict.fromkeys(_TYPES.split(), ".types"),
}

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
    "BGRemoverTask",
    "Balance",
    "BatchResult",
    "ConfigurationError",
    "CoordinatorUnavailableError",
    "CreateOutcomeUnknownError",
    "FaceSwapTask",
    "FixedIntervalPolicy",
    "GPTunnelError",
    "GeneratedImage",
    "InsufficientBalanceError",
    "InternalServerError",
    "InvalidInputError",
    "InvalidRequestError",
    "LLMModel",
    "MediaRequest",
    "MediaTask",
    "MidjourneyTask",
    "ModelSpec",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "PollResult",
    "Poller",
    "PollerClosedError",
    "PollerOptions",
    "RateLimitError",
    "RetryPolicy",
    "SharedLimits",
    "SunoTrack",
    "TaskFailedError",
    "TaskState",
    "TaskTimeoutError",
    "Usage",
    "__version__",
    "generate_many",
]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use, then cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import_httpx_without_its_cli()
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
