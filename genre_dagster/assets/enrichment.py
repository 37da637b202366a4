"""GENRE's LLM enrichment: content summaries, user interest profiles, synthetic items for cold
users (direct or chain-based). The roles, prompts, validation and the response cache live in
`genre_dagster.enrichment`; these assets choose inputs (newest first, `enrichment.inputs`),
apply the per-run budget, and publish every answer the cache holds, so a night with a failing
LLM keeps yesterday's work. Answers imported with `genre-dagster llm import` (an offline batch,
released outputs) are published for their items in place of the deployment's LLM
(`enrichment.enrich`).
"""

import hashlib
import time
from typing import Any

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.llm import LLMResource
from genre_dagster.resources.source import DatasetSource
from genre_dagster.settings import COLD_MAX_CLICKS

GROUP = "enrichment"


class RoleConfig(dg.Config):
    """Per-run settings of one GENRE role (editable in the launchpad)."""

    budget: int = Field(
        default=16,
        description="most items sent to the LLM in one run (newest first); cached answers are free",
    )
    batch_size: int = Field(default=16, description="prompts per LLM batch")
    prompt_version: str = Field(default="v2", description="prompt template version")
    retry_failed: bool = Field(default=True, description="retry items that failed before")
    max_new_tokens: int = Field(
        default=0, description="answer token cap; 0 = what the role's length caps need"
    )
    constrained: bool = Field(
        default=True,
        description="decode under the role's JSON schema (local model: llguidance; "
        "OpenAI-compatible servers: response_format)",
    )
    max_title_chars: int = Field(default=150, description="length cap of a title in answers")
    max_text_chars: int = Field(
        default=300, description="length cap of a description / abstract in answers"
    )
    use_imported: bool = Field(
        default=True,
        description="publish answers imported with `genre-dagster llm import` (newest import "
        "per item) for their items instead of asking the LLM",
    )


class ProfilerConfig(RoleConfig):
    budget: int = Field(default=8, description="most users sent to the LLM in one run")
    topics: str = Field(
        default="",
        description="'' = the source's profile_topics; auto | categories | genre_news | open | "
        "file:PATH | a comma-separated list",
    )
    regions: str = Field(
        default="",
        description="'' = the source's profile_regions; auto | off | us_states | file:PATH | "
        "a comma-separated list",
    )
    max_topics: int = Field(default=5, description="most topics per user")
    max_topic_words: int = Field(default=3, description="open topics: most words per topic")


class GeneratorConfig(ProfilerConfig):
    mode: str = Field(default="chain", description="direct | chain (profile first, then generate)")
    cold_max_clicks: int = Field(
        default=COLD_MAX_CLICKS, description="cold user = at most this many clicks"
    )
    budget: int = Field(default=4, description="most cold users sent to the LLM in one run")


def role_vocabulary(role: str, config: RoleConfig, source: DatasetSource, categories: list[str]):
    """The role's vocabularies and length caps from the launchpad config and the source."""
    from genre_dagster.enrichment.enrich import role_vocabulary as vocabulary_of

    profiler = isinstance(config, ProfilerConfig)
    return vocabulary_of(
        role,
        categories,
        domain=source.item_domain,
        topics=(config.topics if profiler else "") or source.profile_topics,
        regions=(config.regions if profiler else "") or source.profile_regions,
        max_topics=config.max_topics if profiler else 5,
        max_topic_words=config.max_topic_words if profiler else 3,
        max_title_chars=config.max_title_chars,
        max_text_chars=config.max_text_chars,
    )


def _run(
    role: str,
    inputs: list,
    config: RoleConfig,
    llm: LLMResource,
    database: str,
    source: DatasetSource,
    vocabulary: Any,
):
    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.enrichment.enrich import enrich

    return enrich(
        role,
        inputs,
        config,
        llm.get_backend(),
        ResponseCache(database),
        vocabulary,
        source.item_domain,
    )


def _setup_metadata(
    config: RoleConfig, llm: LLMResource, source: DatasetSource, vocabulary: Any
) -> dict[str, Any]:
    """How the answers were asked for: domain, vocabularies, schema constraint."""
    backend = llm.get_backend()
    return {
        "domain": source.item_domain,
        "vocabulary": dg.MetadataValue.json(vocabulary.describe()),
        "constrained": config.constrained,
        "structured_output": getattr(backend, "structured_mode", "schema-constrained decoding")
        if config.constrained
        else "off",
    }


