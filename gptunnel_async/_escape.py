"""Text from a server, made safe to write to a terminal or a log: one escape table for all.

A hostile or broken server must not be able to retitle a window, clear the screen, fake a log
line or make text read backwards through what it sends (links, messages, errors). Used by the
``gptunnel`` command for everything it prints and by the ``GPTUNNEL_LOG`` handler.
"""

from __future__ import annotations

#: C0 controls, DEL, C1 controls (0x9b alone is a CSI in many terminals), line and paragraph
#: separators, and the bidirectional overrides and isolates that can make text read backwards.
_UNSAFE = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_UNSAFE += [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_AS_TEXT = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
#: json.dumps and pydantic escape everything below 0x20 inside strings; raw ones are layout.
_AS_JSON = {c: f"\\u{c:04x}" for c in _UNSAFE if c >= 0x20}


def clean(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), never sent raw."""
    return text.translate(_AS_TEXT)


def clean_json(text: str) -> str:
    """JSON text (from ``json.dumps``/pydantic) with the characters JSON allows raw escaped too.

    JSON only requires escapes below 0x20; DEL, C1 controls and the others in ``_UNSAFE`` may
    appear raw inside strings (and only there, being no JSON whitespace), where ``\\uXXXX`` is
    the same character.
    """
    return text.translate(_AS_JSON)
