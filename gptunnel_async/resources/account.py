"""Balance and the LLM model list (``client.balance()``, ``client.models()``): plain reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._response import parse_model
from ..types.account import Balance, LLMModel, ModelList

if TYPE_CHECKING:
    from .._client import AsyncGPTunnel

BALANCE_PATH = "/v1/balance"
MODELS_PATH = "/v1/models"


class AccountResource:
    def __init__(self, client: AsyncGPTunnel) -> None:
        self._client = client

    async def balance(self, use_wallet_balance: bool = False) -> Balance:
        """The organisation's balance, or the personal wallet's with ``use_wallet_balance``.

        Check it before a large batch: a create on a balance too low fails with
        ``InsufficientBalanceError`` (402) only after the batch has started.
        """
        params = {"useWalletBalance": "true"} if use_wallet_balance else None
        data = await self._client.request("GET", BALANCE_PATH, params=params)
        return parse_model(Balance, data, method="GET", path=BALANCE_PATH)

    async def models(self) -> list[LLMModel]:
        """The chat (LLM) models the account can use, with their prices."""
        data = await self._client.request("GET", MODELS_PATH)
        return parse_model(ModelList, data, method="GET", path=MODELS_PATH).data
