"""One task's polling life as a pure state machine: when to look next and what an answer means.

``wait()`` and the ``Poller`` differ only in how they sleep and fetch (one loop per wait; one
heap and a few workers for thousands of tasks). Everything else is decided here, once, with no
I/O and no clock of its own (the caller passes ``now``):

- the first due time: a known creation time waits for the policy's first delay; a bare id (its
  age unknown, e.g. after a restart) is polled at once, and its first answer's ``created_at``
  gives its origin when plausible;
- what an answer means: done, failed (one ``TaskFailedError``), or still running (the policy
  learns from it; a ``percent`` becomes a progress hint; a boolean is not a percent);
- what a failed poll means: a transient error backs off (a 429 waits its ``Retry-After`` and
  is not the task's fault, so it does not count towards giving up); anything else ends it;
- the deadline: a poll is never scheduled past it, so the last look happens at the deadline at
  the latest and a task finished by then is returned; ``TaskTimeoutError`` only after that look.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from .._errors import GPTunnelError, RateLimitError, TaskFailedError, TaskTimeoutError
from .._retry import RetryPolicy, is_transient
from .._telemetry import NO_TELEMETRY, Telemetry
from ..types._status import TaskState, classify_status
from .policy import PollPolicy, TaskHint, report_running

#: A ``created_at`` older than this (or in the future) is not trusted as a task's origin.
MAX_TRUSTED_AGE = 7 * 24 * 3600.0


@dataclass(frozen=True)
class PollRules:
    """What every task of one poller (or one wait) is polled by."""

    policy: PollPolicy
    retry: RetryPolicy
    #: Consecutive failed polls (429s aside) after which a task is given up.
    max_failures: float = math.inf
    #: How a caller picks the task up again after a timeout (ends the timeout's message).
    resume_hint: str = "poll it again by id to resume"
    #: Told how long each finish took to detect (``Telemetry.task_detected``).
    telemetry: Telemetry = NO_TELEMETRY


@dataclass(frozen=True)
class PollAt:
    """Poll the task again at this event-loop time."""

    at: float


@dataclass(frozen=True)
class Finished:
    """Stop polling. ``error`` is None for a finished task, else why there is none."""

    task: Any
    error: GPTunnelError | None = None


Step = PollAt | Finished


def state_of(task: Any) -> TaskState:
    """Running, done or failed, from any task model's ``status`` (unknown means running)."""
    return classify_status(getattr(task, "status", None))


