"""A reader's natural-language instruction -> SteeringParams, through the LLM (role "steering").

The instruction is user text: it is cleaned, length-capped and delimited in the prompt like item
text. Categories named by the LLM are repaired with `Vocabulary` (case, plural, synonym, fuzzy)
and the rest rejected with a note; an answer that cannot be mapped yields `params=None` and a
message, and the lists are built without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult, check_aligned
from genre_dagster.enrichment.cache import CachedResponse, ResponseCache
from genre_dagster.enrichment.choices import domain_nouns
from genre_dagster.enrichment.json_repair import parse_json_object
from genre_dagster.enrichment.prompts import input_hash, load_template
from genre_dagster.enrichment.roles import CONTEXT_VALUES, STRICT_REMINDER
from genre_dagster.enrichment.sanitize import clean_text
from genre_dagster.enrichment.vocabulary import Vocabulary
from genre_dagster.serving.steering import (
    MAX_FRESHNESS_DAYS,
    MAX_INSTRUCTION_CHARS,
    MAX_WEIGHT,
    ROLE,
    SteeringParams,
    describe,
)


class SteeringAnswer(BaseModel):
    """The LLM's answer to the steering prompt, before vocabulary repair."""

    model_config = ConfigDict(extra="ignore")

    boost: dict[str, float] = Field(default_factory=dict, max_length=50)
    exclude: list[str] = Field(default_factory=list, max_length=50)
    freshness_days: int | None = None
    diversity: float | None = None


@dataclass
class InstructionResult:
    """`params` (None when the instruction could not be mapped), a message for the reader,
    the model's raw answer and the repair/rejection notes."""

    params: SteeringParams | None
    message: str
    raw_answer: str | None
    notes: list[str] = field(default_factory=list)
    cached: bool = False


def instruction_to_params(
    instruction: str,
    categories: Sequence[str] | Vocabulary,
    backend: LLMBackend,
    cache: ResponseCache | None = None,
    prompt_version: str = "v2",
    max_new_tokens: int = 96,
    validation_retries: int = 1,
    domain: str = "news",
) -> InstructionResult:
    """Map a reader's instruction to `SteeringParams` with the LLM (role "steering").

    The instruction is cleaned and capped like item text and sits inside the prompt's
    `<item>` block. The answer is JSON-repaired, validated, its categories repaired against
    `categories` (the rest rejected with a note); an unusable answer is retried once with a
    stricter reminder. Answers are cached by (role, prompt version, model, prompt hash).
    """
    vocab = categories if isinstance(categories, Vocabulary) else Vocabulary.of(categories)
    if not vocab.terms:
        raise ValueError("instruction_to_params: the category list is empty")
    text = clean_text(instruction, MAX_INSTRUCTION_CHARS)
    if not text:
        return InstructionResult(None, _unmapped(text, "the instruction is empty"), None)
    template = load_template(ROLE, prompt_version)
    item_noun, items_noun = domain_nouns(domain)
    messages = template.render(
        {"instruction": text, "categories": ", ".join(vocab.terms), "items_noun": items_noun,
         "item_noun": item_noun},
        CONTEXT_VALUES,
    )  # fmt: skip
    schema = steering_schema(vocab)
    request = ChatRequest(
        key=input_hash(ROLE, prompt_version, messages, "", schema),
        messages=messages,
        max_new_tokens=max_new_tokens,
        item_id="instruction",
        response_prefix=template.response_prefix,
        json_object=True,
        json_schema=schema,
    )
    if cache is not None:
        hit = cache.get(ROLE, prompt_version, backend.model_name, [request.key]).get(request.key)
        if hit is not None and hit.status == "ok":
            return _result(text, hit.parsed, None, hit.raw_text, hit.notes, cached=True)
    start = time.perf_counter()
    result = _generate(backend, request)
    output, error, notes = _check(result, vocab)
    attempts = result.attempts
    for _ in range(validation_retries):
        if output is not None or not result.ok:
            break  # a backend error was already retried by the backend
        earlier = error
        retry = _stricter(request, result.text or "", earlier or "")
        result = _generate(backend, retry)
        attempts += result.attempts
        output, error, retry_notes = _check(result, vocab)
        notes = [f"retried after: {earlier}", *retry_notes]
        if error is not None:
            error = f"{error} (retry after: {earlier})"
    if cache is not None:
        cache.put(
            [
                CachedResponse(
                    role=ROLE,
                    prompt_version=prompt_version,
                    model=backend.model_name,
                    input_hash=request.key,
                    item_key=text[:200],
                    status="ok" if output is not None else "failed",
                    raw_text=result.text,
                    parsed=output,
                    error=error,
                    notes=notes,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                    seconds=time.perf_counter() - start,
                    attempts=attempts,
                )
            ]
        )
    return _result(text, output, error, result.text, notes, cached=False)


