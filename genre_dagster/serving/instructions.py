"""A reader's natural-language instruction -> SteeringParams, through the LLM role "steering".

The role runs through the same pass as the enrichment roles (`enrichment.runner.run_role`):
the instruction is cleaned, capped and delimited in the prompt like item text, the answer is
cached, generated under its JSON schema, validated with the categories repaired by
`Vocabulary` (case, plural, synonym, fuzzy; the rest rejected with a note) and retried once
with a stricter reminder (`enrichment.schemas.validate_answer`). What is steering's own is
here: an empty instruction never reaches the LLM, and an answer that cannot be mapped yields
`params=None` and a message, and the lists are built without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from genre_dagster.enrichment.backends import LLMBackend
from genre_dagster.enrichment.cache import ResponseCache
from genre_dagster.enrichment.roles import RoleInput
from genre_dagster.enrichment.runner import run_role
from genre_dagster.enrichment.sanitize import clean_text
from genre_dagster.enrichment.schemas import MAX_INSTRUCTION_CHARS, VocabularyConfig
from genre_dagster.enrichment.vocabulary import Vocabulary
from genre_dagster.serving.steering import SteeringParams, describe


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
    max_new_tokens: int | None = None,
    validation_retries: int = 1,
    domain: str = "news",
) -> InstructionResult:
    """Map a reader's instruction to `SteeringParams` with the LLM (role "steering").

    The instruction is cleaned and capped like item text and sits inside the prompt's
    `<item>` block. The answer is JSON-repaired, validated, its categories repaired against
    `categories` (the rest rejected with a note); an unusable answer is retried once with a
    stricter reminder. Answers are cached by (role, prompt version, model, prompt hash).
    `max_new_tokens` None: the role's budget (`schemas.max_answer_tokens`).
    """
    vocab = categories if isinstance(categories, Vocabulary) else Vocabulary.of(categories)
    if not vocab.terms:
        raise ValueError("instruction_to_params: the category list is empty")
    text = clean_text(instruction, MAX_INSTRUCTION_CHARS)
    if not text:
        return InstructionResult(None, _unmapped(text, "the instruction is empty"), None)
    run = run_role(
        "steering",
        [RoleInput(text[:200], {"instruction": text})],
        backend,
        cache,
        vocabulary=VocabularyConfig(categories=vocab),
        prompt_version=prompt_version,
        max_new_tokens=max_new_tokens,
        validation_retries=validation_retries,
        domain=domain,
    )
    (row,) = run.rows
    if row.output is None:
        # no answer text at all: the backend failed (a bad answer's reason names itself)
        reason = row.error or "no answer"
        reason = reason if row.raw_text is not None else f"LLM error: {reason}"
        return InstructionResult(None, _unmapped(text, reason), row.raw_text, row.notes, row.cached)
    params = SteeringParams(
        category_weights=row.output["boost"],
        exclude_categories=row.output["exclude"],
        freshness_days=row.output["freshness_days"],
        diversity=row.output["diversity"],
        source="instruction",
        instruction=text,
    )
    message = f"steering: {describe(params)}"
    return InstructionResult(params, message, row.raw_text, row.notes, row.cached)


def _unmapped(text: str, reason: str) -> str:
    shown = text if len(text) <= 80 else text[:79] + "…"
    reason = reason if len(reason) <= 400 else reason[:399] + "…"  # the cache keeps it whole
    return f"could not map the instruction {shown!r}: {reason}; lists unchanged"
