"""Output schemas of the GENRE roles and the validation of raw answers against them.

`validate_answer` turns an answer's text into a checked output dict or a failure reason:
JSON extraction/repair, pydantic validation (types, lengths), then vocabulary repair for topics,
regions and categories. Every repair and every dropped value is listed in `notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from genre_dagster.enrichment.json_repair import parse_json_object
from genre_dagster.enrichment.vocabulary import Vocabulary

MAX_TITLE_CHARS = 200
MAX_ABSTRACT_CHARS = 1000

# Whitespace (newlines included) collapses before length checks; titles are one line.
_Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=MAX_TITLE_CHARS)
]
_Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class SummarizerOutput(_Output):
    """Content summarizer: a new neutral title (and an optional short summary)."""

    title: _Title
    summary: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = None


class ProfilerOutput(_Output):
    """User profiler: topics (from the vocabulary) and optional regions, most relevant first."""

    topics: list[_Term] = Field(min_length=1, max_length=50)
    regions: list[_Term] = Field(default_factory=list, max_length=50)


class GeneratedItem(_Output):
    """Personalized / chain-based generator: one synthetic news item."""

    title: _Title
    abstract: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ABSTRACT_CHARS)
    ]
    category: _Term


@dataclass
class Validated:
    """A checked output (`output`) or the reason there is none (`error`), plus repair notes."""

    output: dict[str, Any] | None
    error: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VocabularyConfig:
    """Closed lists used by validation: topics (profiler), categories (generators), regions."""

    topics: Vocabulary | None = None
    categories: Vocabulary | None = None
    regions: Vocabulary | None = None
    max_topics: int = 5


_SCHEMAS: dict[str, type[_Output]] = {
    "summarizer": SummarizerOutput,
    "profiler": ProfilerOutput,
    "generator": GeneratedItem,
    "chain_generator": GeneratedItem,
}


def schema_for(role: str) -> type[BaseModel]:
    """The pydantic output model of a role."""
    if role not in _SCHEMAS:
        raise ValueError(f"unknown role {role!r}; known: {sorted(_SCHEMAS)}")
    return _SCHEMAS[role]


def validate_answer(role: str, text: str | None, vocab: VocabularyConfig) -> Validated:
    """Parse, repair and check one answer of `role`."""
    schema = schema_for(role)
    try:
        raw, notes = parse_json_object(text)
    except ValueError as exc:
        return Validated(None, str(exc))
    extra = sorted(set(raw) - set(schema.model_fields))
    if extra:
        notes.append(f"ignored extra keys {extra}")
    if "title" in raw and isinstance(raw["title"], str):
        raw["title"] = " ".join(raw["title"].split())
    try:
        model = schema.model_validate(raw)
    except ValidationError as exc:
        return Validated(None, f"schema: {_errors(exc)}", notes)
    output = model.model_dump(exclude_none=True)
    if role == "profiler":
        return _check_profile(output, vocab, notes)
    if role in ("generator", "chain_generator"):
        return _check_category(output, vocab, notes)
    return Validated(output, None, notes)


def _check_profile(output: dict[str, Any], vocab: VocabularyConfig, notes: list[str]) -> Validated:
    if vocab.topics is None:
        raise ValueError("profiler validation needs a topic vocabulary (VocabularyConfig.topics)")
    topics = _map_terms(output["topics"], vocab.topics, notes, "topic")
    if len(topics) > vocab.max_topics:
        notes.append(f"kept the first {vocab.max_topics} of {len(topics)} topics")
        topics = topics[: vocab.max_topics]
    if not topics:
        return Validated(None, f"no topic from the vocabulary ({'; '.join(notes)})", notes)
    regions: list[str] = []
    if output.get("regions"):
        if vocab.regions is None or not vocab.regions.terms:
            notes.append(f"dropped regions {output['regions']}: no region list configured")
        else:
            regions = _map_terms(output["regions"], vocab.regions, notes, "region")
    return Validated({"topics": topics, "regions": regions}, None, notes)


def _check_category(output: dict[str, Any], vocab: VocabularyConfig, notes: list[str]) -> Validated:
    if vocab.categories is None:
        raise ValueError("generator validation needs a category list (VocabularyConfig.categories)")
    category, note = vocab.categories.match(output["category"])
    if note:
        notes.append(f"category {note}")
    if category is None:
        return Validated(
            None, f"category {output['category']!r} is not in the category list", notes
        )
    return Validated({**output, "category": category}, None, notes)


def _map_terms(values: list[str], vocabulary: Vocabulary, notes: list[str], what: str) -> list[str]:
    """Terms in order, repaired or dropped (with notes), duplicates after repair removed."""
    kept: list[str] = []
    for value in values:
        term, note = vocabulary.match(value)
        if note:
            notes.append(f"{what} {note}")
        if term is not None and term not in kept:
            kept.append(term)
        elif term is not None:
            notes.append(f"{what} {value!r}: duplicate of {term!r}")
    return kept


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
