"""Prompt files for ``gptunnel batch``: text (one prompt a line), CSV, or JSONL.

Files are streamed, never loaded whole (a million-line file costs one line of memory). Reading
happens twice: ``scan`` checks the whole file and counts its requests before anything is
billed — a malformed line 900 000 should stop the run at the start, not half way through —
and ``read_requests`` then yields the request dicts as the run consumes them. Both number
requests the same way, so a rerun maps each line to the same request (and journal entry).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Format = Literal["txt", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("txt", "csv", "jsonl")
_BY_SUFFIX: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class InputFileError(Exception):
    """The prompt file cannot be used as it is (the message names the line)."""


@dataclass(frozen=True)
class Defaults:
    """What a request gets when its row does not say: ``--model``, ``--ar``, ``--param``."""

    model: str
    ar: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {**self.params, "model": self.model}
        if self.ar is not None:
            request["ar"] = self.ar
        request.update({k: v for k, v in row.items() if v is not None})
        return request


def detect_format(path: Path, override: str | None = None) -> Format:
    """``--format`` if given, else by suffix (``.csv``, ``.jsonl``/``.ndjson``), else text."""
    if override is not None:
        if override not in FORMATS:
            raise InputFileError(f"unknown format {override!r}; use one of {', '.join(FORMATS)}")
        return override
    return _BY_SUFFIX.get(path.suffix.lower(), "txt")


def scan(path: Path, fmt: Format) -> int:
    """Validate the whole file and return how many requests it holds."""
    count = 0
    for _ in _rows(path, fmt):
        count += 1
    return count


def read_requests(path: Path, fmt: Format, defaults: Defaults) -> Iterator[dict[str, Any]]:
    """The file's requests, one dict each (``model``, ``prompt``, ``ar``, extra fields)."""
    for row in _rows(path, fmt):
        yield defaults.apply(row)


def _rows(path: Path, fmt: Format) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if fmt == "txt":
                yield from _text_rows(handle)
            elif fmt == "csv":
                yield from _csv_rows(path, handle)
            else:
                yield from _jsonl_rows(path, handle)
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror or exc}") from None


def _text_rows(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        prompt = line.strip()
        if prompt:
            yield {"prompt": prompt}


def _csv_rows(path: Path, handle: Iterator[str]) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames
        if not header or "prompt" not in header:
            raise InputFileError(f"{path}: the CSV header needs a 'prompt' column")
        for row in reader:
            if None in row:
                raise InputFileError(
                    f"{path}:{reader.line_num}: more cells than the header has columns"
                )
            cells = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
            if not any(cells.values()):
                continue  # a blank line
            if not cells.get("prompt"):
                raise InputFileError(f"{path}:{reader.line_num}: empty prompt")
            yield _csv_request(cells)
    except csv.Error as exc:
        raise InputFileError(f"{path}:{reader.line_num}: {exc}") from None


def _csv_request(cells: Mapping[str, str | None]) -> dict[str, Any]:
    """Empty cells mean "use the default"; ``images`` holds URLs separated by spaces."""
    request: dict[str, Any] = {}
    for key, value in cells.items():
        if not value:
            continue
        request[key] = value.split() if key == "images" else value
    return request


def _jsonl_rows(path: Path, handle: Iterator[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(handle, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise InputFileError(f"{path}:{number}: expected a JSON object")
        prompt = value.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputFileError(f"{path}:{number}: the object needs a non-empty 'prompt' string")
        yield value


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param KEY=VALUE``: a JSON value if it parses as one (``5``, ``true``), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputFileError(f"--param needs KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params