def percent_of(task: Any) -> float | None:
    """The task's progress in percent, if it reports a number (a boolean is not one)."""
    value = getattr(task, "percent", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def model_of(task: Any) -> str | None:
    model = getattr(task, "model", None)
    return model if isinstance(model, str) else None


def failure_of(task_id: str, task: Any) -> TaskFailedError:
    """The error for a task the server reports as failed, carrying the task."""
    reason = getattr(task, "failure_reason", None) or f"status {getattr(task, 'status', '?')!r}"
    return TaskFailedError(f"task {task_id} failed: {reason}", task=task)


class TaskPolling:
    """Where one task is in its polling life. Slotted and small: a poller may hold thousands."""

    __slots__ = (
        "deadline",
        "deadline_what",
        "failures",
        "final",
        "id",
        "last",
        "last_running",
        "model",
        "origin",
        "origin_known",
        "percent",
        "percent_at",
        "polls",
    )

    def __init__(
        self,
        task_id: str,
        *,
        now: float,
        snapshot: Any = None,
        model: str | None = None,
        origin: float | None = None,
    ) -> None:
        """``snapshot``: the task as last seen (e.g. the create's answer); ``origin``: when it
        was created, on the event-loop clock (``None``: unknown, so look at once)."""
        self.id = task_id
        self.last = snapshot
        self.model = model or model_of(snapshot)
        self.origin_known = origin is not None
        self.origin = origin if origin is not None else now
        self.deadline = math.inf
        self.deadline_what = ""
        self.final = False  # the next poll is the last one (it is due at the deadline)
        self.polls = 0
        self.failures = 0
        self.last_running = 0.0
        self.percent: float | None = None
        self.percent_at: float | None = None

    def limit(self, deadline: float, what: str) -> None:
        """Give up after ``deadline`` (the earliest of all limits wins); ``what`` names it."""
        if deadline < self.deadline:
            self.deadline, self.deadline_what = deadline, what

    # -- the three events --

    def start(self, rules: PollRules, now: float) -> Step:
        """The first step: finished already (a create answered with a finished task), or when
        to look first."""
        if self.last is not None and state_of(self.last) is not TaskState.RUNNING:
            return self._concluded(self.last)
        if not self.origin_known:
            return self._at(now)
        return self._at(self.origin + rules.policy.first_delay(self.model, TaskHint()))

    def answered(self, task: Any, rules: PollRules, now: float) -> Step:
        """A poll returned ``task``: finished, timed out, or when to look next."""
        self.polls += 1
        self.failures = 0
        if self.polls == 1 and not self.origin_known:
            self.origin = origin_from_created_at(task, now)
        self.model = self.model or model_of(task)
        self.last = task
        elapsed = now - self.origin
        state = state_of(task)
        if state is TaskState.DONE and self.origin_known:
            rules.policy.observe(self.model, self.last_running, elapsed)
            rules.telemetry.task_detected(self.model, elapsed - self.last_running)
        if state is not TaskState.RUNNING:
            return self._concluded(task)
        if self.origin_known:
            report_running(rules.policy, self.model, self.last_running, elapsed)
        self.last_running = elapsed
        percent = percent_of(task)
        if percent is not None and percent != self.percent:
            self.percent, self.percent_at = percent, elapsed
        if self._out_of_time(now):
            return Finished(task, self._timeout(rules))
        hint = TaskHint(self.percent, self.percent_at)
        return self._at(now + rules.policy.next_delay(self.model, elapsed, self.polls, hint))

    def failed(self, error: GPTunnelError, rules: PollRules, now: float) -> Step:
        """A poll raised ``error``: back off and look again, time out, or give up."""
        if not is_transient(error):
            return Finished(self.last, error)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, RateLimitError):  # the account's limit, not this task's trouble
            backoff = rules.retry.delay_after(1)
        else:
            self.failures += 1
            if self.failures >= rules.max_failures:
                return Finished(self.last, error)
            backoff = rules.retry.delay_after(self.failures)
        if self._out_of_time(now):
            timeout = self._timeout(rules, f"; its last poll failed: {error}")
            timeout.__cause__ = error
            return Finished(self.last, timeout)
        return self._at(now + rules.retry.delay_for(retry_after, backoff))

    # -- helpers --

    def _at(self, due: float) -> PollAt:
        """Never past the deadline: a poll due later happens at the deadline, as the last one."""
        if due >= self.deadline:
            self.final = True
            return PollAt(self.deadline)
        return PollAt(due)

    def _out_of_time(self, now: float) -> bool:
        return self.final or now >= self.deadline

    def _concluded(self, task: Any) -> Finished:
        if state_of(task) is TaskState.DONE:
            return Finished(task)
        return Finished(task, failure_of(self.id, task))

    def _timeout(self, rules: PollRules, detail: str = "") -> TaskTimeoutError:
        return TaskTimeoutError(
            f"task {self.id} did not finish within {self.deadline_what}{detail} "
            f"(it may still finish; {rules.resume_hint})",
            task=self.last,
            task_id=self.id,
        )


def origin_from_created_at(task: Any, now: float) -> float:
    """Event-loop time of a task's creation, from its wall-clock ``created_at`` if plausible."""
    created = getattr(task, "created_at", None)
    if created is None or not hasattr(created, "timestamp"):
        return now
    age = time.time() - created.timestamp()
    return now - age if 0 <= age <= MAX_TRUSTED_AGE else now
