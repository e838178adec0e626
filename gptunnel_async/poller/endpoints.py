"""Which endpoint polls which kind of task, and how to read a poll's answer.

The poller is generic over task kinds: each ``TaskKind`` names the kind, fetches one task by id
(one request, no internal retries: the poller schedules retries itself) and reads what the
schedule needs from the answer. New API groups register theirs in ``TASK_KINDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel

Fetch = Callable[["AsyncGPTunnel", str], Awaitable[Any]]


@dataclass(frozen=True)
class TaskKind:
    """How to poll one kind of task."""

    name: str
    fetch: Fetch


async def _fetch_media(client: AsyncGPTunnel, task_id: str) -> Any:
    return await client.media.fetch(task_id, max_retries=0)


async def _fetch_midjourney(client: AsyncGPTunnel, task_id: str) -> Any:
    return await client.midjourney.fetch(task_id, max_retries=0)


async def _fetch_faceswap(client: AsyncGPTunnel, task_id: str) -> Any:
    return await client.faceswap.fetch(task_id, max_retries=0)


async def _fetch_bgremover(client: AsyncGPTunnel, task_id: str) -> Any:
    return await client.bgremover.fetch(task_id, max_retries=0)


MEDIA = TaskKind("media", _fetch_media)
MIDJOURNEY = TaskKind("midjourney", _fetch_midjourney)
FACESWAP = TaskKind("faceswap", _fetch_faceswap)
BGREMOVER = TaskKind("bgremover", _fetch_bgremover)

TASK_KINDS: dict[str, TaskKind] = {k.name: k for k in (MEDIA, MIDJOURNEY, FACESWAP, BGREMOVER)}


def kind_of_task(task: Any, default: str = "media") -> TaskKind:
    """The kind of a task object (its ``poll_kind`` attribute), else ``default``."""
    name = getattr(task, "poll_kind", None) or default
    try:
        return TASK_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; known: {', '.join(TASK_KINDS)}") from None
