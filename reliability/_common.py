"""Shared by the campaigns: outcome classes, file checks, markdown output."""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gptunnel_async import (  # noqa: E402
    CreateOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
)
from gptunnel_async.download import DownloadError, LinkExpiredError  # noqa: E402
from gptunnel_async.poller import BatchResult  # noqa: E402

OK_FILE = "ok + whole file"
OK_NO_FILE = "ok, no file (BUG)"
FAILED = "task failed"
TIMED_OUT = "timed out"
UNKNOWN = "create outcome unknown"
REFUSED = "create refused"
EXPIRED = "link expired"
DOWNLOAD = "download failed"
POLLS = "polls kept failing"
OUTCOMES = (OK_FILE, FAILED, TIMED_OUT, UNKNOWN, REFUSED, EXPIRED, DOWNLOAD, POLLS, OK_NO_FILE)


def classify(result: BatchResult) -> str:
    """One outcome class per result (every result has exactly one)."""
    if result.ok:
        return OK_FILE if result.path is not None and result.path.is_file() else OK_NO_FILE
    error = result.error
    if isinstance(error, TaskFailedError):
        return FAILED
    if isinstance(error, TaskTimeoutError):
        return TIMED_OUT
    if isinstance(error, CreateOutcomeUnknownError) or (
        result.id is None and getattr(error, "may_have_been_created", False)
    ):
        return UNKNOWN
    if result.id is None:
        return REFUSED
    if isinstance(error, LinkExpiredError):
        return EXPIRED
    if isinstance(error, DownloadError) or (
        result.task is not None and getattr(result.task, "url", None)
    ):
        return DOWNLOAD
    return POLLS


def magic_ok(data: bytes, ext: str) -> bool:
    """The file starts (and for PNG, ends) the way its format requires."""
    if ext == "png":
        return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    if ext == "webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if ext == "mp4":
        return data[4:8] == b"ftyp"
    if ext == "mp3":
        return data[:2] == b"\xff\xfb" or data[:3] == b"ID3"
    return False


#: Files a batch keeps beside its results (hidden ones, like the journal, are skipped too).
BOOKKEEPING = frozenset({"manifest.jsonl"})


def check_files(folder: Path, tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every final file in ``folder``: a known task, whole (size and magic). Temp files too."""
    whole = bad = unknown = 0
    bad_names: list[str] = []
    names = sorted(folder.iterdir()) if folder.exists() else []
    temps = [p.name for p in names if p.name.endswith(".part")]
    for path in names:
        if path.name.endswith(".part") or path.name.startswith(".") or path.name in BOOKKEEPING:
            continue  # temporaries are counted; the journal and the manifest are not results
        info = tasks.get(path.stem)
        if info is None:
            unknown += 1
            bad_names.append(path.name)
            continue
        data = path.read_bytes()
        if (
            len(data) == info["size"]
            and path.suffix == f".{info['ext']}"
            and magic_ok(data, info["ext"])
        ):
            whole += 1
        else:
            bad += 1
            bad_names.append(path.name)
    return {
        "whole": whole,
        "bad": bad,
        "unknown": unknown,
        "bad_names": bad_names[:10],
        "temps": len(temps),
    }


def fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mark(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def machine_note() -> str:
    import httpx

    load = os.getloadavg()
    return (
        f"Python {platform.python_version()}, httpx {httpx.__version__}, {os.cpu_count()} CPUs, "
        f"load average at start {load[0]:.2f}"
    )


def campaign_main(
    argv: list[str] | None,
    *,
    doc: str,
    quick_help: str,
    settings: Callable[[bool], Any],
    campaign: Callable[[Any, Path], tuple[str, bool, dict[str, Any]]],
    prefix: str,
) -> int:
    """The command line shared by the trial campaigns: ``[--quick] [--trials T] [--prompts N]
    [--seed S]``; runs ``campaign`` in a temporary folder, prints its report, 1 if it failed.

    ``settings(quick)`` gives the campaign's settings, which have ``trials``, ``prompts`` and
    ``seed`` fields.
    """
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    s = settings(args.quick)
    s.seed = args.seed
    if args.trials:
        s.trials = args.trials
    if args.prompts:
        s.prompts = args.prompts
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        report, ok, _ = campaign(s, Path(tmp))
    print(report)
    return 0 if ok else 1
