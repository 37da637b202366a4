"""Reading LLM answer files line by line: OpenAI Batch outputs, the logs GENRE's authors
released, and any JSONL.

Formats:
- `openai_batch`: Batch API (or vLLM `run_batch`) output lines, keyed by `custom_id`;
- `genre_summaries`: `<item id>\\t[newtitle] <text>` (news) or `<item id>\\t[description] <text>`
  (books), one line per item;
- `genre_jsonl`: `{"uid": <int>, ...}` with `interest` (profiler: a list of free-form
  interests, or the news profiler's text with a `[topics]` and an optional `[region]` list of
  `- term` lines) or `book` / `news` (generator: a JSON string with title and description, or
  title, abstract and category); `uid` is a 0-based line of a user-id vocabulary file;
- `jsonl`: any JSON object per line, with a key field and an output field (an object, JSON
  text, or plain text wrapped as one field).

Each line becomes a `FileLine`: its key as the file writes it, the answer (an object, or text
still to parse), or the reason it cannot be read. Nothing here knows the deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("auto", "openai_batch", "genre_summaries", "genre_jsonl", "jsonl")
UNPARSABLE = "unparsable"
_MARKER = re.compile(r"^\s*\[(newtitle|description)\]\s*", re.IGNORECASE)
_SECTION = re.compile(r"^\[([a-z ]+)\](?:\s*\(optional\))?\s*$", re.IGNORECASE)
_KEY_FIELDS = ("key", "id")
_OUTPUT_FIELDS = ("output", "text")


@dataclass
class FileLine:
    """One non-blank line of an answer file."""

    number: int
    raw: str
    key: Any = None  # item id, raw user id, uid (int) or custom_id, as written
    answer: dict[str, Any] | str | None = None  # an object, or text still to parse
    error: tuple[str, str] | None = None  # (reason, detail) when the line cannot be read
    key_field: str | None = None  # jsonl: where the key sits (to pseudonymize the raw line)
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def detect_format(path: Path) -> str:
    """The format of `path` from its first non-blank line (ValueError if none fits)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: the file is empty")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        record = None
    if isinstance(record, dict):
        if "custom_id" in record and ("response" in record or "error" in record):
            return "openai_batch"
        if "uid" in record:
            return "genre_jsonl"
        return "jsonl"
    if "\t" in first:
        return "genre_summaries"
    raise ValueError(
        f"{path}: not a format this import reads (a Batch output, a GENRE log, or JSONL); "
        "give --format"
    )


def read_lines(
    path: Path,
    fmt: str,
    key_field: str | None = None,
    output_field: str | None = None,
    wrap_as: str | None = None,
) -> Iterator[FileLine]:
    """The lines of `path` in format `fmt` (not `auto`: see `detect_format`)."""
    reader = {
        "openai_batch": lambda n, raw: _batch_line(n, raw),
        "genre_summaries": lambda n, raw: _summary_line(n, raw, wrap_as),
        "genre_jsonl": lambda n, raw: _genre_line(n, raw),
        "jsonl": lambda n, raw: _jsonl_line(n, raw, key_field, output_field, wrap_as),
    }.get(fmt)
    if reader is None:
        raise ValueError(f"unknown answer file format {fmt!r}; known: {', '.join(FORMATS)}")
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            try:
                raw = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                text = data.decode("utf-8", errors="replace").rstrip("\r\n")
                yield FileLine(number, text, error=(UNPARSABLE, f"invalid UTF-8 ({exc.reason})"))
                continue
            if raw.strip():
                yield reader(number, raw)


def _object(number: int, raw: str) -> dict[str, Any] | FileLine:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return FileLine(number, raw, error=(UNPARSABLE, f"not valid JSON ({exc.msg})"))
    if not isinstance(record, dict):
        return FileLine(number, raw, error=(UNPARSABLE, "not a JSON object"))
    return record


def _batch_line(number: int, raw: str) -> FileLine:
    from genre_dagster.enrichment.batch import read_answer

    record = _object(number, raw)
    if isinstance(record, FileLine):
        return record
    if "custom_id" not in record:
        return FileLine(number, raw, error=(UNPARSABLE, "no custom_id"))
    answer = read_answer(record)
    line = FileLine(
        number,
        raw,
        key=answer.custom_id,
        answer=answer.text,
        model=answer.model,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    )
    if answer.error is not None:
        line.error = ("llm_error", answer.error)
    return line


