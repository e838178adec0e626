"""Balance, the LLM model list, and the answer of the synchronous ``/media/generate``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .media import to_aware_datetime


class Balance(BaseModel):
    """``GET /v1/balance``: rubles; ``balance`` may be negative down to the credit limit."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow", populate_by_name=True)

    org_id: Optional[str] = Field(default=None, alias="orgId")
    object: Optional[str] = None
    balance: float
    credit_limit: Optional[float] = Field(default=None, alias="creditLimit")

    @property
    def available(self) -> float:
        """What can still be spent: the balance plus the credit limit (if any)."""
        return self.balance + (self.credit_limit or 0.0)


class LLMModel(BaseModel):
    """One entry of ``GET /v1/models`` (chat models and their per-token prices)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(
        extra="allow", populate_by_name=True, protected_namespaces=()
    )

    id: str
    object: Optional[str] = None
    created: Optional[datetime] = None
    title: Optional[str] = None
    max_capacity: Optional[int] = None
    cost_context: Optional[float] = None
    cost_completion: Optional[float] = None

    @field_validator("created", mode="before")
    @classmethod
    def _created(cls, value: Any) -> Optional[datetime]:
        return to_aware_datetime(value)


class ModelList(BaseModel):
    """``GET /v1/models``: ``{"object": "list", "data": [...]}``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow")

    object: Optional[str] = None
    data: list[LLMModel] = Field(default_factory=list)


class GeneratedImage(BaseModel):
    """``POST /v1/media/generate``: the finished image at once (its link lives about 24 h)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow", protected_namespaces=())

    id: Optional[str] = None
    result: Optional[str] = None
    cost: Optional[float] = None
    model: Optional[str] = None

    @property
    def url(self) -> Optional[str]:
        return self.result
