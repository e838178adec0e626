"""FaceSwap and Background Remover tasks: the shared task object, with their own poll kinds.

Their results may be deleted after 3 days [doc]: download what you need to keep.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from .midjourney import TaskObject

#: How long a FaceSwap/BGRemover result is kept at least [doc].
TOOL_RESULT_TTL = timedelta(days=3)


class FaceSwapTask(TaskObject):
    """A FaceSwap task (``type: "@FaceSwap"``); ``url`` is the swapped image once done."""

    poll_kind: ClassVar[str] = "faceswap"


class BGRemoverTask(TaskObject):
    """A Background Remover task (``type: "@BGRemover"``); ``url`` is the cut-out image."""

    poll_kind: ClassVar[str] = "bgremover"