def _run_metadata(enriched, started: float) -> dict[str, Any]:
    result = enriched.result
    stats = result.stats
    seconds = time.perf_counter() - started
    tokens = int(stats.get("completion_tokens", 0) or 0)
    errors = pl.DataFrame(
        {"error": [r.error for r in result.rows if r.status == "failed" and r.error]},
        schema={"error": pl.Utf8},
    )
    top_errors = errors.group_by("error").len().sort("len", descending=True).head(5)
    return {
        "model": result.model,
        "prompt_version": result.prompt_version,
        "answered": int(stats.get("answered", 0)),
        "cached": int(stats.get("cached", 0)),
        "failed": int(stats.get("failed", 0)),
        "skipped_by_budget": int(stats.get("skipped_by_budget", 0)),
        "stale": int(stats.get("stale", 0)),
        "imported": int(stats.get("imported", 0)),
        "imported_from": dg.MetadataValue.json(enriched.imported_from()),
        "prompt_tokens": int(stats.get("prompt_tokens", 0) or 0),
        "completion_tokens": tokens,
        "seconds": round(seconds, 2),
        "completion_tokens_per_second": round(tokens / seconds, 2) if seconds else 0.0,
        "failure_reasons": dg.MetadataValue.md(
            "| error | items |\n|---|---|\n"
            + "\n".join(f"| {e[:120]} | {n} |" for e, n in top_errors.iter_rows())
        ),
    }


def _sample_md(frame: pl.DataFrame, columns: list[str], n: int = 5) -> dg.MetadataValue:
    head = frame.select(columns).head(n)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(str(v)[:100].replace("|", "/") for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(
    key=[GROUP, "news_summaries"],
    deps=[wh.STG_NEWS.key, wh.ITEM_DAILY_STATS.key],
    group_name=GROUP,
    kinds={"llm", "duckdb"},
    pool="duckdb",
)
def news_summaries(
    context: dg.AssetExecutionContext,
    config: RoleConfig,
    llm: LLMResource,
    duckdb: DuckDBResource,
    source: DatasetSource,
) -> pl.DataFrame:
    """GENRE content summarizer: a new, neutral title and a short factual description per item,
    newest items first, with prompts for the source's domain (news, books, ...).

    `summary` (the text the encoder reads) is the new title and the description together.
    Holds every valid answer in the response cache for the current prompt version and model;
    items without one fall back to their title downstream."""
    from genre_dagster.enrichment.inputs import summarizer_inputs
    from genre_dagster.enrichment.schemas import summary_text

    with duckdb.get_connection() as conn:
        items, inputs = summarizer_inputs(conn)
    vocabulary = role_vocabulary("summarizer", config, source, [])
    started = time.perf_counter()
    enriched = _run("summarizer", inputs, config, llm, duckdb.database, source, vocabulary)
    ok = [
        (r.key, summary_text(r.output), r.output.get("title"), r.output.get("description"))
        + (r.cached, r.stale, *enriched.origin(r.key))
        for r in enriched.result.rows
        if r.status == "ok"
    ]
    out = pl.DataFrame(
        ok,
        schema={
            "news_id": pl.Utf8,
            "summary": pl.Utf8,
            "new_title": pl.Utf8,
            "description": pl.Utf8,
            "cached": pl.Boolean,
            "stale": pl.Boolean,
            "model": pl.Utf8,
            "prompt_version": pl.Utf8,
        },
        orient="row",
    )
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "items": items.height,
            "coverage": round(out.height / max(items.height, 1), 4),
            "sample": _sample_md(out.join(items, on="news_id"), ["title", "summary"]),
            **_setup_metadata(config, llm, source, vocabulary),
            **_run_metadata(enriched, started),
        }
    )
    return out


