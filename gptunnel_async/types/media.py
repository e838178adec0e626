"""Responses of the media API (``/v1/media/create``, ``/v1/media/result``).

Tolerant by design: extra fields are kept, an unknown status means "still running" (never a
crash), ``created_at`` survives the docs' own typos, and a Suno task's ``result`` (a list of
tracks) parses beside the ``url`` of other models.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._task import TaskBase

#: How long a media result link lives after the task finished [doc].
MEDIA_LINK_TTL = timedelta(hours=48)
_PLAUSIBLE_SINCE = datetime(2020, 1, 1, tzinfo=timezone.utc)


def to_aware_datetime(value: Any) -> Optional[datetime]:
    """Unix seconds (or ms), ISO strings and datetimes → an aware UTC datetime; junk → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_aware_datetime(float(text))
        except ValueError:
            pass
        try:
            return to_aware_datetime(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        seconds = float(value)
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        if abs(seconds) > 1e11:  # milliseconds
            seconds /= 1000.0
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return None


class SunoTrack(BaseModel):
    """One track of a Suno result."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow")

    id: Optional[str] = None
    status: Optional[str] = None
    audio_url: Optional[str] = None
    duration: Optional[float] = None
    title: Optional[str] = None


class MediaTask(TaskBase):
    """A media generation task, as create and result return it."""

    #: Which endpoint the poller polls this task at.
    poll_kind: ClassVar[str] = "media"

    code: int = 0
    model: Optional[str] = None
    prompt: Optional[str] = None
    created_at: Optional[datetime] = None
    url: Optional[str] = None
    message: Optional[str] = None
    input: Optional[dict[str, Any]] = None
    result: Optional[list[SunoTrack]] = Field(default=None)

    @field_validator("created_at", mode="before")
    @classmethod
    def _created_at(cls, value: Any) -> Optional[datetime]:
        return to_aware_datetime(value)

    @field_validator("result", mode="before")
    @classmethod
    def _result(cls, value: Any) -> Any:
        # Only Suno documents a list here; anything else is kept in extras, not a crash.
        return value if isinstance(value, list) else None

    @property
    def urls(self) -> list[str]:
        """Every result link: ``url``, and each Suno track's ``audio_url``."""
        links = [self.url] if self.url else []
        for track in self.result or []:
            if track.audio_url and track.audio_url not in links:
                links.append(track.audio_url)
        return links

    def file_views(self) -> list[TaskBase]:
        """A Suno task's tracks, one view each (``<id>_track<N>``); else the task itself."""
        tracks = [t.audio_url for t in self.result or [] if t.audio_url]
        if len(tracks) < 2:
            link = self.url or (tracks[0] if tracks else None)
            return [self if link == self.url else self.model_copy(update={"url": link})]
        return [
            self.model_copy(update={"id": f"{self.id}_track{n}", "url": link})
            for n, link in enumerate(tracks, start=1)
        ]

    @property
    def expires_at(self) -> Optional[datetime]:
        """Earliest moment the result link may stop working (48 h after creation, a safe bound).

        ``None`` when unknown: no link yet, or a ``created_at`` too odd to trust.
        """
        if not self.is_done or self.created_at is None or self.created_at < _PLAUSIBLE_SINCE:
            return None
        try:
            return self.created_at + MEDIA_LINK_TTL
        except OverflowError:  # e.g. "9999-12-31T23:59:59": no usable expiry
            return None
