"""Untrusted item text made safe to place inside a prompt.

Item titles and abstracts come from the outside world. Before they enter a prompt they lose
control characters and any copy of our `<item>` delimiters (so they cannot close the data block
and speak as instructions), and are cut to a configured length.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

ITEM_OPEN = "<item>"
ITEM_CLOSE = "</item>"

# Our delimiters in any spelling: spaces, case, HTML-escaped brackets.
_MARKER = re.compile(r"(?:<|&lt;|＜)\s*/?\s*item\s*(?:>|&gt;|＞)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class PromptLimits:
    """Caps on untrusted text: per field, per history line count, and for the whole history."""

    max_field_chars: int = 500
    max_history_items: int = 50
    max_history_chars: int = 4000

    def __post_init__(self) -> None:
        if min(self.max_field_chars, self.max_history_items, self.max_history_chars) < 1:
            raise ValueError(f"PromptLimits: all limits must be >= 1, got {self}")


def clean_text(text: object, max_chars: int) -> str:
    """One line of data: no control characters, no delimiters, collapsed spaces, capped length."""
    if text is None:
        return ""
    return _clean(str(text), max_chars)


# Users click the same items: a profiler pass over a million users cleans twenty titles each,
# mostly the same few thousand strings (MIND-large: 16M calls). The result depends on the
# string and the cap only, so it is computed once per pair while the pair is recent.
@functools.lru_cache(maxsize=1 << 18)
def _clean(value: str, max_chars: int) -> str:
    # Control and format characters (Cc, Cf: e.g. NUL, ESC, zero-width, bidi overrides) become
    # spaces; newlines too, so one field stays one line.
    # (`isprintable` is False for every Cc and Cf character: the common clean text skips the
    # per-character pass.)
    if not value.isprintable():
        value = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in value)
    previous = None
    while previous != value:  # removing one marker may join the pieces of another
        previous = value
        value = _MARKER.sub(" ", value)
    value = _SPACES.sub(" ", value).strip()
    if len(value) > max_chars:
        value = value[: max_chars - 1].rstrip() + "…"
    return value


def history_block(lines: Sequence[str], limits: PromptLimits) -> str:
    """Numbered lines `(1) ...`, keeping the newest lines that fit the caps (input oldest first).

    Lines must already be cleaned. Returns "" for an empty history.
    """
    kept: list[str] = []
    total = 0
    for line in reversed(lines[-limits.max_history_items :]):
        cost = len(line) + 8  # number prefix and newline
        if kept and total + cost > limits.max_history_chars:
            break
        kept.append(line)
        total += cost
    kept.reverse()
    block = "\n".join(f"({i}) {line}" for i, line in enumerate(kept, start=1))
    if len(block) > limits.max_history_chars:  # one very long newest line
        block = block[: limits.max_history_chars - 1].rstrip() + "…"
    return block


def delimited(body: str) -> str:
    """Wrap data in the item markers (the body must not contain them)."""
    if _MARKER.search(body):
        raise ValueError("delimited: body still contains an item marker; clean it first")
    return f"{ITEM_OPEN}\n{body}\n{ITEM_CLOSE}"
