"""``/v1/media/*``: asynchronous create/result, Suno's own shape, and synchronous generate."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import anyio

from gptunnel_async.catalog import MODELS, SUNO_VERSIONS, ModelSpec

from ._context import Call
from ._files import link
from ._http import (
    Response,
    error_response,
    issue,
    json_response,
    one_of,
    required,
    validation_error,
)
from ._state import Task

CREATE_ROUTE = "POST /v1/media/create"
GENERATE_ROUTE = "POST /v1/media/generate"
SIZES = ("1K", "2K", "3K", "4K")
_CREATE_MODELS = [m.id for m in MODELS.values() if m.endpoint == "create"]
_GENERATE_MODELS = [m.id for m in MODELS.values() if m.endpoint == "generate"]


def _type_name(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}.get(
        type(value), "null" if value is None else "string"
    )


def _enum_issue(path: str, allowed: list[str] | tuple[str, ...], value: object) -> dict[str, Any]:
    expected = one_of(allowed)
    return issue(path, expected, f"Invalid enum value. Expected {expected}, received '{value}'")


def _check_model(body: dict[str, Any], allowed: list[str]) -> tuple[ModelSpec | None, list[Any]]:
    model = body["model"]
    spec = MODELS.get(model) if isinstance(model, str) else None
    if spec is None or spec.id not in allowed:
        return None, [_enum_issue("model", allowed, model)]
    return spec, []


def _check_common(body: dict[str, Any], spec: ModelSpec, ar_field: str) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        issues.append(issue("prompt", "string", f"Expected string, received {_type_name(prompt)}"))
    elif spec.prompt_max_len is not None and len(prompt) > spec.prompt_max_len:
        n = spec.prompt_max_len
        issues.append(
            issue("prompt", f"string (max {n})", f"String must contain at most {n} character(s)")
        )
    ar = body.get(ar_field)
    if ar is not None and spec.ar is not None:
        if not spec.ar:
            issues.append(
                issue(ar_field, "undefined", f"Model '{spec.id}' does not accept '{ar_field}'")
            )
        elif ar not in spec.ar:
            issues.append(_enum_issue(ar_field, spec.ar, ar))
    images = body.get("images")
    if images is not None:
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            issues.append(
                issue("images", "array", f"Expected array, received {_type_name(images)}")
            )
        elif spec.max_images is not None and len(images) > spec.max_images:
            n = spec.max_images
            issues.append(
                issue("images", f"array (max {n})", f"Array must contain at most {n} element(s)")
            )
    return issues


def _ext(spec: ModelSpec) -> str:
    if spec.kind == "video":
        return "mp4"
    if spec.kind == "audio":
        return "mp3"
    return "png" if spec.id.startswith("gpt-image") else "webp"


def _refuse(call: Call, cost: float, wallet: bool = False) -> Response | None:
    if call.store.can_pay(cost, wallet):
        return None
    return error_response(402)


async def create(call: Call) -> Response:
    """``POST /v1/media/create``: validate like the provider, bill, and return an idle task."""
    body = call.body
    for name in ("model", "prompt"):
        if body.get(name) is None:
            return required(name)
    spec, issues = _check_model(body, _CREATE_MODELS)
    if spec is None:
        return validation_error(issues)
    issues = _check_common(body, spec, "ar")
    suno = spec.id.startswith("suno")
    version = body.get("version")
    if suno and version is not None and version not in SUNO_VERSIONS:
        issues.append(_enum_issue("version", SUNO_VERSIONS, version))
    if issues:
        return validation_error(issues)
    cost = call.store.config.cost(spec.id)
    refused = _refuse(call, cost)
    if refused is not None:
        return refused
    prompt: str = body["prompt"]
    echoed = prompt
    if spec.id == "google-imagen-3" and body.get("ar"):
        echoed = f"{prompt} --ar {body['ar']}"
    args: dict[str, Any] = {}
    if isinstance(body.get("ar"), str):
        args["ar"] = body["ar"]  # the result picture's shape
    if suno:
        keys = ("prompt", "lyric", "title", "tags", "version")
        args["input"] = {k: body[k] for k in keys if body.get(k) is not None}
        rng = call.store.rng
        args["durations"] = [round(rng.uniform(90.0, 240.0), 2) for _ in range(2)]
    task = call.store.create(
        "suno" if suno else "media",
        spec.id,
        echoed,
        duration_key=spec.id,
        ext=_ext(spec),
        cost=cost,
        now=call.now,
        args=args,
    )
    call.store.charge(cost)
    call.counters.on_create(CREATE_ROUTE, prompt)
    return json_response(media_view(task, call.base_url, call.now, call.store.faults.status_names))


def _track_id(task: Task, n: int) -> str:
    h = hashlib.md5(f"{task.id}/{n}".encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _suno_view(task: Task, base_url: str, now: float) -> dict[str, Any]:
    status = task.status(now)
    view: dict[str, Any] = {
        "code": 0,
        "id": task.id,
        "model": task.model,
        "input": task.args["input"],
        "status": status,
        "created_at": task.created_at,
        "result": [],
    }
    if status == "done":
        title = task.args["input"].get("title")
        for n, duration in enumerate(task.args["durations"], start=1):
            track: dict[str, Any] = {
                "id": _track_id(task, n),
                "status": "succeeded",
                "audio_url": link(base_url, task, f"track{n}", "mp3"),
                "duration": duration,
            }
            if title is not None:
                track["title"] = title
            view["result"].append(track)
        view["url"] = view["result"][0]["audio_url"]
    return view


def media_view(
    task: Task, base_url: str, now: float, names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The create/result shape of a media task at time ``now`` (statuses renamed by ``names``)."""
    if task.family == "suno":
        view = _suno_view(task, base_url, now)
    else:
        status = task.status(now)
        view = {
            "code": 0,
            "id": task.id,
            "model": task.model,
            "prompt": task.prompt,
            "created_at": task.created_at,
            "status": status,
            "url": link(base_url, task) if status == "done" else None,
        }
    if view["status"] == "failed":
        view["message"] = view["error"] = task.reason
    if names:
        view["status"] = names.get(view["status"], view["status"])
    return view


