"""``/v1/midjourney/*``: imagine, result, and the follow-up actions that create child tasks.

Which actions a finished task offers (spelled as the docs spell them, typo included):

* a 2x2 grid (imagine, variation, reroll, inpaint, outpaint, pan): ``upsamle_1..4``, ``reroll``,
  ``variation_1..4``;
* an upsample: ``high_variation``, ``low_variation``, ``outpaint_1.5x``, ``outpaint_2x``,
  ``pan_left|right|up|down``, ``upscale_2x``, ``upscale_4x``, ``inpaint``;
* an upscale: nothing (final).

Repeating an action with the same arguments returns the task it already created (no charge).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from ._context import Call, Handler
from ._files import is_png_base64, link
from ._http import Response, error_response, json_response, required
from ._state import Task

GRID_ACTIONS: Final = (
    *(f"upsamle_{i}" for i in range(1, 5)),
    "reroll",
    *(f"variation_{i}" for i in range(1, 5)),
)
UPSAMPLE_ACTIONS: Final = (
    "high_variation",
    "low_variation",
    "outpaint_1.5x",
    "outpaint_2x",
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "upscale_2x",
    "upscale_4x",
    "inpaint",
)
ACTION_ENDPOINTS: Final = (
    "upsample",
    "variation",
    "inpaint",
    "outpaint",
    "pan",
    "upscale",
    "reroll",
)
_DIRECTIONS: Final = ("left", "right", "up", "down")


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def actions_of(task: Task) -> tuple[str, ...]:
    if task.family != "midjourney":
        return ()
    if task.type == "upsample":
        return UPSAMPLE_ACTIONS
    if task.type == "upscale":
        return ()
    return GRID_ACTIONS


def task_view(
    task: Task, base_url: str, now: float, names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The documented task object (Midjourney, FaceSwap, BGRemover) at time ``now``."""
    status: str = task.status(now)
    percent = task.percent(now)
    result: str | None = None
    if status == "done":
        result = link(base_url, task)
    elif task.family == "midjourney" and 0 < percent < 100:
        result = link(base_url, task, "preview", "webp")
    cost = _num(task.cost)
    return {
        "id": task.id,
        "parentId": task.parent_id,
        "object": "task",
        "type": task.type,
        "actions": list(actions_of(task)) if status == "done" else [],
        "percent": percent,
        "status": names.get(status, status) if names else status,
        "result": result,
        "error": task.reason if status == "failed" else None,
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 1,
            "total_tokens": 1,
            "prompt_cost": 0,
            "completion_cost": cost,
            "total_cost": cost,
        },
    }


def lookup(call: Call, family: str) -> Task | Response:
    """The task named by ``taskId`` (or ``id``) of the given family, or the error answer."""
    task_id = call.param("taskId", "id")
    if task_id is None:
        return required("taskId")
    task = call.store.get(str(task_id))
    if task is None or task.family != family:
        return error_response(404, "Task not found")
    return task


async def imagine(call: Call) -> Response:
    prompt = call.body.get("prompt")
    if prompt is None:
        return required("prompt")
    if not isinstance(prompt, str):
        return error_response(400, "'prompt' must be a string")
    wallet = bool(call.body.get("useWalletBalance"))
    return _answer(call, _spawn(call, "imagine", prompt, None, wallet, counted_prompt=prompt))


def _answer(call: Call, outcome: Task | Response) -> Response:
    if isinstance(outcome, Response):
        return outcome
    return json_response(
        task_view(outcome, call.base_url, call.now, call.store.faults.status_names)
    )


async def result(call: Call) -> Response:
    task = lookup(call, "midjourney")
    if isinstance(task, Response):
        return task
    call.counters.requests_by_task[task.id] += 1
    return json_response(task_view(task, call.base_url, call.now, call.store.faults.status_names))


