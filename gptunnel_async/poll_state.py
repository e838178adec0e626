"""Keep what a poll policy learned in a file, so a restart does not start cold.

The policy itself does no I/O (``AdaptivePolicy.export_state`` / ``restore_state`` trade plain
JSON values); this is the thin edge that reads and writes them. Neither function ever raises
for a bad file: a missing one is a first run, a corrupt or foreign one is ignored with a
warning, a failed save is logged — polling never depends on it. Policies without the two
methods (e.g. ``FixedIntervalPolicy`` or a user's own) are skipped.

A long run keeps the file current with ``keep_poll_state`` (every ``SAVE_INTERVAL`` seconds,
only when the state changed), so a run that is killed loses at most that much of what it
learned; a run that ends in any other way (Ctrl-C, an error) saves once more on the way out.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import anyio

from ._logs import logger

MAX_STATE_BYTES = 1 << 20  # a few KB per model; anything this big is not ours
#: How often ``keep_poll_state`` writes what was learned (when it changed): a kill loses at
#: most this much learning; the cost is one export per interval and a few KB written.
SAVE_INTERVAL = 30.0


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
    text = _state_text(policy)
    return text is not None and _write_state(text, Path(path))


async def keep_poll_state(
    policy: object, path: str | os.PathLike[str], interval: float = SAVE_INTERVAL
) -> None:
    """Save ``policy``'s state to ``path`` every ``interval`` seconds while it changes, until
    cancelled (run it in the task group of the run it learns from).

    Bounded cost: one export per interval, and one small write (in a worker thread) only when
    the state differs from the last one written. A failed write is logged and retried at the
    next interval.
    """
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")
    if getattr(policy, "export_state", None) is None:
        return
    file = Path(path)
    written: str | None = None
    while True:
        await anyio.sleep(interval)
        text = _state_text(policy)
        if text is None or text == written:
            continue
        if await anyio.to_thread.run_sync(_write_state, text, file):
            written = text


def _state_text(policy: object) -> str | None:
    export = getattr(policy, "export_state", None)
    return None if export is None else json.dumps(export(), separators=(",", ":"))


def _write_state(text: str, file: Path) -> bool:
    try:
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
