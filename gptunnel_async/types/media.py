"""Responses of the media API (``/v1/media/create``, ``/v1/media/result``).

Tolerant by design: extra fields are kept, an unknown status means "still running" (never a
crash), ``created_at`` survives the docs' own typos, and a Suno task's ``result`` (a list of
tracks) parses beside the ``url`` of other models.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from ._status import TaskState, classify_status

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

    model_config = ConfigDict(extra="allow")

    id: Optional[str] = None
    status: Optional[str] = None
    audio_url: Optional[str] = None
    duration: Optional[float] = None
    title: Optional[str] = None


class MediaTask(BaseModel):
    """A media generation task, as create and result return it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    #: Which endpoint the poller polls this task at.
    poll_kind: ClassVar[str] = "media"

    id: str
    code: int = 0
    model: Optional[str] = None
    prompt: Optional[str] = None
    created_at: Optional[datetime] = None
    status: str = "idle"
    url: Optional[str] = None
    message: Optional[str] = None
    error: Optional[Any] = None
    input: Optional[dict[str, Any]] = None
    result: Optional[list[SunoTrack]] = Field(default=None)

    # When this process sent the create (event-loop clock), so waits know the task's age.
    _created_mono: Optional[float] = PrivateAttr(default=None)
    # The client that fetched this task, so ``download()`` needs no client argument.
    _client: Any = PrivateAttr(default=None)

    def bind(self, client: Any) -> MediaTask:
        self._client = client
        return self

    async def download(self, destination: Union[str, os.PathLike[str]], **kwargs: Any) -> Path:
        """Save the result file (see ``AsyncGPTunnel.download``); returns its path."""
        if self._client is None:
            raise RuntimeError("this task is not bound to a client: use client.download(task, ...)")
        path: Path = await self._client.download(self, destination, **kwargs)
        return path

    def mark_created(self, loop_time: float) -> None:
        self._created_mono = loop_time

    @property
    def created_mono(self) -> Optional[float]:
        """Event-loop time at which this process sent the create; ``None`` if not known."""
        return self._created_mono

    @field_validator("created_at", mode="before")
    @classmethod
    def _created_at(cls, value: Any) -> Optional[datetime]:
        return to_aware_datetime(value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> str:
        return "idle" if value is None else str(value)

    @field_validator("result", mode="before")
    @classmethod
    def _result(cls, value: Any) -> Any:
        # Only Suno documents a list here; anything else is kept in extras, not a crash.
        return value if isinstance(value, list) else None

    @property
    def state(self) -> TaskState:
        """``running``, ``done`` or ``failed``; an unknown status counts as running."""
        return classify_status(self.status)

    @property
    def is_done(self) -> bool:
        return self.state is TaskState.DONE

    @property
    def is_failed(self) -> bool:
        return self.state is TaskState.FAILED

    @property
    def is_finished(self) -> bool:
        return self.state is not TaskState.RUNNING

    @property
    def failure_reason(self) -> str:
        """The server's reason for a failed task, as far as it gave one."""
        for candidate in (self.error, self.message):
            if isinstance(candidate, str) and candidate:
                return candidate
            if isinstance(candidate, dict):
                msg = candidate.get("message")
                if isinstance(msg, str) and msg:
                    return msg
        return f"status {self.status!r}"

    @property
    def urls(self) -> list[str]:
        """Every result link: ``url``, and each Suno track's ``audio_url``."""
        links = [self.url] if self.url else []
        for track in self.result or []:
            if track.audio_url and track.audio_url not in links:
                links.append(track.audio_url)
        return links

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
