"""Tasks and balances: pure state, no I/O.

A task's status is computed lazily from the monotonic clock, so there are no timers:
``idle`` until ``processing_after`` of its duration, ``processing`` until the end, then its fate
(``done`` or ``failed``; a "never" task stays ``processing`` forever).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._config import EmulatorConfig
from ._faults import Fate, Faults

Status = Literal["idle", "processing", "done", "failed"]
Family = Literal["media", "suno", "generate", "midjourney", "faceswap", "bgremover"]


@dataclass(slots=True, eq=False)
class Task:
    """One task. Times ``t_*`` are ``time.monotonic()`` values; ``created_at`` is unix seconds."""

    id: str
    family: Family
    model: str
    prompt: str
    created_at: int
    t_created: float
    t_processing: float
    t_end: float  # nominal end; drives progress even for never-finishing tasks
    fate: Fate
    reason: str | None
    ext: str
    cost: float
    link_ttl: float  # real seconds after the end
    type: str = ""
    parent_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    webhook: str | None = None
    expired_at: float | None = None  # set by Emulator.expire_links()
    _expires_unix: int | None = None

    @property
    def t_done(self) -> float:
        """When the task finishes (``inf`` if it never does)."""
        return math.inf if self.fate == "never" else self.t_end

    def status(self, now: float | None = None) -> Status:
        now = time.monotonic() if now is None else now
        if now < self.t_processing:
            return "idle"
        if now < self.t_done:
            return "processing"
        return "failed" if self.fate == "failed" else "done"

    def finished_at(self, now: float | None = None) -> float | None:
        """The monotonic time it became done/failed, or None while it has not."""
        now = time.monotonic() if now is None else now
        return self.t_end if now >= self.t_done else None

    def percent(self, now: float) -> int:
        """0..100 progress; 100 only once done/failed, so a stuck task tops out at 99."""
        if now >= self.t_done:
            return 100
        if now < self.t_processing:
            return 0
        span = self.t_end - self.t_processing
        frac = (now - self.t_processing) / span if span > 0 else 1.0
        return max(0, min(99, int(frac * 100)))

    def link_expires_at(self) -> float:
        """Monotonic time after which result links answer 403."""
        if self.expired_at is not None:
            return self.expired_at
        return self.t_done + self.link_ttl

    def expires_unix(self) -> int:
        """The unix time printed in links (fixed once computed)."""
        if self._expires_unix is None:
            left = self.t_end + self.link_ttl - time.monotonic()
            self._expires_unix = math.ceil(time.time() + left)
        return self._expires_unix


class TaskStore:
    """All tasks and the two balances of the emulated organisation."""

    def __init__(self, config: EmulatorConfig, faults: Faults) -> None:
        self.config = config
        self.faults = faults
        seed = None if config.seed is None else config.seed + 1
        self.rng: random.Random = random.Random(seed)
        self.tasks: dict[str, Task] = {}
        self.actions: dict[tuple[str, str, str], str] = {}  # MJ (parent, action, args) -> child
        self.org_balance: float = config.org_balance
        self.wallet_balance: float = config.wallet_balance
        self._machine = self.rng.getrandbits(40)
        self._counter = self.rng.getrandbits(24)
        #: Called with each new task before its create is answered (``TaskFile`` saves it).
        self.on_create: Callable[[Task], None] | None = None

    def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    def new_id(self) -> str:
        """An ObjectId-like id: 24 lowercase hex (time, machine, counter)."""
        self._counter = (self._counter + 1) & 0xFFFFFF
        return f"{int(time.time()) & 0xFFFFFFFF:08x}{self._machine:010x}{self._counter:06x}"

    def can_pay(self, cost: float, wallet: bool = False) -> bool:
        balance = self.wallet_balance if wallet else self.org_balance
        return cost <= 0 or balance >= cost

    def charge(self, cost: float, wallet: bool = False) -> None:
        if wallet:
            self.wallet_balance -= cost
        else:
            self.org_balance -= cost

    def create(
        self,
        family: Family,
        model: str,
        prompt: str,
        *,
        duration_key: str,
        ext: str,
        cost: float,
        link_ttl: float | None = None,
        now: float | None = None,
        **extra: Any,
    ) -> Task:
        """Create, fate and register a task (the caller charges and counts it)."""
        cfg = self.config
        now = time.monotonic() if now is None else now
        duration = cfg.real(cfg.duration_dist(duration_key).sample(self.rng))
        fate, reason = self.faults.task_fate()
        ttl = cfg.real(cfg.link_ttl if link_ttl is None else link_ttl)
        task = Task(
            id=self.new_id(),
            family=family,
            model=model,
            prompt=prompt,
            created_at=int(time.time()),
            t_created=now,
            t_processing=now + duration * cfg.processing_after,
            t_end=now + duration,
            fate=fate,
            reason=reason,
            ext=ext,
            cost=cost,
            link_ttl=ttl,
            **extra,
        )
        self.tasks[task.id] = task
        if self.on_create is not None:
            self.on_create(task)
        return task
