"""The task object of Midjourney, FaceSwap and BGRemover, and Midjourney's actions.

One documented shape (``id``, ``parentId``, ``type``, ``actions``, ``percent``, ``status``,
``result``, ``error``, ``usage``) serves three API groups. Parsing is tolerant like the media
models: extra fields are kept, an unknown status means "still running", ``percent`` is always a
number (the poller schedules by it). The provider's action names, typos included
(``upsamle_1``), are mapped to what a user can act on: ``can_upsample``, ``can_vary`` ...
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._task import TaskBase

#: Task types that produce a 2x2 grid (their images are numbered 1..4).
GRID_TYPES = frozenset({"imagine", "variation", "reroll", "inpaint", "outpaint", "pan"})

_NUMBERED = re.compile(r"^(?P<name>[a-z]+)_(?P<n>\d+)$")
_SCALED = re.compile(r"^(?P<name>outpaint|upscale)_(?P<scale>\d+(?:\.\d+)?)x$")


def canonical_action(action: str) -> str:
    """An action in one canonical spelling (the provider's ``upsamle_1`` → ``upsample_1``)."""
    text = action.strip().lower().replace("-", "_")
    m = _NUMBERED.match(text)
    if m and m["name"].startswith("ups") and m["name"] != "upscale":
        return f"upsample_{m['n']}"  # "upsamle", "upsample", "upsampl" ...
    if m and m["name"].startswith("var"):
        return f"variation_{m['n']}"
    return text


class Usage(BaseModel):
    """What a task cost (``total_cost`` in the organisation's currency)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow")

    prompt_tokens: Optional[float] = None
    completion_tokens: Optional[float] = None
    total_tokens: Optional[float] = None
    prompt_cost: Optional[float] = None
    completion_cost: Optional[float] = None
    total_cost: Optional[float] = None


class TaskObject(TaskBase):
    """The documented ``object: "task"`` shape shared by Midjourney, FaceSwap and BGRemover."""

    poll_kind: ClassVar[str] = "task"

    parent_id: Optional[str] = Field(default=None, alias="parentId")
    object: Optional[str] = None
    type: Optional[str] = None
    actions: list[str] = Field(default_factory=list)
    percent: float = 0.0
    result: Optional[str] = None
    usage: Optional[Usage] = None

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> list[str]:
        if not isinstance(value, list):
            return []
        return [str(a) for a in value if isinstance(a, (str, int, float))]

    @field_validator("percent", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> float:
        # Always a number in 0..100: the poller uses it to predict the finish.
        if isinstance(value, bool) or value is None:
            return 0.0
        try:
            number = float(str(value).strip().rstrip("%")) if isinstance(value, str) else value
            number = float(number)
        except (TypeError, ValueError):
            return 0.0
        if number != number:
            return 0.0
        return min(max(number, 0.0), 100.0)

    @field_validator("result", mode="before")
    @classmethod
    def _result(cls, value: Any) -> Optional[str]:
        return value if isinstance(value, str) and value else None

    @field_validator("usage", mode="before")
    @classmethod
    def _usage(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else None

    @property
    def model(self) -> Optional[str]:
        """A key the adaptive schedule learns durations under (one per task type)."""
        return f"{self.poll_kind}/{self.type}" if self.type else self.poll_kind

    @property
    def url(self) -> Optional[str]:
        """The result link once done (``None`` before: ``result`` may then be a preview)."""
        return self.result if self.is_done else None

    @property
    def urls(self) -> list[str]:
        return [self.url] if self.url else []

    @property
    def cost(self) -> Optional[float]:
        """What this task was billed, from ``usage.total_cost``."""
        return self.usage.total_cost if self.usage else None


class MidjourneyTask(TaskObject):
    """A Midjourney task: a grid (imagine, variation, reroll ...), an upsample, or an upscale.

    Read ``can_upsample``/``can_vary``/``allows(...)`` to see what it offers next; those come
    from ``actions``, which the provider fills only once the task is done.
    """

    poll_kind: ClassVar[str] = "midjourney"

    @property
    def preview_url(self) -> Optional[str]:
        """The intermediate preview while running (``percent`` < 100) [doc]."""
        return self.result if not self.is_finished and self.result else None

    @property
    def is_upsample(self) -> bool:
        """A single image picked from a grid (inpaint, outpaint, pan, upscale work on it)."""
        return self.type == "upsample"

    @property
    def is_grid(self) -> bool:
        return self.type in GRID_TYPES

    @property
    def canonical_actions(self) -> list[str]:
        """``actions`` in canonical spelling (``upsamle_1`` → ``upsample_1``)."""
        return [canonical_action(a) for a in self.actions]

    def _numbered(self, name: str) -> list[int]:
        out: list[int] = []
        for action in self.canonical_actions:
            m = _NUMBERED.match(action)
            if m and m["name"] == name:
                out.append(int(m["n"]))
        return sorted(set(out))

    def _scaled(self, name: str) -> list[float]:
        out: list[float] = []
        for action in self.canonical_actions:
            m = _SCALED.match(action)
            if m and m["name"] == name:
                out.append(float(m["scale"]))
        return sorted(set(out))

    @property
    def can_upsample(self) -> list[int]:
        """Image numbers that ``upsample(task, n)`` accepts."""
        return self._numbered("upsample")

    @property
    def can_vary(self) -> list[int]:
        """Image numbers that ``variation(task, image=n)`` accepts."""
        return self._numbered("variation")

    @property
    def variation_modes(self) -> list[str]:
        """Modes that ``variation(task, mode=...)`` accepts (``high``/``low``, on an upsample)."""
        acts = set(self.canonical_actions)
        return [m for m in ("high", "low") if f"{m}_variation" in acts]

    @property
    def can_outpaint(self) -> list[float]:
        """Zoom factors for ``outpaint`` (1.5, 2.0)."""
        return self._scaled("outpaint")

    @property
    def can_upscale(self) -> list[float]:
        """Scale factors for ``upscale`` (2.0, 4.0)."""
        return self._scaled("upscale")

    @property
    def can_pan(self) -> list[str]:
        """Directions for ``pan``."""
        prefix = "pan_"
        return [a[len(prefix) :] for a in self.canonical_actions if a.startswith(prefix)]

    @property
    def can_reroll(self) -> bool:
        return "reroll" in self.canonical_actions

    @property
    def can_inpaint(self) -> bool:
        return "inpaint" in self.canonical_actions

    def allows(self, action: str) -> bool:
        """Whether the task offers ``action``: a family (``"upsample"``, ``"pan"``,
        ``"variation"``) or an exact one (``"upsample_2"``, ``"upsamle_2"``, ``"pan_left"``).
        """
        wanted = canonical_action(action)
        acts = set(self.canonical_actions)
        if wanted in acts:
            return True
        if wanted == "variation" and self.variation_modes:
            return True
        return any(a.startswith(wanted + "_") for a in acts)
