"""One role's answers for one run, as the enrichment assets publish them.

Order of precedence per input: an answer imported with `genre-dagster llm import` (the newest
import for that item; such items are not sent to the deployment's LLM), then the run's own
answer (cached or fresh), then the newest earlier answer of the same item (`stale`). The
export of an offline batch runs the same function with a backend that only records what
would be sent, so its selection, budget and rendering are the assets' own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genre_dagster.enrichment.backends import LLMBackend
from genre_dagster.enrichment.cache import IMPORTED_PREFIX, CachedResponse, ResponseCache
from genre_dagster.enrichment.roles import RoleInput
from genre_dagster.enrichment.runner import RoleRow, RoleRunResult, run_role, with_earlier_answers
from genre_dagster.enrichment.schemas import OutputLimits, VocabularyConfig

# The cache roles whose imported answers an asset's role publishes: a released generator log
# serves the synthetic items whichever mode (direct or chain) the asset runs in.
IMPORTED_ROLES: dict[str, tuple[str, ...]] = {
    "summarizer": ("summarizer",),
    "profiler": ("profiler",),
    "generator": ("generator", "chain_generator"),
    "chain_generator": ("generator", "chain_generator"),
}


def role_vocabulary(
    role: str,
    categories: Sequence[str],
    *,
    domain: str,
    topics: str,
    regions: str,
    max_topics: int = 5,
    max_topic_words: int = 3,
    max_title_chars: int = 150,
    max_text_chars: int = 300,
) -> VocabularyConfig:
    """The vocabularies and length caps a role's answers are held to (configuration strings as
    in `choices.vocabulary_for`; the summarizer lists no topics)."""
    from genre_dagster.enrichment.choices import vocabulary_for

    limits = OutputLimits(
        title_chars=max_title_chars,
        summary_chars=max_text_chars,
        abstract_chars=max_text_chars,
        term_words=max_topic_words if role != "summarizer" else 3,
    )
    if role == "summarizer":
        return vocabulary_for([], "open", "off", domain, limits=limits)
    return vocabulary_for(
        categories,
        topics=topics,
        regions=regions,
        domain=domain,
        max_topics=max_topics,
        limits=limits,
    )


@dataclass
class Enriched:
    """A run's rows (input order) and, per item key, the imported answer published for it."""

    result: RoleRunResult
    imported: dict[str, CachedResponse] = field(default_factory=dict)

    def origin(self, key: str) -> tuple[str, str]:
        """(model, prompt version) of the answer published for `key`."""
        hit = self.imported.get(key)
        if hit is not None:
            return hit.model, hit.prompt_version
        return self.result.model, self.result.prompt_version

    def imported_from(self) -> dict[str, int]:
        """Published answers per import (`<name> (<model>)` -> count)."""
        counts = Counter(
            f"{hit.prompt_version.removeprefix(IMPORTED_PREFIX)} ({hit.model})"
            for hit in self.imported.values()
        )
        return dict(sorted(counts.items()))


def enrich(
    role: str,
    inputs: Sequence[RoleInput],
    config: Any,
    backend: LLMBackend,
    cache: ResponseCache,
    vocabulary: VocabularyConfig,
    domain: str,
    earlier: bool = True,
) -> Enriched:
    """Answers of `role` for `inputs` (see the module docstring).

    `config` carries the role's run settings (the enrichment assets' RoleConfig): budget,
    batch_size, prompt_version, retry_failed, max_new_tokens, constrained, use_imported.
    `earlier=False` leaves out the earlier answers (what an export needs: only tonight's)."""
    keys = [item.key for item in inputs]
    use_imported = bool(getattr(config, "use_imported", True))
    imported = cache.latest_imported(IMPORTED_ROLES[role], keys) if use_imported else {}
    rest = [item for item in inputs if item.key not in imported]
    known_profiles = None
    if role == "chain_generator" and use_imported:
        # a profile imported for a cold user conditions the chain's generation
        profiles = cache.latest_imported(("profiler",), [item.key for item in rest])
        known_profiles = {key: hit.parsed for key, hit in profiles.items()}
    result = run_role(
        role,
        rest,
        backend,
        cache,
        budget=config.budget,
        batch_size=config.batch_size,
        prompt_version=config.prompt_version,
        profiler_version=config.prompt_version,
        retry_failed=config.retry_failed,
        max_new_tokens=config.max_new_tokens or None,
        vocabulary=vocabulary,
        domain=domain,
        constrained=config.constrained,
        known_profiles=known_profiles,
    )
    if earlier:
        # Inputs that got no valid answer tonight keep their last one (flagged `stale`), so an
        # LLM outage or a small budget never unpublishes earlier enrichment.
        result = with_earlier_answers(result, cache)
    by_key = {row.key: row for row in result.rows}
    for key, hit in imported.items():
        by_key[key] = RoleRow(key, "ok", hit.parsed, None, True, input_hash=hit.input_hash)
    rows = [by_key[key] for key in keys]
    stats = {**result.stats, "imported": len(imported)}
    merged = RoleRunResult(
        result.role, result.prompt_version, result.model, rows, stats, result.stage_stats
    )
    return Enriched(merged, imported)
