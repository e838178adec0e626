"""What a task's ``status`` string means, for every kind of task.

The docs show ``idle`` and ``done``; clients in the wild also meet ``processing``, ``running``,
``failed``, ``error``, ``cancelled``. Anything not known to be finished is still running: a new
status from the provider must never crash a caller or end a wait early.
"""

from __future__ import annotations

import enum


class TaskState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


DONE_STATUSES = frozenset({"done", "succeeded", "success", "completed", "complete", "finished"})
FAILED_STATUSES = frozenset(
    {"failed", "failure", "error", "errored", "cancelled", "canceled", "rejected", "expired"}
)


def classify_status(status: str | None) -> TaskState:
    value = (status or "").strip().lower()
    if value in DONE_STATUSES:
        return TaskState.DONE
    if value in FAILED_STATUSES:
        return TaskState.FAILED
    return TaskState.RUNNING
