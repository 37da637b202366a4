"""GENRE's LLM enrichment: content summaries, user interest profiles, synthetic items for cold
users (direct or chain-based). The roles, prompts, validation and the response cache live in
`genre_dagster.enrichment`; these assets choose inputs (newest first, `enrichment.inputs`),
apply the per-run budget, and publish every answer the cache holds, so a night with a failing
LLM keeps yesterday's work. Answers imported with `genre-dagster llm import` (an offline batch,
released outputs) are published for their items in place of the deployment's LLM
(`enrichment.enrich`).
"""

from typing import Any

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.llm import LLMResource
from genre_dagster.resources.source import DatasetSource
from genre_dagster.settings import COLD_MAX_CLICKS
from genre_dagster.step_budget import budgeted

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


def _enrich(
    role: str,
    inputs: list,
    config: RoleConfig,
    llm: LLMResource,
    duckdb: DuckDBResource,
    source: DatasetSource,
    categories: list[str],
):
    """The shared pass of the three roles (`enrichment.tables.enrichment_pass`): returns the
    role's table and the metadata of how its answers were asked for and how the run went."""
    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.enrichment.tables import enrichment_pass

    vocabulary = role_vocabulary(role, config, source, categories)
    cache = ResponseCache(duckdb.database)
    mode = getattr(config, "mode", "")
    done = enrichment_pass(
        role, inputs, config, llm.get_backend(), cache, vocabulary, source.item_domain, mode
    )
    return done.table, {**_setup_metadata(config, llm, source, vocabulary), **_run_metadata(done)}


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


def _run_metadata(done) -> dict[str, Any]:
    """How the run went (`RolePass.stats`), with the most frequent failure reasons."""
    stats = done.stats()
    stats["imported_from"] = dg.MetadataValue.json(stats["imported_from"])
    stats["failure_reasons"] = dg.MetadataValue.md(
        "| error | items |\n|---|---|\n"
        + "\n".join(f"| {e[:120]} | {n} |" for e, n in done.failure_reasons())
    )
    return stats


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
@budgeted
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

    with duckdb.get_connection() as conn:
        items, inputs = summarizer_inputs(conn)
    out, metadata = _enrich("summarizer", inputs, config, llm, duckdb, source, [])
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "items": items.height,
            "coverage": round(out.height / max(items.height, 1), 4),
            "sample": _sample_md(out.join(items, on="news_id"), ["title", "summary"]),
            **metadata,
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
@budgeted
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
    out, metadata = _enrich("profiler", inputs, config, llm, duckdb, source, categories)
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "users_with_history": users.height,
            "distinct_topics": out.select(pl.col("topics").explode().n_unique()).item()
            if out.height
            else 0,
            "sample": _sample_md(out, ["user_id", "topics", "regions"]),
            **metadata,
        }
    )
    return out


@dg.asset(
    key=wh.SYNTHETIC_ITEMS.key,
    deps=[t.key for t in (wh.USER_SEGMENTS, wh.USER_HISTORIES, wh.STG_NEWS)],
    group_name=GROUP,
    kinds={"llm", "duckdb"},
    pool="duckdb",
)
@budgeted
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
    from genre_dagster.enrichment.tables import generator_role

    if config.mode not in ("direct", "chain"):
        raise ValueError(f"mode must be 'direct' or 'chain', not {config.mode!r}")
    with duckdb.get_connection() as conn:
        categories = item_categories(conn)
        cold, inputs = cold_user_inputs(conn, config.cold_max_clicks)
    role = generator_role(config.mode)
    out, metadata = _enrich(role, inputs, config, llm, duckdb, source, categories)
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "cold_users_with_history": cold.height,
            "mode": config.mode,
            "sample": _sample_md(out, ["user_id", "category", "title"]),
            **metadata,
        }
    )
    return out
