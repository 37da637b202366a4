"""Run one GENRE role over many inputs: cache first, budget, batches, validation, one retry.

For each input the prompt is rendered and hashed; cached ok answers are reused (and cached
failures too when `retry_failed` is False). The rest are sent to the backend in batches, up to
`budget` items (inputs come newest first, so the newest are served first); each answer is
validated, a failing one is retried once with a stricter reminder, and every finished batch is
written to the cache at once, so a crash loses at most the batch in flight. An exception
raised by a backend (rather than an error result) stops the run; finished batches are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genre_dagster.enrichment.backends import LLMBackend
from genre_dagster.enrichment.cache import ResponseCache
from genre_dagster.enrichment.prompts import load_template
from genre_dagster.enrichment.roles import ROLES, RoleInput
from genre_dagster.enrichment.sanitize import PromptLimits
from genre_dagster.enrichment.schemas import OutputLimits, VocabularyConfig
from genre_dagster.enrichment.stage import RoleRow, RoleRunResult, Stage, stats_of
from genre_dagster.enrichment.vocabulary import Vocabulary, us_states_vocabulary

__all__ = ["RoleInput", "RoleRow", "RoleRunResult", "run_role", "vocabulary_config"]


def vocabulary_config(
    categories: Sequence[str] | Vocabulary,
    topics: Sequence[str] | Vocabulary | None = None,
    regions: Sequence[str] | Vocabulary | None = None,
    max_topics: int = 5,
    limits: OutputLimits | None = None,
) -> VocabularyConfig:
    """Vocabularies for the roles: topics default to the categories, regions to US states
    (`choices.vocabulary_for` reads the same from configuration strings)."""
    as_vocab = lambda v: v if isinstance(v, Vocabulary) else Vocabulary.of(v)  # noqa: E731
    cats = as_vocab(categories)
    return VocabularyConfig(
        topics=as_vocab(topics) if topics is not None else cats,
        categories=cats,
        regions=as_vocab(regions) if regions is not None else us_states_vocabulary(),
        max_topics=max_topics,
        limits=limits or OutputLimits(),
    )


def run_role(
    role: str,
    inputs: Sequence[RoleInput],
    backend: LLMBackend,
    cache: ResponseCache | None,
    budget: int | None = None,
    batch_size: int = 8,
    vocabulary: VocabularyConfig | None = None,
    prompt_version: str = "v2",
    profiler_version: str = "v2",
    limits: PromptLimits | None = None,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    retry_failed: bool = True,
    validation_retries: int = 1,
    template_folder: str | Path | None = None,
    domain: str = "news",
    constrained: bool = True,
    known_profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> RoleRunResult:
    """Run `role` over `inputs` (newest first) and return one row per input, in input order.

    Args:
        budget: max items sent to the LLM in this run (None: no limit); cached items are free;
            items past the budget are reported "skipped".
        vocabulary: topics/categories/regions (see `vocabulary_config`); needed by all roles
            but the summarizer.
        profiler_version: template version of the profiler step of chain_generator.
        retry_failed: send items whose cached answer failed again (True) or report the cached
            failure (False).
        validation_retries: stricter-reminder retries after an invalid answer.
        domain: what the items are ("news", "books", "podcast episode"), named in the prompts.
        constrained: attach the role's JSON schema to every request, so backends that can
            constrain decoding to it do (part of the cache key).
        known_profiles: chain_generator: profiles already known per input key (e.g. imported
            answers); the profiler step is skipped for these inputs and their topics are used.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {ROLES}")
    if batch_size < 1 or (budget is not None and budget < 0) or validation_retries < 0:
        raise ValueError("run_role: need batch_size >= 1, budget >= 0, validation_retries >= 0")
    keys = [item.key for item in inputs]
    if len(set(keys)) != len(keys):
        raise ValueError("run_role: input keys must be unique")
    stage = Stage(
        backend=backend,
        cache=cache,
        batch_size=batch_size,
        vocab=vocabulary or VocabularyConfig(),
        limits=limits or PromptLimits(),
        temperature=temperature,
        retry_failed=retry_failed,
        validation_retries=validation_retries,
        budget=budget,
        sent=set(),
        domain=domain,
        constrained=constrained,
    )
    load = lambda r, v: load_template(r, v, template_folder)  # noqa: E731
    if role != "chain_generator":
        return stage.run(load(role, prompt_version), inputs, max_new_tokens)
    # Chain: profile first (its answers are cached as the profiler role), then generate.
    profiler = load("profiler", profiler_version)
    wanted = set(keys)
    known = {k: dict(value) for k, value in (known_profiles or {}).items() if k in wanted}
    profiles = stage.run(profiler, chain_profile_inputs(inputs, skip=known), None)
    by_key = {row.key: row for row in profiles.rows}
    by_key.update({key: RoleRow(key, "ok", value, None, True) for key, value in known.items()})
    ready = [
        RoleInput(i.key, {**i.fields, "topics": by_key[i.key].output["topics"]})
        for i in inputs
        if by_key[i.key].status == "ok"
    ]
    generated = stage.run(load(role, prompt_version), ready, max_new_tokens)
    gen_by_key = {row.key: row for row in generated.rows}
    rows = []
    for item in inputs:
        profile = by_key[item.key]
        if item.key in gen_by_key:
            rows.append(gen_by_key[item.key])
        else:
            error = None if profile.status == "skipped" else f"profiler: {profile.error}"
            rows.append(RoleRow(item.key, profile.status, None, error, profile.cached))
    stats = stats_of(rows, profiles.stats["seconds"] + generated.stats["seconds"])
    for name in ("sent", "requests", "prompt_tokens", "completion_tokens"):
        stats[name] = profiles.stats[name] + generated.stats[name]
    return RoleRunResult(
        role,
        prompt_version,
        backend.model_name,
        rows,
        stats,
        {"profiler": profiles.stats, "chain_generator": generated.stats},
    )


def chain_profile_inputs(
    inputs: Sequence[RoleInput], skip: Mapping[str, Any] | None = None
) -> list[RoleInput]:
    """The profiler step's inputs of a chain: each generator input's history titles (inputs
    whose key is in `skip` are left out)."""
    return [
        RoleInput(i.key, {"history": [_title(h) for h in i.fields.get("history") or []]})
        for i in inputs
        if i.key not in (skip or {})
    ]


def _title(entry: Any) -> Any:
    return entry.get("title") if isinstance(entry, dict) else entry


def with_earlier_answers(result: RoleRunResult, cache: ResponseCache | None) -> RoleRunResult:
    """`result` where every input without a valid answer tonight (failed, or skipped by the
    budget) takes the newest valid answer cached for the same item, marked `stale`.

    A user's history grows every night, so the profiler's input (and its hash) changes; without
    this, a failing LLM or a small budget would unpublish yesterday's profiles. Counted in
    `stats["stale"]`; the failure or skip itself stays counted as before.
    """
    missing = [row.key for row in result.rows if row.status != "ok"]
    earlier = (
        cache.latest_ok(result.role, result.prompt_version, result.model, missing)
        if cache is not None and missing
        else {}
    )
    rows = [
        RoleRow(
            row.key,
            "ok",
            earlier[row.key].parsed,
            None,
            True,
            input_hash=earlier[row.key].input_hash,
            stale=True,
        )  # fmt: skip
        if row.key in earlier
        else row
        for row in result.rows
    ]
    stats = {**result.stats, "stale": len(earlier)}
    return RoleRunResult(
        result.role, result.prompt_version, result.model, rows, stats, result.stage_stats
    )
