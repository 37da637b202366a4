"""Output schemas of the GENRE roles, their JSON schemas, and the validation of raw answers.

Each role's output is a pydantic model built for the run's vocabularies and length caps
(`output_model`): closed vocabularies become `Literal` types (`enum` in the JSON schema), list and
string lengths become `maxItems` / `maxLength`. `json_schema` is what constrained decoding and
OpenAI-compatible servers (`response_format`) receive, so a constrained answer is valid by
construction.

`validate_answer` is the last line of defence for answers that were not constrained (files,
servers that ignore the schema): JSON extraction/repair, vocabulary repair for topics, regions
and categories, then the same pydantic model. Every repair and every dropped value is listed in
`notes`.

The steering role (a reader's instruction -> list settings, at serving time) has its own answer
form: a boost is an object whose keys are the categories, so its JSON schema is written out
(`steering_schema`) and its answer checked by `SteeringAnswer` after vocabulary repair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)

from genre_dagster.enrichment.json_repair import parse_json_object
from genre_dagster.enrichment.vocabulary import Vocabulary, normalize_open_term

ROLES_WITH_SCHEMA = ("summarizer", "profiler", "generator", "chain_generator")

# Steering's bounds: boosts are in score standard deviations (3 already dominates any ranking);
# an instruction is capped like item text.
MAX_WEIGHT = 3.0
MAX_FRESHNESS_DAYS = 3650
MAX_INSTRUCTION_CHARS = 500
# A steering answer names a few categories and two numbers.
STEERING_ANSWER_TOKENS = 96


@dataclass(frozen=True)
class OutputLimits:
    """Length caps of the answers (characters), configuration rather than constants: a released
    60-word book description must not be rejected by a title cap."""

    title_chars: int = 150
    summary_chars: int = 300
    abstract_chars: int = 300
    term_chars: int = 30
    term_words: int = 3

    def __post_init__(self) -> None:
        if min(self.title_chars, self.summary_chars, self.abstract_chars) < 10:
            raise ValueError(f"OutputLimits: text caps must be >= 10 characters, got {self}")
        if self.term_chars < 3 or self.term_words < 1:
            raise ValueError(f"OutputLimits: term caps too small, got {self}")


@dataclass(frozen=True)
class VocabularyConfig:
    """What the roles may answer: topics (profiler; None with `open_topics` = free-form),
    categories (generators), regions (None or empty = no regions), list sizes, length caps."""

    topics: Vocabulary | None = None
    categories: Vocabulary | None = None
    regions: Vocabulary | None = None
    max_topics: int = 5
    max_regions: int = 3
    open_topics: bool = False
    limits: OutputLimits = field(default_factory=OutputLimits)

    def __post_init__(self) -> None:
        if self.max_topics < 1 or self.max_regions < 0:
            raise ValueError("VocabularyConfig: need max_topics >= 1 and max_regions >= 0")
        if self.open_topics and self.topics is not None:
            raise ValueError("VocabularyConfig: open topics take no topic list")

    @property
    def has_regions(self) -> bool:
        return self.regions is not None and bool(self.regions.terms) and self.max_regions > 0

    def describe(self) -> dict[str, Any]:
        """A short summary for metadata."""
        return {
            "topics": "open" if self.open_topics else len(self.topics.terms) if self.topics else 0,
            "regions": len(self.regions.terms) if self.has_regions else 0,
            "categories": len(self.categories.terms) if self.categories else 0,
            "max_topics": self.max_topics,
        }


@dataclass
class Validated:
    """A checked output (`output`) or the reason there is none (`error`), plus repair notes."""

    output: dict[str, Any] | None
    error: str | None
    notes: list[str] = field(default_factory=list)


def _text(min_chars: int, max_chars: int, generation: bool = False) -> Any:
    """A text field. Validation strips surrounding whitespace before counting; a model is held
    to text that starts and ends with a visible character, so the two lengths agree."""
    if generation:
        return Annotated[
            str,
            StringConstraints(min_length=min_chars, max_length=max_chars, pattern=r"^\S(.*\S)?$"),
        ]
    return Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=min_chars, max_length=max_chars)
    ]


def _enum(vocabulary: Vocabulary) -> Any:
    return Literal[tuple(vocabulary.terms)]  # type: ignore[valid-type]


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _SummaryOutput(_Output):
    @model_validator(mode="after")
    def _one_of(self) -> _SummaryOutput:
        if getattr(self, "title", None) is None and getattr(self, "description", None) is None:
            raise ValueError("needs a title or a description")
        return self


def output_model(role: str, vocab: VocabularyConfig, generation: bool = False) -> type[BaseModel]:
    """The pydantic model of `role`'s answer under `vocab`.

    `generation=True` is the stricter form asked of a model (every field required, so
    OpenAI's strict mode accepts it); validation also accepts imported answers that hold only
    part of it (a summarizer log with only a new title or only a description).
    """
    limits = vocab.limits
    if role == "summarizer":
        title = _text(3, limits.title_chars, generation)
        description = _text(3, limits.summary_chars, generation)
        if generation:
            return create_model(
                "SummarizerOutput",
                __base__=_Output,
                title=(title, Field(description="a new neutral, informative title")),
                description=(description, Field(description="one or two factual sentences")),
            )
        return create_model(
            "SummarizerOutput",
            __base__=_SummaryOutput,
            title=(title | None, None),
            description=(description | None, None),
        )
    if role == "profiler":
        if vocab.open_topics:
            # A model writes lower-case words (no digits, so no "topic1" placeholders); imported
            # answers are only held to the normalized form's length (any script).
            more_words = "{0,%s}" % (limits.term_words - 1)  # noqa: UP031 (regex braces)
            pattern = r"^[a-z][a-z'&-]*( [a-z'&-]+)" + more_words + "$"
            term = Annotated[
                str,
                StringConstraints(
                    min_length=2,
                    max_length=limits.term_chars,
                    pattern=pattern if generation else None,
                ),
            ]
        elif vocab.topics is not None and vocab.topics.terms:
            term = _enum(vocab.topics)
        else:
            raise ValueError("profiler needs a topic vocabulary or open topics")
        fields: dict[str, Any] = {
            "topics": (list[term], Field(min_length=1, max_length=vocab.max_topics)),
        }
        if vocab.has_regions:
            region = _enum(vocab.regions)  # type: ignore[arg-type]
            fields["regions"] = (
                list[region],
                Field(max_length=vocab.max_regions) if generation else Field([], max_length=50),
            )
        return create_model("ProfilerOutput", __base__=_Output, **fields)
    if role in ("generator", "chain_generator"):
        return create_model(
            "GeneratedItem",
            __base__=_Output,
            title=(_text(3, limits.title_chars, generation), ...),
            abstract=(_text(3, limits.abstract_chars, generation), ...),
            category=(_enum(_categories(role, vocab)), ...),
        )
    raise ValueError(f"unknown role {role!r}; known: {ROLES_WITH_SCHEMA}")


def json_schema(role: str, vocab: VocabularyConfig) -> dict[str, Any]:
    """The JSON schema a model's answer to `role` must match (for constrained decoding)."""
    if role == "steering":
        return steering_schema(_categories("steering", vocab))
    return output_model(role, vocab, generation=True).model_json_schema()


class SteeringAnswer(BaseModel):
    """The LLM's answer to the steering prompt, before vocabulary repair."""

    model_config = ConfigDict(extra="ignore")

    boost: dict[str, float] = Field(default_factory=dict, max_length=50)
    exclude: list[str] = Field(default_factory=list, max_length=50)
    freshness_days: int | None = None
    diversity: float | None = None


def steering_schema(vocab: Vocabulary) -> dict[str, Any]:
    """The JSON schema of a steering answer over the categories `vocab`.

    Written out rather than derived from `SteeringAnswer`: a boost is an object whose optional
    keys are the categories, which a pydantic model of the run's categories would express only
    as one nullable field per category (and a small model then lists every one as null)."""
    number = {"type": "number", "minimum": -MAX_WEIGHT, "maximum": MAX_WEIGHT}
    return {
        "type": "object",
        "properties": {
            "boost": {
                "type": "object",
                "properties": {term: number for term in vocab.terms},
                "additionalProperties": False,
            },
            "exclude": {
                "type": "array",
                "items": {"type": "string", "enum": list(vocab.terms)},
                "maxItems": len(vocab.terms),
            },
            "freshness_days": {
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": MAX_FRESHNESS_DAYS},
                    {"type": "null"},
                ]
            },
            "diversity": {
                "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]
            },
        },
        "required": ["boost", "exclude", "freshness_days", "diversity"],
        "additionalProperties": False,
    }


