"""JSON with bounds: nesting depth and number length checked before Python's parser sees them.

Python's parser recurses per level (``RecursionError`` near 1,000 levels on 3.10/3.11, much
deeper or not at all on 3.12+) and refuses integers over 4,300 digits with a bare
``ValueError``. Neither an API answer nor a prompt file has a reason to nest deeply or to hold
such numbers, so both are refused the same way on every Python, as ``UnsafeJSONError``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: How deep a document may nest (API answers and request rows are a few levels deep).
MAX_JSON_DEPTH = 64
#: The longest JSON number accepted, in characters (a seed has 20 digits at most).
MAX_NUMBER_CHARS = 100


class UnsafeJSONError(ValueError):
    """Valid JSON that the CLI will not load: nested too deep, or a number too long."""


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def load_json(text: str) -> Any:
    """``json.loads`` with bounded nesting and number length, and no NaN or Infinity.

    Python's parser recurses per level (``RecursionError`` at ~1,000) and refuses integers over
    4,300 digits with a bare ``ValueError``; both are turned into ``UnsafeJSONError`` here,
    before the parser sees the text.
    """
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise UnsafeJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(
        text, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant
    )


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_CHARS:
        raise UnsafeJSONError(f"a number of {len(digits):,} digits (at most {MAX_NUMBER_CHARS})")
    return int(digits)


def _bounded_float(digits: str) -> float:
    if len(digits) > MAX_NUMBER_CHARS:
        raise UnsafeJSONError(f"a number of {len(digits):,} digits (at most {MAX_NUMBER_CHARS})")
    value = float(digits)
    if not math.isfinite(value):
        raise UnsafeJSONError(f"the number {digits} is not finite as a float")
    return value


def _no_constant(name: str) -> Any:
    raise UnsafeJSONError(f"{name} is not a number JSON allows")
