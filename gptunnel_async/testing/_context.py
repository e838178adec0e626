"""What every endpoint handler gets: the task store, counters, and the request's parsed body."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._counters import Counters
from ._http import Request, Response
from ._state import TaskStore


@dataclass(slots=True)
class Call:
    """One authorised API call being handled."""

    store: TaskStore
    counters: Counters
    request: Request
    body: dict[str, Any]
    now: float = field(default_factory=time.monotonic)

    def param(self, *names: str) -> Any:
        """The first of ``names`` found in the query string or the JSON body (query first)."""
        for name in names:
            if name in self.request.query:
                return self.request.query[name]
            if self.body.get(name) is not None:
                return self.body[name]
        return None

    @property
    def base_url(self) -> str:
        return self.request.base_url


Handler = Callable[[Call], Awaitable[Response]]
