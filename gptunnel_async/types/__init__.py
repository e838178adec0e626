"""Typed models of every API response."""

from ._status import TaskState, classify_status
from .account import Balance, GeneratedImage, LLMModel, ModelList
from .media import MEDIA_LINK_TTL, MediaTask, SunoTrack
from .midjourney import MidjourneyTask, TaskObject, Usage
from .tools import TOOL_RESULT_TTL, BGRemoverTask, FaceSwapTask

__all__ = [
    "MEDIA_LINK_TTL",
    "TOOL_RESULT_TTL",
    "BGRemoverTask",
    "Balance",
    "FaceSwapTask",
    "GeneratedImage",
    "LLMModel",
    "MediaTask",
    "MidjourneyTask",
    "ModelList",
    "SunoTrack",
    "TaskObject",
    "TaskState",
    "Usage",
    "classify_status",
]
