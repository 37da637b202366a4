"""One enrichment pass as the assets publish it: run a role (`enrich`), turn its ok answers into
the role's table, and count what the run did. No Dagster here; the assets add the metadata."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from genre_dagster.enrichment.enrich import Enriched, enrich
from genre_dagster.enrichment.roles import RoleInput

SUMMARIES_SCHEMA = {
    "news_id": pl.Utf8,
    "summary": pl.Utf8,
    "new_title": pl.Utf8,
    "description": pl.Utf8,
    "cached": pl.Boolean,
    "stale": pl.Boolean,
    "model": pl.Utf8,
    "prompt_version": pl.Utf8,
}
PROFILES_SCHEMA = {
    "user_id": pl.Utf8,
    "topics": pl.List(pl.Utf8),
    "regions": pl.List(pl.Utf8),
    "cached": pl.Boolean,
    "stale": pl.Boolean,
    "model": pl.Utf8,
    "prompt_version": pl.Utf8,
}
SYNTHETIC_SCHEMA = {
    "news_id": pl.Utf8,
    "user_id": pl.Utf8,
    "title": pl.Utf8,
    "abstract": pl.Utf8,
    "category": pl.Utf8,
    "cached": pl.Boolean,
    "stale": pl.Boolean,
    "model": pl.Utf8,
    "prompt_version": pl.Utf8,
}


def generator_role(mode: str) -> str:
    """The generator role of a `synthetic_items` mode (direct | chain)."""
    return "chain_generator" if mode == "chain" else "generator"


def synthetic_id(user_id: str, mode: str, prompt_version: str) -> str:
    """Stable id of a user's synthetic item; the `S` prefix never collides with real ids."""
    digest = hashlib.sha256(f"{user_id}|{mode}|{prompt_version}".encode()).hexdigest()[:12]
    return f"S{digest}"


def summaries_table(enriched: Enriched, mode: str = "") -> pl.DataFrame:
    """`news_summaries`: new title and description per item (`summary` is both together)."""
    from genre_dagster.enrichment.schemas import summary_text

    rows = [
        (r.key, summary_text(r.output), r.output.get("title"), r.output.get("description"))
        + (r.cached, r.stale, *enriched.origin(r.key))
        for r in enriched.result.rows
        if r.status == "ok"
    ]
    return pl.DataFrame(rows, schema=SUMMARIES_SCHEMA, orient="row")


def profiles_table(enriched: Enriched, mode: str = "") -> pl.DataFrame:
    """`user_profiles`: interest topics and regions per user."""
    rows = [
        (r.key, r.output["topics"], r.output.get("regions", []), r.cached, r.stale)
        + enriched.origin(r.key)
        for r in enriched.result.rows
        if r.status == "ok"
    ]
    return pl.DataFrame(rows, schema=PROFILES_SCHEMA, orient="row")


def synthetic_items_table(enriched: Enriched, mode: str) -> pl.DataFrame:
    """`synthetic_items`: one generated item per cold user, flagged `is_synthetic`."""
    rows = []
    for r in enriched.result.rows:
        if r.status != "ok":
            continue
        model, prompt_version = enriched.origin(r.key)
        out = r.output
        rows.append(
            (synthetic_id(r.key, mode, prompt_version), r.key, out["title"], out["abstract"])
            + (out["category"], r.cached, r.stale, model, prompt_version)
        )
    return pl.DataFrame(rows, schema=SYNTHETIC_SCHEMA, orient="row").with_columns(
        pl.lit(True).alias("is_synthetic"), pl.lit(mode).alias("mode")
    )


TABLES = {
    "summarizer": summaries_table,
    "profiler": profiles_table,
    "generator": synthetic_items_table,
    "chain_generator": synthetic_items_table,
}


@dataclass
class RolePass:
    """A role's published table and how its run went."""

    table: pl.DataFrame
    enriched: Enriched
    seconds: float

    def stats(self) -> dict[str, Any]:
        """What the run did: model, answers by origin, tokens, speed."""
        result = self.enriched.result
        stats = result.stats
        tokens = int(stats.get("completion_tokens", 0) or 0)
        llm_seconds = float(stats.get("llm_seconds", 0.0) or 0.0)
        counts = ("answered", "cached", "failed", "skipped_by_budget", "stale", "imported")
        return {
            "model": result.model,
            "prompt_version": result.prompt_version,
            **{name: int(stats.get(name, 0)) for name in counts},
            "imported_from": self.enriched.imported_from(),
            # inputs rendered and hashed to be looked up; the others kept last run's hash
            "prompts_rendered": int(stats.get("rendered", 0)),
            "prompt_tokens": int(stats.get("prompt_tokens", 0) or 0),
            "completion_tokens": tokens,
            "seconds": round(self.seconds, 2),
            "llm_seconds": round(llm_seconds, 2),
            # of the LLM's own time, not of the pass (which also looks every input up)
            "completion_tokens_per_second": round(tokens / llm_seconds, 2) if llm_seconds else 0.0,
        }

    def failure_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        """The `n` most frequent errors of failed rows, with their counts."""
        errors = Counter(
            r.error for r in self.enriched.result.rows if r.status == "failed" and r.error
        )
        return sorted(errors.items(), key=lambda e: -e[1])[:n]


def enrichment_pass(
    role: str,
    inputs: Sequence[RoleInput],
    config: Any,
    backend: Any,
    cache: Any,
    vocabulary: Any,
    domain: str,
    mode: str = "",
) -> RolePass:
    """Answers of `role` for `inputs` (`enrich`: imported, cached, fresh or earlier) as the
    role's table; `config` carries the run settings (budget, batches, prompt version, ...)."""
    started = time.perf_counter()
    enriched = enrich(role, inputs, config, backend, cache, vocabulary, domain)
    table = TABLES[role](enriched, mode)
    return RolePass(table, enriched, time.perf_counter() - started)
