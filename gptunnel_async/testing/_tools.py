"""FaceSwap, BGRemover, balance and the LLM model list."""

from __future__ import annotations

from typing import Any, Final

from ._context import Call, Handler
from ._http import Response, error_response, json_response, required
from ._midjourney import lookup, task_view

MODELS_LIST: Final = [
    ("gpt-4o", "GPT-4o", 128000, 0.5, 1.5),
    ("gpt-4o-mini", "GPT-4o mini", 128000, 0.03, 0.12),
    ("claude-3-5-sonnet", "Claude 3.5 Sonnet", 200000, 0.6, 3.0),
    ("deepseek-r1", "DeepSeek R1", 64000, 0.1, 0.4),
]
_IMAGE_PREFIXES: Final = ("http://", "https://", "data:image/")


def _image_field(body: dict[str, Any], name: str) -> str | Response:
    value = body.get(name)
    if value is None:
        return required(name)
    if not isinstance(value, str) or not value.startswith(_IMAGE_PREFIXES):
        return error_response(400, f"'{name}' must be an image URL or a data: URL")
    return value


def tool_create(family: str, task_type: str, fields: tuple[str, ...]) -> Handler:
    """``POST /v1/<family>/create``: images are never fetched, webhooks never called."""

    async def handle(call: Call) -> Response:
        images: dict[str, str] = {}
        for name in fields:
            value = _image_field(call.body, name)
            if isinstance(value, Response):
                return value
            images[name] = value
        webhook = call.body.get("webhook")
        store = call.store
        cost = store.config.cost(family)
        if not store.can_pay(cost):
            return error_response(402)
        task = store.create(
            "faceswap" if family == "faceswap" else "bgremover",
            family,
            "",
            duration_key=family,
            ext="png",
            cost=cost,
            now=call.now,
            type=task_type,
            webhook=webhook if isinstance(webhook, str) else None,
            args={"images": images},
        )
        store.charge(cost)
        call.counters.on_create(f"POST /v1/{family}/create", None)
        return json_response(
            task_view(task, call.base_url, call.now, call.store.faults.status_names)
        )

    return handle


def tool_result(family: str) -> Handler:
    """``GET /v1/<family>/result?taskId=`` (POST with a body accepted too)."""

    async def handle(call: Call) -> Response:
        task = lookup(call, family)
        if isinstance(task, Response):
            return task
        call.counters.requests_by_task[task.id] += 1
        return json_response(
            task_view(task, call.base_url, call.now, call.store.faults.status_names)
        )

    return handle


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


async def balance(call: Call) -> Response:
    """``GET /v1/balance[?useWalletBalance=true]``."""
    store = call.store
    wallet = _truthy(call.param("useWalletBalance"))
    amount = store.wallet_balance if wallet else store.org_balance
    return json_response(
        {
            "orgId": store.config.org_id,
            "object": "balance",
            "balance": float(amount),
            "creditLimit": store.config.credit_limit,
        }
    )


async def models(call: Call) -> Response:
    """``GET /v1/models``: a few LLM entries in the documented shape."""
    data = [
        {
            "id": mid,
            "object": "model",
            "created": 1715367049,
            "title": title,
            "max_capacity": cap,
            "cost_context": ctx,
            "cost_completion": comp,
        }
        for mid, title, cap, ctx, comp in MODELS_LIST
    ]
    return json_response({"object": "list", "data": data})
