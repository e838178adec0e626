"""Keep what a poll policy learned in a file, so a restart does not start cold.

The policy itself does no I/O (``AdaptivePolicy.export_state`` / ``restore_state`` trade plain
JSON values); this is the thin edge that reads and writes them. Neither function ever raises
for a bad file: a missing one is a first run, a corrupt or foreign one is ignored with a
warning, a failed save is logged — polling never depends on it. Policies without the two
methods (e.g. ``FixedIntervalPolicy`` or a user's own) are skipped.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ._logs import logger

MAX_STATE_BYTES = 1 << 20  # a few KB per model; anything this big is not ours


def load_poll_state(policy: object, path: str | os.PathLike[str]) -> bool:
    """Restore ``policy`` from ``path``; ``True`` if it took the saved state."""
    restore = getattr(policy, "restore_state", None)
    if restore is None:
        return False
    file = Path(path)
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
        state = json.loads(raw) if len(raw) <= MAX_STATE_BYTES else None
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        logger.warning("poll state %s ignored (%s)", file.name, type(exc).__name__)
        return False
    return bool(restore(state))  # None (too big), or anything not a state: ignored, warned


def save_poll_state(policy: object, path: str | os.PathLike[str]) -> bool:
    """Write what ``policy`` learned to ``path`` atomically; ``True`` if written."""
    export = getattr(policy, "export_state", None)
    if export is None:
        return False
    file = Path(path)
    try:
        text = json.dumps(export(), separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        logger.warning("poll state %s not saved (%s)", file.name, exc.strerror or exc)
        return False
    return True
