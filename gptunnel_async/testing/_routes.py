"""The route table: ``(method, path)`` -> handler, for every emulated endpoint."""

from __future__ import annotations

from typing import Final

from . import _media as media
from . import _midjourney as mj
from . import _tools as tools
from ._context import Handler


def _build() -> dict[tuple[str, str], Handler]:
    routes: dict[tuple[str, str], Handler] = {
        ("POST", "/v1/media/create"): media.create,
        ("POST", "/v1/media/generate"): media.generate,
        ("POST", "/v1/midjourney/imagine"): mj.imagine,
        ("POST", "/v1/faceswap/create"): tools.tool_create(
            "faceswap", "@FaceSwap", ("sourceImage", "faceImage")
        ),
        ("POST", "/v1/bgremover/create"): tools.tool_create("bgremover", "@BGRemover", ("image",)),
        ("GET", "/v1/balance"): tools.balance,
        ("GET", "/v1/models"): tools.models,
    }
    for endpoint in mj.ACTION_ENDPOINTS:
        routes["POST", f"/v1/midjourney/{endpoint}"] = mj.action(endpoint)
    results: dict[str, Handler] = {
        "/v1/media/result": media.result,
        "/v1/midjourney/result": mj.result,
        "/v1/faceswap/result": tools.tool_result("faceswap"),
        "/v1/bgremover/result": tools.tool_result("bgremover"),
    }
    for path, handler in results.items():
        routes["GET", path] = routes["POST", path] = handler
    return routes


ROUTES: Final = _build()