def _summary_line(number: int, raw: str, wrap_as: str | None) -> FileLine:
    key, tab, text = raw.partition("\t")
    if not tab or not key.strip():
        return FileLine(number, raw, error=(UNPARSABLE, "expected '<item id><TAB>[newtitle] text'"))
    marker = _MARKER.match(text)
    if marker is not None:
        field = "title" if marker.group(1).lower() == "newtitle" else "description"
        text = text[marker.end() :]
    elif wrap_as:
        field = wrap_as
    else:
        return FileLine(
            number,
            raw,
            key=key.strip(),
            error=(UNPARSABLE, "the text does not start with [newtitle] or [description]"),
        )
    return FileLine(number, raw, key=key.strip(), answer={field: text.strip()})


def _genre_line(number: int, raw: str) -> FileLine:
    record = _object(number, raw)
    if isinstance(record, FileLine):
        return record
    uid = record.get("uid")
    if isinstance(uid, bool) or not isinstance(uid, int):
        return FileLine(number, raw, error=(UNPARSABLE, "uid is not an integer"))
    line = FileLine(number, raw, key=uid)
    if "interest" in record or "interests" in record:
        value = record.get("interest", record.get("interests"))
        try:
            line.answer = profile_answer(value)
        except ValueError as exc:
            line.error = (UNPARSABLE, str(exc))
        return line
    for field in ("book", "news"):
        if field in record:
            value = record[field]
            if isinstance(value, dict):
                line.answer = value
            elif isinstance(value, str):
                line.answer = value  # JSON text, parsed (and repaired) by validation
            else:
                line.error = (UNPARSABLE, f"{field} is neither JSON text nor an object")
            return line
    line.error = (UNPARSABLE, "no interest, book or news field")
    return line


def profile_answer(value: Any) -> dict[str, Any]:
    """A profiler answer from a released log: a list of interests, JSON text with one, or the
    news profiler's text with `[topics]` and optional `[region]` lists of `- term` lines."""
    if isinstance(value, list):
        return {"topics": value}
    if not isinstance(value, str):
        raise ValueError("interest is neither a list nor text")
    text = value.strip()
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"interest is not valid JSON ({exc.msg})") from None
        for field in ("interests", "interest", "topics"):
            if isinstance(record, dict) and isinstance(record.get(field), list):
                return {"topics": record[field]}
        raise ValueError("interest JSON holds no list of interests")
    return sectioned_profile(text)


def sectioned_profile(text: str) -> dict[str, Any]:
    """`[topics]` / `[region]` sections of `- term` lines -> {"topics", "regions"}."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        header = _SECTION.match(line)
        if header is not None:
            name = header.group(1).strip().lower()
            current = {"topic": "topics", "region": "regions"}.get(name.rstrip("s"))
            if current is None:
                raise ValueError(f"unknown section [{name}] (expected [topics] or [region])")
            sections.setdefault(current, [])
        elif line.startswith("-") and current is not None:
            term = line.lstrip("-").strip()
            if term:
                sections[current].append(term)
        else:
            raise ValueError(f"unexpected text {line[:60]!r} (expected '- term' lines)")
    if not sections.get("topics"):
        raise ValueError("no [topics] list")
    return {"topics": sections["topics"], "regions": sections.get("regions", [])}


def _jsonl_line(
    number: int,
    raw: str,
    key_field: str | None,
    output_field: str | None,
    wrap_as: str | None,
) -> FileLine:
    record = _object(number, raw)
    if isinstance(record, FileLine):
        return record
    key = key_field or next((f for f in _KEY_FIELDS if f in record), None)
    out = output_field or next((f for f in _OUTPUT_FIELDS if f in record), None)
    if key is None or key not in record:
        wanted = key_field or " or ".join(_KEY_FIELDS)
        return FileLine(number, raw, error=(UNPARSABLE, f"no key field ({wanted})"))
    line = FileLine(number, raw, key=record[key], key_field=key)
    if out is None or out not in record:
        wanted = output_field or " or ".join(_OUTPUT_FIELDS)
        line.error = (UNPARSABLE, f"no output field ({wanted})")
        return line
    value = record[out]
    if isinstance(value, dict):
        line.answer = value
    elif isinstance(value, str) and (not wrap_as or value.lstrip().startswith("{")):
        line.answer = value
    elif wrap_as and isinstance(value, str | list):
        line.answer = {wrap_as: value}
    else:
        hint = " (give --wrap-as FIELD for plain answers)" if not wrap_as else ""
        line.error = (UNPARSABLE, f"output is a {type(value).__name__}{hint}")
    return line