async def result(call: Call) -> Response:
    """``GET|POST /v1/media/result`` with ``task_id`` in the query or the body."""
    task_id = call.param("task_id")
    if task_id is None:
        return required("task_id")
    task = call.store.get(str(task_id))
    if task is None or task.family not in ("media", "suno", "generate"):
        return error_response(404, "Task not found")
    call.counters.requests_by_task[task.id] += 1
    return json_response(media_view(task, call.base_url, call.now, call.store.faults.status_names))


async def generate(call: Call) -> Response:
    """``POST /v1/media/generate``: synchronous; answers after the model's (scaled) duration."""
    body = call.body
    for name in ("model", "prompt"):
        if body.get(name) is None:
            return required(name)
    spec, issues = _check_model(body, _GENERATE_MODELS)
    if spec is None:
        return validation_error(issues)
    issues = _check_common(body, spec, "aspect_ratio")
    size = body.get("size")
    if size is not None and size not in SIZES:
        issues.append(_enum_issue("size", SIZES, size))
    fmt = body.get("response_format")
    if fmt is not None and fmt != "url":
        issues.append(_enum_issue("response_format", ["url"], fmt))
    if issues:
        return validation_error(issues)
    cost = call.store.config.cost(spec.id)
    refused = _refuse(call, cost)
    if refused is not None:
        return refused
    store = call.store
    task = store.create(
        "generate",
        spec.id,
        body["prompt"],
        duration_key=spec.id,
        ext="png",
        cost=cost,
        link_ttl=store.config.generate_link_ttl,
        now=call.now,
        args={"ar": body["aspect_ratio"]} if isinstance(body.get("aspect_ratio"), str) else {},
    )
    store.charge(cost)
    call.counters.on_create(GENERATE_ROUTE, body["prompt"])
    await anyio.sleep(max(0.0, task.t_end - call.now))
    if task.fate == "failed":
        return error_response(500, f"Generation failed: {task.reason}")
    if task.fate == "never":
        return error_response(504, "Generation timed out")
    return json_response(
        {"id": task.id, "result": link(call.base_url, task), "cost": cost, "model": spec.id}
    )