def _categories(role: str, vocab: VocabularyConfig) -> Vocabulary:
    if vocab.categories is None or not vocab.categories.terms:
        raise ValueError(f"{role} needs a category list")
    return vocab.categories


def max_answer_tokens(role: str, vocab: VocabularyConfig) -> int:
    """A token budget that fits the longest answer the schema allows in practice (about 3
    characters a token for prose, the longest term for lists), so constrained answers are not
    cut off before their JSON closes."""
    limits = vocab.limits
    if role == "steering":
        return STEERING_ANSWER_TOKENS
    if role == "summarizer":
        return 24 + (limits.title_chars + limits.summary_chars) // 3
    if role in ("generator", "chain_generator"):
        return 32 + (limits.title_chars + limits.abstract_chars) // 3
    if role == "profiler":
        longest = limits.term_chars if vocab.open_topics else _longest(vocab.topics)
        per_region = _longest(vocab.regions) if vocab.has_regions else 0
        return (
            16 + vocab.max_topics * (longest // 2 + 4) + vocab.max_regions * (per_region // 2 + 4)
        )
    raise ValueError(f"unknown role {role!r}")


def _longest(vocabulary: Vocabulary | None) -> int:
    return max((len(t) for t in vocabulary.terms), default=10) if vocabulary else 10


def validate_answer(role: str, text: str | None, vocab: VocabularyConfig) -> Validated:
    """Parse, repair and check one answer of `role`."""
    try:
        raw, notes = parse_json_object(text)
    except ValueError as exc:
        return Validated(None, str(exc))
    return validate_output(role, raw, vocab, notes)


def validate_output(
    role: str, raw: dict[str, Any], vocab: VocabularyConfig, notes: list[str] | None = None
) -> Validated:
    """Check an already parsed answer (a JSON object) of `role`."""
    notes = list(notes or [])
    raw = dict(raw)
    if role == "steering":
        return _check_steering(raw, _categories(role, vocab), notes)
    for key in ("title", "description", "abstract"):
        if isinstance(raw.get(key), str):
            raw[key] = " ".join(raw[key].split())
    if role == "summarizer" and "summary" in raw and "description" not in raw:
        raw["description"] = raw.pop("summary")  # the v1 field name
        notes.append("read 'summary' as the description")
    if role == "profiler":
        return _check_profile(raw, vocab, notes)
    if role in ("generator", "chain_generator"):
        return _check_category(role, raw, vocab, notes)
    return _final(role, raw, vocab, notes)


def _final(role: str, raw: dict[str, Any], vocab: VocabularyConfig, notes: list[str]) -> Validated:
    model = output_model(role, vocab)
    extra = sorted(set(raw) - set(model.model_fields))
    if extra:
        notes.append(f"ignored extra keys {extra}")
        raw = {k: v for k, v in raw.items() if k in model.model_fields}
    try:
        checked = model.model_validate(raw)
    except ValidationError as exc:
        return Validated(None, f"schema: {_errors(exc)}", notes)
    return Validated(checked.model_dump(exclude_none=True), None, notes)


def _check_profile(raw: dict[str, Any], vocab: VocabularyConfig, notes: list[str]) -> Validated:
    topics_in = raw.get("topics")
    if not isinstance(topics_in, list) or not topics_in:
        return Validated(None, "schema: topics: needs a non-empty list", notes)
    if vocab.open_topics:
        topics = _open_terms(topics_in, vocab, notes)
    elif vocab.topics is not None:
        topics = _map_terms(topics_in, vocab.topics, notes, "topic")
    else:
        raise ValueError("profiler validation needs a topic vocabulary or open topics")
    if len(topics) > vocab.max_topics:
        notes.append(f"kept the first {vocab.max_topics} of {len(topics)} topics")
        topics = topics[: vocab.max_topics]
    if not topics:
        where = "valid open topic" if vocab.open_topics else "topic from the vocabulary"
        return Validated(None, f"no {where} ({'; '.join(notes)})", notes)
    out: dict[str, Any] = {"topics": topics}
    regions_in = raw.get("regions") or []
    if not isinstance(regions_in, list):
        notes.append(f"dropped regions {regions_in!r}: not a list")
        regions_in = []
    if vocab.has_regions:
        out["regions"] = _map_terms(regions_in, vocab.regions, notes, "region")  # type: ignore[arg-type]
    elif regions_in:
        notes.append(f"dropped regions {regions_in}: no region list configured")
    extra = sorted(set(raw) - {"topics", "regions"})
    if extra:
        notes.append(f"ignored extra keys {extra}")
    checked = _final("profiler", out, vocab, notes)
    if checked.output is not None:
        checked.output.setdefault("regions", [])
    return checked


def _check_category(
    role: str, raw: dict[str, Any], vocab: VocabularyConfig, notes: list[str]
) -> Validated:
    if vocab.categories is None:
        raise ValueError("generator validation needs a category list (VocabularyConfig.categories)")
    if "description" in raw and "abstract" not in raw:
        raw["abstract"] = raw.pop("description")  # GENRE's book generator writes a description
        notes.append("read 'description' as the abstract")
    if "category" not in raw and len(vocab.categories.terms) == 1:
        raw["category"] = vocab.categories.terms[0]  # a one-category catalogue (books)
        notes.append(f"category set to the only one, {raw['category']!r}")
    value = raw.get("category")
    if isinstance(value, str):
        category, note = vocab.categories.match(value)
        if note:
            notes.append(f"category {note}")
        if category is None:
            return Validated(None, f"category {value!r} is not in the category list", notes)
        raw["category"] = category
    return _final(role, raw, vocab, notes)


def _check_steering(raw: dict[str, Any], categories: Vocabulary, notes: list[str]) -> Validated:
    """Nulls and a list of boosts read leniently, categories repaired against `categories` (the
    rest rejected with a note), weights clipped to the bounds; an answer that steers nothing
    fails."""
    for name in ("boost", "exclude"):
        if name in raw and raw[name] is None:
            raw[name] = {} if name == "boost" else []
            notes.append(f"{name} was null: read as empty")
    if isinstance(raw.get("boost"), list):  # small models list the categories to boost
        notes.append("boost was a list: weight 1 for each")
        raw["boost"] = {str(c): 1.0 for c in raw["boost"]}
    extra = sorted(set(raw) - set(SteeringAnswer.model_fields))
    if extra:
        notes.append(f"ignored extra keys {extra}")
    try:
        answer = SteeringAnswer.model_validate(raw)
    except ValidationError as exc:
        return Validated(None, f"schema: {_errors(exc)}", notes)
    offered = len(answer.boost) + len(answer.exclude)
    exclude = _map_terms(answer.exclude, categories, notes, "exclude")
    boost: dict[str, float] = {}
    for name, weight in answer.boost.items():
        (category,) = _map_terms([name], categories, notes, "boost") or (None,)
        if category is None:
            continue
        if not math.isfinite(weight) or weight == 0:
            notes.append(f"boost {category!r}: weight {weight} dropped")
        elif category in exclude:
            notes.append(f"boost {category!r}: dropped, the category is excluded")
        elif category in boost:
            notes.append(f"boost {name!r}: duplicate of {category!r}")
        else:
            clipped = max(-MAX_WEIGHT, min(MAX_WEIGHT, weight))
            if clipped != weight:
                notes.append(f"boost {category!r}: weight {weight} clipped to {clipped}")
            boost[category] = clipped
    freshness = answer.freshness_days
    if freshness is not None and not 1 <= freshness <= MAX_FRESHNESS_DAYS:
        notes.append(f"freshness_days {freshness} dropped (needs 1..{MAX_FRESHNESS_DAYS})")
        freshness = None
    diversity = answer.diversity
    if diversity is not None and not 0 <= diversity <= 1:
        clipped = min(1.0, max(0.0, diversity)) if math.isfinite(diversity) else None
        notes.append(f"diversity {diversity} -> {clipped}")
        diversity = clipped
    if not boost and not exclude and freshness is None and not diversity:
        if offered:
            rejected = "; ".join(n for n in notes if "rejected" in n or "dropped" in n)
            return Validated(None, f"nothing in the answer fits the categories ({rejected})", notes)
        return Validated(None, "the answer maps the instruction to no change", notes)
    output = {
        "boost": boost,
        "exclude": exclude,
        "freshness_days": freshness,
        "diversity": diversity,
    }
    return Validated(output, None, notes)


def _map_terms(values: list[Any], vocabulary: Vocabulary, notes: list[str], what: str) -> list[str]:
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


def _open_terms(values: list[Any], vocab: VocabularyConfig, notes: list[str]) -> list[str]:
    """Free-form topics normalized (case, spacing, Unicode, singular/plural) and capped."""
    kept: list[str] = []
    for value in values:
        if not isinstance(value, str):
            notes.append(f"topic rejected {value!r}: not a string")
            continue
        term = normalize_open_term(value)
        words = len(term.split())
        if not term or len(term) < 2:
            notes.append(f"topic rejected {value!r}: empty")
        elif words > vocab.limits.term_words or len(term) > vocab.limits.term_chars:
            notes.append(f"topic rejected {value!r}: longer than {vocab.limits.term_words} words")
        elif term in kept:
            notes.append(f"topic {value!r}: duplicate of {term!r}")
        else:
            if term != value:
                notes.append(f"topic {value!r} -> {term!r} (normalized)")
            kept.append(term)
    return kept


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def summary_text(output: dict[str, Any]) -> str:
    """The text a summarizer answer adds to its item: the new title and the description
    (either alone when an imported answer holds only one)."""
    title = (output.get("title") or "").strip()
    description = (output.get("description") or "").strip()
    if title and description:
        return f"{title.rstrip('.')}. {description}"
    return title or description