def _spawn(
    call: Call,
    kind: str,
    prompt: str,
    parent: Task | None,
    wallet: bool,
    counted_prompt: str | None = None,
    args: dict[str, Any] | None = None,
) -> Task | Response:
    store = call.store
    cost = store.config.cost(f"midjourney/{kind}")
    if not store.can_pay(cost, wallet):
        return error_response(402)
    task = store.create(
        "midjourney",
        "midjourney",
        prompt,
        duration_key=f"midjourney/{kind}",
        ext="png",
        cost=cost,
        now=call.now,
        type=kind,
        parent_id=parent.id if parent else None,
        args=args or {},
    )
    store.charge(cost, wallet)
    call.counters.on_create(f"POST /v1/midjourney/{kind}", counted_prompt)
    return task


def _image_index(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        n = int(value)
        return n if 1 <= n <= 4 else None
    return None


def _scale(value: object, allowed: tuple[str, ...]) -> str | None:
    text = str(value).lower().removesuffix("x")
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text}x" if f"{text}x" in allowed else None


def _action_name(endpoint: str, body: dict[str, Any], parent: Task) -> str | Response:
    """Which action of the parent this request asks for, or the 400 that refuses it."""
    if endpoint == "upsample" or (endpoint == "variation" and "image" in body):
        if body.get("image") is None:
            return required("image")
        n = _image_index(body["image"])
        if n is None:
            return error_response(400, "'image' must be an integer from 1 to 4")
        return f"{'upsamle' if endpoint == 'upsample' else 'variation'}_{n}"
    if endpoint == "variation":
        mode = body.get("mode")
        if mode is None:
            return required("mode" if parent.type == "upsample" else "image")
        if mode not in ("high", "low"):
            return error_response(400, "'mode' must be one of 'high', 'low'")
        return f"{mode}_variation"
    if endpoint == "inpaint":
        if body.get("mask") is None:
            return required("mask")
        if not is_png_base64(body["mask"]):
            return error_response(400, "'mask' must be a base64-encoded PNG image")
        return "inpaint"
    if endpoint == "outpaint":
        zoom = _scale(body.get("zoom", body.get("scale", 2)), ("1.5x", "2x"))
        return f"outpaint_{zoom}" if zoom else error_response(400, "'zoom' must be 1.5 or 2")
    if endpoint == "pan":
        direction = body.get("direction")
        if direction is None:
            return required("direction")
        if direction not in _DIRECTIONS:
            return error_response(400, "'direction' must be one of 'left', 'right', 'up', 'down'")
        return f"pan_{direction}"
    if endpoint == "upscale":
        scale = _scale(body.get("scale", body.get("type", 2)), ("2x", "4x"))
        return f"upscale_{scale}" if scale else error_response(400, "'scale' must be 2 or 4")
    return "reroll"


def action(endpoint: str) -> Handler:
    """The handler of ``POST /v1/midjourney/<endpoint>`` for a follow-up action."""

    async def handle(call: Call) -> Response:
        parent = lookup(call, "midjourney")
        if isinstance(parent, Response):
            return parent
        if parent.status(call.now) != "done":
            return error_response(400, f"Task {parent.id} is not done yet")
        name = _action_name(endpoint, call.body, parent)
        if isinstance(name, Response):
            return name
        if name not in actions_of(parent):
            return error_response(400, f"Action '{name}' is not available for task {parent.id}")
        prompt = call.body.get("prompt") if endpoint == "inpaint" else None
        mask = str(call.body.get("mask", ""))
        digest = hashlib.blake2s(f"{prompt}\0{mask}".encode(), digest_size=8).hexdigest()
        key = (parent.id, name, digest)
        existing = call.store.actions.get(key)
        if existing is not None:
            return json_response(
                task_view(
                    call.store.tasks[existing],
                    call.base_url,
                    call.now,
                    call.store.faults.status_names,
                )
            )
        wallet = bool(call.body.get("useWalletBalance"))
        text = prompt if isinstance(prompt, str) and prompt else parent.prompt
        child = _spawn(call, endpoint, text, parent, wallet, args={"action": name})
        if isinstance(child, Task):
            call.store.actions[key] = child.id
        return _answer(call, child)

    return handle