@dg.asset(
    key=wh.USER_PROFILES.key,
    deps=[wh.USER_HISTORIES.key, wh.STG_NEWS.key],
    group_name=GROUP,
    kinds={"llm", "duckdb"},
    pool="duckdb",
)
def user_profiles(
    context: dg.AssetExecutionContext,
    config: ProfilerConfig,
    llm: LLMResource,
    duckdb: DuckDBResource,
    source: DatasetSource,
) -> pl.DataFrame:
    """GENRE user profiler: interest topics (from the configured vocabulary: the dataset's
    categories, GENRE's 19 news topics, a list of your own, or free-form) and optional regions,
    from each user's recent history, most recently active users first. Answers are decoded
    under the vocabulary's schema; answers from elsewhere are repaired or rejected, never stored
    outside it."""
    from genre_dagster.enrichment.inputs import item_categories, profiler_inputs

    with duckdb.get_connection() as conn:
        categories = item_categories(conn)
        users, inputs = profiler_inputs(conn)
    vocabulary = role_vocabulary("profiler", config, source, categories)
    started = time.perf_counter()
    enriched = _run("profiler", inputs, config, llm, duckdb.database, source, vocabulary)
    rows = [
        (r.key, r.output["topics"], r.output.get("regions", []), r.cached, r.stale)
        + enriched.origin(r.key)
        for r in enriched.result.rows
        if r.status == "ok"
    ]
    out = pl.DataFrame(
        rows,
        schema={
            "user_id": pl.Utf8,
            "topics": pl.List(pl.Utf8),
            "regions": pl.List(pl.Utf8),
            "cached": pl.Boolean,
            "stale": pl.Boolean,
            "model": pl.Utf8,
            "prompt_version": pl.Utf8,
        },
        orient="row",
    )
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "users_with_history": users.height,
            "distinct_topics": out.select(pl.col("topics").explode().n_unique()).item()
            if out.height
            else 0,
            "sample": _sample_md(out, ["user_id", "topics", "regions"]),
            **_setup_metadata(config, llm, source, vocabulary),
            **_run_metadata(enriched, started),
        }
    )
    return out


def generator_role(mode: str) -> str:
    """The generator role of a `synthetic_items` mode (direct | chain)."""
    return "chain_generator" if mode == "chain" else "generator"


def synthetic_id(user_id: str, mode: str, prompt_version: str) -> str:
    """Stable id of a user's synthetic item; the `S` prefix never collides with real ids."""
    digest = hashlib.sha256(f"{user_id}|{mode}|{prompt_version}".encode()).hexdigest()[:12]
    return f"S{digest}"


@dg.asset(
    key=wh.SYNTHETIC_ITEMS.key,
    deps=[t.key for t in (wh.USER_SEGMENTS, wh.USER_HISTORIES, wh.STG_NEWS)],
    group_name=GROUP,
    kinds={"llm", "duckdb"},
    pool="duckdb",
)
def synthetic_items(
    context: dg.AssetExecutionContext,
    config: GeneratorConfig,
    llm: LLMResource,
    duckdb: DuckDBResource,
    source: DatasetSource,
) -> pl.DataFrame:
    """GENRE personalized generator for cold users (1..N history clicks): one synthetic item
    {title, abstract, category} per user, appended to that user's history by the scorers.
    Chain mode profiles the user first and conditions the generation on the profile.
    Synthetic items are flagged and never become candidates, labels or recommendations."""
    from genre_dagster.enrichment.inputs import cold_user_inputs, item_categories

    if config.mode not in ("direct", "chain"):
        raise ValueError(f"mode must be 'direct' or 'chain', not {config.mode!r}")
    with duckdb.get_connection() as conn:
        categories = item_categories(conn)
        cold, inputs = cold_user_inputs(conn, config.cold_max_clicks)
    role = generator_role(config.mode)
    vocabulary = role_vocabulary(role, config, source, categories)
    started = time.perf_counter()
    enriched = _run(role, inputs, config, llm, duckdb.database, source, vocabulary)
    rows = []
    for r in enriched.result.rows:
        if r.status != "ok":
            continue
        model, prompt_version = enriched.origin(r.key)
        rows.append(
            (
                synthetic_id(r.key, config.mode, prompt_version),
                r.key,
                r.output["title"],
                r.output["abstract"],
                r.output["category"],
                r.cached,
                r.stale,
                model,
                prompt_version,
            )
        )
    out = pl.DataFrame(
        rows,
        schema={
            "news_id": pl.Utf8,
            "user_id": pl.Utf8,
            "title": pl.Utf8,
            "abstract": pl.Utf8,
            "category": pl.Utf8,
            "cached": pl.Boolean,
            "stale": pl.Boolean,
            "model": pl.Utf8,
            "prompt_version": pl.Utf8,
        },
        orient="row",
    ).with_columns(pl.lit(True).alias("is_synthetic"), pl.lit(config.mode).alias("mode"))
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "cold_users_with_history": cold.height,
            "mode": config.mode,
            "sample": _sample_md(out, ["user_id", "category", "title"]),
            **_setup_metadata(config, llm, source, vocabulary),
            **_run_metadata(enriched, started),
        }
    )
    return out
