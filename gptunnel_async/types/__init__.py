"""Typed models of every API response."""

from ._status import TaskState, classify_status
from .media import MEDIA_LINK_TTL, MediaTask, SunoTrack

__all__ = ["MEDIA_LINK_TTL", "MediaTask", "SunoTrack", "TaskState", "classify_status"]
