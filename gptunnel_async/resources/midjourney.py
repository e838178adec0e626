"""``client.midjourney``: imagine, result, the follow-up actions, and waiting for them.

Every action creates a child task (billed, except upsample on MJ v5+), so each is sent as a
``RequestKind.CREATE`` and checked locally first. Given the parent as a ``MidjourneyTask``, the
check uses its ``type`` and ``actions`` (a stale, unfinished snapshot is refreshed once); given a
bare id, only the parameter ranges are checked and the server judges the rest.

::

    grid = await client.midjourney.generate("an old IBM PC on a light background")
    up = await client.midjourney.generate_upsample(grid, 2)
    vary = await client.midjourney.wait(await client.midjourney.variation(up, mode="high"))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Union

from .._errors import InvalidInputError
from .._images import ImageInput, mask_to_base64
from .._validation import check_task_id, check_text
from ..types.midjourney import MidjourneyTask
from ._base import TaskResource

if TYPE_CHECKING:
    pass

BASE = "/v1/midjourney"
RESULT_PATH = f"{BASE}/result"
#: Midjourney tasks take about a minute; a wait gives up after this unless told otherwise.
DEFAULT_WAIT_TIMEOUT = 1800.0

ParentTask = Union[MidjourneyTask, str]
VariationMode = Literal["high", "low"]
PanDirection = Literal["left", "right", "up", "down"]
MidjourneyProgress = Callable[[MidjourneyTask], "Awaitable[None] | None"]

_MODES = ("high", "low")
#: Task types whose result offers no further action.
FINAL_TYPES = frozenset({"upscale"})
_DIRECTIONS = ("left", "right", "up", "down")
_ZOOMS = (1.5, 2.0)
_SCALES = (2, 4)


def check_image_number(image: Any) -> int:
    """A grid image number: an int from 1 to 4 [doc]."""
    if isinstance(image, bool) or not isinstance(image, int) or not 1 <= image <= 4:
        raise InvalidInputError(
            f"image must be an integer from 1 to 4 (a grid cell); got {image!r}"
        )
    return image


def _format_allowed(task: MidjourneyTask) -> str:
    acts = task.canonical_actions
    return ", ".join(acts) if acts else "nothing (a final task)"


def _fmt_scale(value: float) -> str:
    return f"{value:g}x"


class MidjourneyResource(TaskResource[MidjourneyTask]):
    """``client.midjourney``: imagine, the follow-up actions, and their results."""

    _task_type = MidjourneyTask
    _result_path = RESULT_PATH

    # -- create and read --

    async def imagine(
        self, prompt: str, *, use_wallet_balance: bool | None = None
    ) -> MidjourneyTask:
        """Start a 2x2 grid from a text prompt (billed; repeating it creates another task).

        ``use_wallet_balance=True`` pays from the personal wallet instead of the organisation.
        """
        check_text("prompt", prompt)
        body: dict[str, Any] = {"prompt": prompt}
        if use_wallet_balance is not None:
            body["useWalletBalance"] = bool(use_wallet_balance)
        return await self._create("imagine", body)

    # -- actions --

    async def upsample(
        self, task: ParentTask, image: int, *, use_wallet_balance: bool | None = None
    ) -> MidjourneyTask:
        """Pick one image (1..4) of a grid as a single, larger image (free on MJ v5+)."""
        n = check_image_number(image)
        body = await self._action_body(task, f"upsample_{n}", use_wallet_balance)
        body["image"] = n
        return await self._create("upsample", body)

    async def variation(
        self,
        task: ParentTask,
        image: int | None = None,
        mode: VariationMode | None = None,
        *,
        use_wallet_balance: bool | None = None,
    ) -> MidjourneyTask:
        """Vary one image of a grid (``image`` 1..4), or an upsample (``mode`` high/low).

        The docs require ``image`` for a grid's ``variation_N`` and ``mode`` when the parent is
        an upsample; a parent given as a task is checked for both before anything is billed.
        """
        if image is not None:
            image = check_image_number(image)
        if mode is not None and mode not in _MODES:
            raise InvalidInputError(f"mode must be 'high' or 'low'; got {mode!r}")
        if image is None and mode is None:
            if isinstance(task, MidjourneyTask) and task.is_upsample:
                raise InvalidInputError(
                    "variation of an upsample needs mode='high' or mode='low' (the docs require it)"
                )
            raise InvalidInputError(
                "variation needs image=1..4 (for a grid) or mode='high'/'low' (for an upsample)"
            )
        wanted = f"variation_{image}" if image is not None else f"{mode}_variation"
        body = await self._action_body(task, wanted, use_wallet_balance)
        if image is not None:
            body["image"] = image
        if mode is not None:
            body["mode"] = mode
        return await self._create("variation", body)

    async def inpaint(
        self,
        task: ParentTask,
        mask: ImageInput,
        prompt: str | None = None,
        *,
        use_wallet_balance: bool | None = None,
    ) -> MidjourneyTask:
        """Redraw part of an upsample: ``mask`` is a black-and-white PNG of the image's size
        (black = keep, white = change) as bytes, a path, or base64; ``prompt`` optionally says
        what to draw there.
        """
        if isinstance(task, MidjourneyTask) and task.type and not task.is_upsample:
            raise InvalidInputError(
                f"inpaint works only on an upsample task; {task.id} is a {task.type!r} "
                "(upsample one of its images first)"
            )
        if prompt is not None:
            check_text("prompt", prompt)
        encoded = await mask_to_base64(mask)
        body = await self._action_body(task, "inpaint", use_wallet_balance)
        body["mask"] = encoded
        if prompt is not None:
            body["prompt"] = prompt
        return await self._create("inpaint", body)

    async def outpaint(
        self, task: ParentTask, zoom: float = 2.0, *, use_wallet_balance: bool | None = None
    ) -> MidjourneyTask:
        """Zoom out an upsample by 1.5x or 2x, drawing the new border."""
        if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or zoom not in _ZOOMS:
            raise InvalidInputError(f"zoom must be 1.5 or 2; got {zoom!r}")
        body = await self._action_body(task, f"outpaint_{_fmt_scale(zoom)}", use_wallet_balance)
        body["zoom"] = zoom
        return await self._create("outpaint", body)

    async def pan(
        self, task: ParentTask, direction: PanDirection, *, use_wallet_balance: bool | None = None
    ) -> MidjourneyTask:
        """Extend an upsample to one side (``left``, ``right``, ``up``, ``down``)."""
        if direction not in _DIRECTIONS:
            raise InvalidInputError(f"direction must be one of {_DIRECTIONS}; got {direction!r}")
        body = await self._action_body(task, f"pan_{direction}", use_wallet_balance)
        body["direction"] = direction
        return await self._create("pan", body)

    async def upscale(
        self, task: ParentTask, scale: int = 2, *, use_wallet_balance: bool | None = None
    ) -> MidjourneyTask:
        """Enlarge an upsample 2x or 4x (the result is final: it offers no further actions)."""
        if isinstance(scale, bool) or scale not in _SCALES:
            raise InvalidInputError(f"scale must be 2 or 4; got {scale!r}")
        body = await self._action_body(task, f"upscale_{scale}x", use_wallet_balance)
        body["scale"] = scale
        return await self._create("upscale", body)

    async def reroll(
        self, task: ParentTask, *, use_wallet_balance: bool | None = None
    ) -> MidjourneyTask:
        """Run a grid's prompt again: a new grid."""
        body = await self._action_body(task, "reroll", use_wallet_balance)
        return await self._create("reroll", body)

    # -- waiting --

    async def wait(
        self,
        task: MidjourneyTask | str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: MidjourneyProgress | None = None,
    ) -> MidjourneyTask:
        """Poll until the task finishes; ``TaskFailedError`` if it failed.

        ``on_progress`` sees every unfinished state, with ``percent`` and (once it started)
        the intermediate ``preview_url``. The schedule uses ``percent`` to aim at the finish.
        """
        return await self._wait(
            task,
            timeout=timeout,
            on_progress=on_progress,
            resume_hint="client.midjourney.wait(task_id)",
        )

    async def generate(
        self,
        prompt: str,
        *,
        use_wallet_balance: bool | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: MidjourneyProgress | None = None,
    ) -> MidjourneyTask:
        """``imagine`` then ``wait``: the finished grid."""
        task = await self.imagine(prompt, use_wallet_balance=use_wallet_balance)
        return await self.wait(task, timeout=timeout, on_progress=on_progress)

    async def generate_upsample(
        self,
        task: ParentTask,
        image: int,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: MidjourneyProgress | None = None,
    ) -> MidjourneyTask:
        """``upsample`` then ``wait``: the finished single image."""
        child = await self.upsample(task, image)
        return await self.wait(child, timeout=timeout, on_progress=on_progress)

    async def generate_variation(
        self,
        task: ParentTask,
        image: int | None = None,
        mode: VariationMode | None = None,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        on_progress: MidjourneyProgress | None = None,
    ) -> MidjourneyTask:
        """``variation`` then ``wait``."""
        child = await self.variation(task, image, mode)
        return await self.wait(child, timeout=timeout, on_progress=on_progress)

    # -- internals --

    async def _action_body(
        self, task: ParentTask, wanted: str, use_wallet_balance: bool | None
    ) -> dict[str, Any]:
        """``{"taskId": ...}`` after checking ``wanted`` against the parent, when it is a task."""
        if isinstance(task, MidjourneyTask):
            parent = task
            if not parent.is_finished:
                parent = await self.result(parent.id)  # a stale snapshot: look once
            if parent.is_failed:
                raise InvalidInputError(f"task {parent.id} failed; it offers no actions")
            if not parent.is_done:
                raise InvalidInputError(
                    f"task {parent.id} is not finished yet ({parent.percent:g} %); "
                    "wait for it first (client.midjourney.wait)"
                )
            # An empty list is trusted only for a known final type: elsewhere it may just be
            # a provider that did not list them, and the server still judges.
            final = not parent.actions and parent.type in FINAL_TYPES
            if (parent.actions or final) and not parent.allows(wanted):
                raise InvalidInputError(
                    f"task {parent.id} ({parent.type}) does not offer {wanted!r}; "
                    f"it offers: {_format_allowed(parent)}"
                )
            task_id = parent.id
        else:
            task_id = check_task_id(task)
        body: dict[str, Any] = {"taskId": task_id}
        if use_wallet_balance is not None:
            body["useWalletBalance"] = bool(use_wallet_balance)
        return body

    async def _create(self, endpoint: str, body: dict[str, Any]) -> MidjourneyTask:
        return await self._create_task(f"{BASE}/{endpoint}", body)