def steering_schema(vocab: Vocabulary) -> dict[str, Any]:
    """The JSON schema of a steering answer over `vocab`, for constrained decoding.

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


def _generate(backend: LLMBackend, request: ChatRequest) -> LLMResult:
    results = backend.generate([request])
    check_aligned([request], results, type(backend).__name__)
    return results[0]


def _stricter(request: ChatRequest, answer: str, reason: str) -> ChatRequest:
    messages = (
        *request.messages,
        {"role": "assistant", "content": answer[:1000]},
        {"role": "user", "content": STRICT_REMINDER.format(reason=reason[:200])},
    )
    return ChatRequest(
        key=request.key,
        messages=messages,
        max_new_tokens=request.max_new_tokens,
        temperature=request.temperature,
        item_id=request.item_id,
        response_prefix=request.response_prefix,
        json_object=request.json_object,
        json_schema=request.json_schema,
    )


def _check(
    result: LLMResult, vocab: Vocabulary
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """(mapping, None, notes) or (None, reason, notes) for one answer."""
    if not result.ok:
        return None, f"LLM error: {result.error}", []
    try:
        raw, notes = parse_json_object(result.text)
    except ValueError as exc:
        return None, str(exc), []
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return None, f"schema: {problems}", notes
    offered = len(answer.boost) + len(answer.exclude)
    exclude = _map_categories(answer.exclude, vocab, notes, "exclude")
    boost: dict[str, float] = {}
    for name, weight in answer.boost.items():
        (category,) = _map_categories([name], vocab, notes, "boost") or (None,)
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
    output = {
        "boost": boost,
        "exclude": exclude,
        "freshness_days": freshness,
        "diversity": diversity,
    }
    if not boost and not exclude and freshness is None and not diversity:
        if offered:
            rejected = "; ".join(n for n in notes if "rejected" in n or "dropped" in n)
            return None, f"nothing in the answer fits the categories ({rejected})", notes
        return None, "the answer maps the instruction to no change", notes
    return output, None, notes


def _map_categories(values: list[str], vocab: Vocabulary, notes: list[str], what: str) -> list[str]:
    kept: list[str] = []
    for value in values:
        term, note = vocab.match(value)
        if note:
            notes.append(f"{what} {note}")
        if term is not None and term not in kept:
            kept.append(term)
    return kept


def _result(
    text: str,
    output: dict[str, Any] | None,
    error: str | None,
    raw: str | None,
    notes: list[str],
    cached: bool,
) -> InstructionResult:
    if output is None:
        return InstructionResult(None, _unmapped(text, error or "no answer"), raw, notes, cached)
    params = SteeringParams(
        category_weights=output["boost"],
        exclude_categories=output["exclude"],
        freshness_days=output["freshness_days"],
        diversity=output["diversity"],
        source="instruction",
        instruction=text,
    )
    return InstructionResult(params, f"steering: {describe(params)}", raw, notes, cached)


def _unmapped(text: str, reason: str) -> str:
    shown = text if len(text) <= 80 else text[:79] + "…"
    reason = reason if len(reason) <= 400 else reason[:399] + "…"  # the cache keeps it whole
    return f"could not map the instruction {shown!r}: {reason}; lists unchanged"
