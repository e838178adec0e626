"""What every kind of task has in common: a status, a lifecycle, and its origin in this process.

Media tasks, Midjourney tasks, FaceSwap and BGRemover tasks differ in their fields but not in
what a caller asks of them (is it done? did it fail, and why?), nor in what the SDK records
about them (when this process sent the create, which client can download the result).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from ._status import TaskState, classify_status

_T = TypeVar("_T", bound="TaskBase")


class TaskBase(BaseModel):
    """Status handling and SDK bookkeeping shared by every task model."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    status: str = "idle"
    error: Optional[Any] = None

    # When this process sent the create (event-loop clock), so waits know the task's age.
    _created_mono: Optional[float] = PrivateAttr(default=None)
    # The client that fetched this task, so ``download()`` needs no client argument.
    _client: Any = PrivateAttr(default=None)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> str:
        return "idle" if value is None else str(value)

    def mark_created(self, loop_time: float) -> None:
        self._created_mono = loop_time

    @property
    def created_mono(self) -> Optional[float]:
        """Event-loop time at which this process sent the create; ``None`` if not known."""
        return self._created_mono

    def bind(self: _T, client: Any) -> _T:
        self._client = client
        return self

    def file_views(self) -> list[TaskBase]:
        """One task-like view per result file, each with its own ``url`` and an ``id`` that
        names its file. Most tasks have one file (themselves); a Suno task has one per track."""
        return [self]

    async def download(self, destination: Union[str, os.PathLike[str]], **kwargs: Any) -> Path:
        """Save the result file (see ``AsyncGPTunnel.download``); returns its path.

        A task with several files (a Suno song: one per track) saves every one of them, as
        ``download_all`` does, and returns the first one's path.
        """
        return (await self.download_all(destination, **kwargs))[0]

    async def download_all(
        self, destination: Union[str, os.PathLike[str]], **kwargs: Any
    ) -> list[Path]:
        """Save every result file; returns their paths, in order.

        With one file this is ``download``. With several, a folder ``destination`` receives
        ``<task id>_track<N>.<ext>``, and a file name ``song.mp3`` becomes ``song_track<N>.mp3``.
        """
        if self._client is None:
            raise RuntimeError("this task is not bound to a client: use client.download(task, ...)")
        views = self.file_views()
        if len(views) == 1:
            return [await self._client.download(views[0], destination, **kwargs)]
        paths: list[Path] = []
        for view in views:
            target = _per_file(destination, view.id[len(self.id) :])
            paths.append(await self._client.download(view, target, **kwargs))
        return paths

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
        for candidate in (self.error, getattr(self, "message", None)):
            if isinstance(candidate, str) and candidate:
                return candidate
            if isinstance(candidate, dict):
                message = candidate.get("message")
                if isinstance(message, str) and message:
                    return message
        return f"status {self.status!r}"


def _per_file(destination: Union[str, os.PathLike[str]], tag: str) -> Union[str, Path]:
    """Where one of several files goes: a folder stays a folder (the view's id names the file);
    a file name gets ``tag`` before its suffix."""
    text = os.fspath(destination)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return text
    path = Path(text)
    return path.with_name(f"{path.stem}{tag}{path.suffix}")
