"""Pull one JSON object out of an LLM answer, repairing the common small mistakes.

Raw newlines inside strings are accepted (`strict=False`): models write them and they carry no
ambiguity.

Models wrap JSON in prose or markdown fences and write Python-ish JSON (single quotes, trailing
commas, bare keys, True/None). Repairs touch only the text outside string literals, so a comma
or colon inside a title is never changed.
"""

from __future__ import annotations

import json
import re

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_\-]*)(\s*:)")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_PY_LITERAL = re.compile(r"\b(True|False|None)\b")


def parse_json_object(text: str | None) -> tuple[dict, list[str]]:
    """The first JSON object in `text` and the repairs applied; ValueError with a reason if none.

    Raises ValueError("no JSON object ..."), ("unterminated ...") or ("invalid JSON ...").
    """
    if text is None or not text.strip():
        raise ValueError("empty answer")
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON object in the answer: {_preview(text)}")
    candidate = _balanced(text, start)
    notes: list[str] = []
    if start > 0 or start + len(candidate) < len(text.rstrip()):
        notes.append("extracted the JSON object from surrounding text")
    try:
        value = json.loads(candidate, strict=False)
    except json.JSONDecodeError:
        repaired, fixes = _repair(candidate)
        try:
            value = json.loads(repaired, strict=False)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"invalid JSON ({exc.msg} at char {exc.pos}) after repairs: {_preview(candidate)}"
            ) from None
        notes.extend(fixes)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value, notes


def _balanced(text: str, start: int) -> str:
    """Text from `start` ('{') to its matching '}', skipping braces inside string literals."""
    end = object_end(text, start)
    if end is None:
        raise ValueError(f"unterminated JSON object (answer cut off?): {_preview(text[start:])}")
    return text[start:end]


def object_end(text: str, start: int | None = None) -> int | None:
    """Index just past the '}' closing the JSON object that opens at `start` (default: the
    first '{'), or None while it is still open (or there is none).

    Decided by the characters up to that '}' only, so a longer text with the same beginning
    gives the same answer: generation can stop there without changing what is parsed.
    """
    if start is None:
        start = text.find("{")
        if start < 0:
            return None
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif _closes(text, i, quote):
                quote = None
            continue
        if _opens(text, i):
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _repair(candidate: str) -> tuple[str, list[str]]:
    """Apply the simple fixes outside string literals; returns the text and what was fixed."""
    out: list[str] = []
    fixes: set[str] = set()
    for is_string, piece in _split_strings(candidate):
        if is_string:
            if piece.startswith("'"):
                inner = piece[1:-1].replace("\\'", "'")
                piece = json.dumps(inner, ensure_ascii=False)
                fixes.add("single quotes")
            out.append(piece)
            continue
        fixed = _TRAILING_COMMA.sub(r"\1", piece)
        if fixed != piece:
            fixes.add("trailing commas")
        keyed = _BARE_KEY.sub(r'\1"\2"\3', fixed)
        if keyed != fixed:
            fixes.add("unquoted keys")
        literal = _PY_LITERAL.sub(lambda m: _PY_LITERALS[m.group(1)], keyed)
        if literal != keyed:
            fixes.add("Python literals")
        out.append(literal)
    return "".join(out), [f"repaired {fix}" for fix in sorted(fixes)]


def _split_strings(text: str) -> list[tuple[bool, str]]:
    """Split into (is_string_literal, piece) parts; quotes as in `_balanced`."""
    parts: list[tuple[bool, str]] = []
    buf: list[str] = []
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(text):
        if quote:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif _closes(text, i, quote):
                parts.append((True, "".join(buf)))
                buf, quote = [], None
            continue
        if _opens(text, i):
            if buf:
                parts.append((False, "".join(buf)))
            buf, quote = [ch], ch
        else:
            buf.append(ch)
    if buf:
        parts.append((quote is not None, "".join(buf)))
    return parts


def _opens(text: str, i: int) -> bool:
    """A quote starts a string, unless it is an apostrophe inside a word ("Trump's")."""
    ch = text[i]
    if ch == '"':
        return True
    return ch == "'" and not (i > 0 and text[i - 1].isalnum())


def _closes(text: str, i: int, quote: str) -> bool:
    """The quote ends the string, unless a single quote is followed by a letter ('Trump's')."""
    if text[i] != quote:
        return False
    return quote == '"' or not (i + 1 < len(text) and text[i + 1].isalnum())


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))
