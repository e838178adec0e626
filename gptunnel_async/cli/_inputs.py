"""Prompt files for ``gptunnel batch``: text (one prompt a line), CSV, or JSONL.

Files are streamed, never loaded whole (a million-line file costs one line of memory). Reading
happens twice: ``scan`` checks the whole file and counts its requests before anything is
billed — a malformed line 900 000 should stop the run at the start, not half way through —
and ``read_requests`` then yields the request dicts as the run consumes them. Both number
requests the same way, so a rerun maps each line to the same request (and journal entry).

What cannot be read as rows stops the run before anything is sent, with one line naming the
place: text that is not UTF-8, a line over ``MAX_LINE_CHARS``, JSON that is malformed, nested
deeper than ``MAX_JSON_DEPTH`` or holds a number longer than ``MAX_NUMBER_CHARS`` (Python would
raise ``RecursionError`` or ``ValueError`` on those), a CSV header naming a column twice. A row
that reads fine but is not a valid request (an empty prompt, a lone surrogate, a bad ``ar``) is
the SDK's to refuse: that request fails alone, with its reason in the manifest.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from .._json import UnsafeJSONError, load_json

Format = Literal["txt", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("txt", "csv", "jsonl")
_BY_SUFFIX: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: The longest line read (a row may carry an image as a data: URL; a line is never held whole
#: beyond this, so a 200 MB line costs no more memory than this).
MAX_LINE_CHARS = 16 * 1024 * 1024


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
            lines = _lines(path, handle)
            if fmt == "txt":
                yield from _text_rows(lines)
            elif fmt == "csv":
                yield from _csv_rows(path, lines)
            else:
                yield from _jsonl_rows(path, lines)
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror or exc}") from None


def _lines(path: Path, handle: TextIO) -> Iterator[str]:
    """The file's lines, none longer than ``MAX_LINE_CHARS`` (a longer one is refused unread)."""
    number = 0
    while line := handle.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            raise InputFileError(
                f"{path}:{number}: the line is longer than {MAX_LINE_CHARS:,} characters"
            )
        yield line


def _text_rows(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        prompt = line.strip()
        if prompt:
            yield {"prompt": prompt}


def _csv_rows(path: Path, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
        if not header or "prompt" not in [name.strip() for name in header]:
            raise InputFileError(f"{path}: the CSV header needs a 'prompt' column")
        reader.fieldnames = _unique_columns(path, header)
        for row in reader:
            if None in row:
                raise InputFileError(
                    f"{path}:{reader.line_num}: more cells than the header has columns"
                )
            cells = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
            if not any(cells.values()):
                continue  # a blank line
            yield _csv_request(cells)
    except csv.Error as exc:
        raise InputFileError(f"{path}:{reader.line_num}: {exc}") from None


def _unique_columns(path: Path, header: Any) -> list[str]:
    """The header's names, stripped; a name given twice is refused (one would silently win)."""
    names = [str(name).strip() for name in header]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        shown = ", ".join(repr(name) for name in twice)
        raise InputFileError(f"{path}: the CSV header names {shown} twice")
    return names


def _csv_request(cells: Mapping[str, str | None]) -> dict[str, Any]:
    """Empty cells mean "use the default"; ``images`` holds URLs separated by spaces.

    An empty ``prompt`` stays (there is no default prompt): the SDK refuses that row alone.
    """
    request: dict[str, Any] = {}
    for key, value in cells.items():
        if not value and key != "prompt":
            continue
        request[key] = value.split() if key == "images" and value else value or ""
    return request


def _jsonl_rows(path: Path, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = load_json(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        except UnsafeJSONError as exc:
            raise InputFileError(f"{path}:{number}: {exc}") from None
        if not isinstance(value, dict):
            raise InputFileError(f"{path}:{number}: expected a JSON object")
        yield value


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param KEY=VALUE``: a JSON value if it parses as one (``5``, ``true``), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputFileError(f"--param needs KEY=VALUE, got {pair!r}")
        try:
            value: Any = load_json(raw)
        except json.JSONDecodeError:
            value = raw
        except UnsafeJSONError as exc:
            raise InputFileError(f"--param {key.strip()}: {exc}") from None
        params[key.strip()] = value
    return params
