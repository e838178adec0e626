"""Tasks that outlive the emulator's process, for offline runs that must resume.

An in-process emulator forgets its tasks at exit, so a resumed offline batch would find every
journaled task id unknown (404). ``TaskFile`` keeps each task as one JSON line, appended the
moment the task is created (before the create is answered), so a rerun's emulator knows every
task an earlier process answered a create for, however that process ended. Times are stored
as wall-clock seconds and turned back into this process's monotonic clock on load: a task keeps
running while no process serves it, as on the real service.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from ._state import Task, TaskStore

_TIMES = ("t_created", "t_processing", "t_end", "expired_at")


class TaskFile:
    """An append-only JSON-lines file of a ``TaskStore``'s tasks."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def attach(self, store: TaskStore) -> int:
        """Load the tasks saved so far into ``store`` and save every new one; returns how many
        were loaded."""
        loaded = 0
        if self.path.exists():
            shift = time.monotonic() - time.time()  # wall clock -> this process's monotonic
            for line in self.path.read_text(encoding="utf-8").splitlines():
                task = _task_from(line, shift)
                if task is not None:  # a line cut short by a kill is skipped
                    store.tasks[task.id] = task
                    loaded += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        store.on_create = self.append
        return loaded

    def append(self, task: Task) -> None:
        """One line, one ``write``: lands whole or (killed mid-way) as a torn, skipped line."""
        if self._fd is None:
            return
        shift = time.time() - time.monotonic()
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
        for name in _TIMES:
            if fields[name] is not None:
                fields[name] += shift
        data = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _task_from(line: str, shift: float) -> Task | None:
    try:
        fields: dict[str, Any] = json.loads(line)
        for name in _TIMES:
            if fields.get(name) is not None:
                fields[name] += shift
        return Task(**fields)
    except (ValueError, TypeError):
        return None
