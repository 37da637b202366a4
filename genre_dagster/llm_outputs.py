"""Bring your own LLM outputs: batch export and import wired to a deployment, and the Dagster
job that imports from the UI.

`genre-dagster llm export` and `genre-dagster llm import` (cli.py) and the `import_llm_outputs`
job call the same two functions here, with the deployment's DuckDB file, source (domain,
vocabularies) and pseudonymization key. The logic lives in `genre_dagster.enrichment`
(`batch`, `importer`, `answer_files`). No `from __future__ import annotations`: Dagster reads the
op's config annotation at definition time.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster.resources.privacy import PrivacyResource
from genre_dagster.resources.source import DatasetSource
from genre_dagster.settings import COLD_MAX_CLICKS

if TYPE_CHECKING:
    from genre_dagster.enrichment.batch import BatchPlan
    from genre_dagster.enrichment.importer import ImportReport

# What each role's answers feed (the asset whose next materialization publishes them).
ROLE_ASSETS = {
    "summarizer": ["enrichment", "news_summaries"],
    "profiler": ["enrichment", "user_profiles"],
    "generator": ["enrichment", "synthetic_items"],
    "chain_generator": ["enrichment", "synthetic_items"],
}


class LLMImportConfig(dg.Config):
    """Answer files to import for one GENRE role (`genre-dagster llm import` in the launchpad)."""

    files: list[str] = Field(description="answer files (paths the run can read)")
    role: str = Field(description="summarizer | profiler | generator | chain_generator")
    model: str = Field(default="", description="the model that wrote the answers (provenance)")
    name: str = Field(default="", description="import name (imported:<name>); '' = file stem")
    format: str = Field(
        default="auto",
        description="auto | openai_batch | genre_summaries | genre_jsonl | jsonl",
    )
    user_vocab: str = Field(
        default="", description="user-id vocabulary (one raw id a line; uid = line number)"
    )
    key_field: str = Field(default="", description="jsonl: the key field (default key / id)")
    output_field: str = Field(
        default="", description="jsonl: the answer field (default output / text)"
    )
    wrap_as: str = Field(default="", description="plain-text answers become {FIELD: text}")
    topics: str = Field(
        default="",
        description="topic vocabulary of profiles ('' = the source's): auto | categories | "
        "genre_news | open | file:PATH | a comma-separated list",
    )
    regions: str = Field(default="", description="region vocabulary ('' = the source's)")
    max_topics: int = Field(default=5, description="most topics per profile")
    max_topic_words: int = Field(default=3, description="open topics: most words per topic")
    max_title_chars: int = Field(default=150, description="length cap of titles")
    max_text_chars: int = Field(default=300, description="length cap of descriptions/abstracts")


def import_outputs(
    database: str | Path,
    source: DatasetSource,
    privacy: PrivacyResource,
    config: LLMImportConfig,
) -> list["ImportReport"]:
    """Import `config.files` into the deployment's response cache (one report per import)."""
    import polars as pl

    from genre_dagster.enrichment.enrich import role_vocabulary
    from genre_dagster.enrichment.importer import Importer, ImportRequest
    from genre_dagster.enrichment.inputs import item_categories, known_keys
    from genre_dagster.warehouse import connect

    categories: list[str] = []

    def vocabulary(role: str):
        if role != "summarizer" and not categories:
            with connect(database, "LLM import (categories)") as conn:
                categories.extend(_features(conn, item_categories))
        return role_vocabulary(
            role,
            categories,
            domain=source.item_domain,
            topics=config.topics or source.profile_topics,
            regions=config.regions or source.profile_regions,
            max_topics=config.max_topics,
            max_topic_words=config.max_topic_words,
            max_title_chars=config.max_title_chars,
            max_text_chars=config.max_text_chars,
        )

    def keys(role: str) -> set[str]:
        with connect(database, "LLM import (known keys)") as conn:
            return _features(conn, lambda c: known_keys(c, role))

    def pseudonymize(raw_ids: list[str]) -> list[str]:
        return privacy.pseudonymize(pl.Series("user_id", raw_ids, dtype=pl.Utf8)).to_list()

    importer = Importer(database, vocabulary, keys, pseudonymize)
    return importer.run(
        ImportRequest(
            paths=config.files,
            role=config.role,
            model=config.model or None,
            name=config.name or None,
            fmt=config.format,
            user_vocab=config.user_vocab or None,
            key_field=config.key_field or None,
            output_field=config.output_field or None,
            wrap_as=config.wrap_as or None,
        )
    )


def _features(conn: Any, read):
    import duckdb

    try:
        return read(conn)
    except duckdb.CatalogException as exc:
        raise RuntimeError(
            "the feature tables (stg_news, user_histories) are missing: materialize the graph "
            f"once (genre-dagster run) before importing answers ({exc})"
        ) from None


def role_config(
    role: str, budget: int | None = None, everything: bool = False, prompt_version: str = ""
):
    """The enrichment asset's launchpad config of `role` as a run uses it by default, with
    another `budget` (None: the asset's), no budget at all (`everything`), or another prompt
    version."""
    from genre_dagster.assets.enrichment import GeneratorConfig, ProfilerConfig, RoleConfig

    overrides: dict[str, Any] = {}
    if prompt_version:
        overrides["prompt_version"] = prompt_version
    if role == "summarizer":
        config = RoleConfig(**overrides)
    elif role == "profiler":
        config = ProfilerConfig(**overrides)
    elif role in ("generator", "chain_generator"):
        mode = "chain" if role == "chain_generator" else "direct"
        config = GeneratorConfig(mode=mode, **overrides)
    else:
        raise ValueError(f"unknown role {role!r}")
    if everything:  # an offline batch has no nightly time limit (run_role: None = no limit)
        return config.model_copy(update={"budget": None})
    return config if budget is None else config.model_copy(update={"budget": budget})


def export_batch(
    role: str,
    database: str | Path,
    source: DatasetSource,
    model_name: str,
    out: str | Path,
    batch_model: str,
    budget: int | None = None,
    everything: bool = False,
    prompt_version: str = "",
) -> "BatchPlan":
    """Write the requests the next run of `role` would send to `model_name` as an OpenAI Batch
    input file for `batch_model`, and remember them for the import of the answers."""
    from genre_dagster.assets.enrichment import role_vocabulary
    from genre_dagster.enrichment.batch import plan_batch, write_batch
    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.enrichment.import_store import ImportStore
    from genre_dagster.enrichment.inputs import item_categories, role_inputs
    from genre_dagster.warehouse import connect

    config = role_config(role, budget, everything, prompt_version)
    with connect(database, "LLM batch export (inputs)") as conn:
        cold = getattr(config, "cold_max_clicks", COLD_MAX_CLICKS)
        inputs = _features(conn, lambda c: role_inputs(c, role, cold))
        categories = _features(conn, item_categories) if role != "summarizer" else []
    vocabulary = role_vocabulary(role, config, source, categories)
    plan = plan_batch(role, inputs, config, model_name, database, vocabulary, source.item_domain)
    write_batch(out, plan, batch_model)
    ImportStore(ResponseCache(database)).record_export(
        [exported for exported, _ in plan.requests], batch_model, str(Path(out).resolve())
    )
    return plan


@dg.op(
    name="import_answer_files",
    description="Import LLM answer files (OpenAI Batch outputs, GENRE's released logs, any "
    "JSONL) for one GENRE role into the response cache; the next materialization of the "
    "enrichment assets publishes them.",
    pool="duckdb",
)
def import_llm_outputs_op(
    context: dg.OpExecutionContext,
    config: LLMImportConfig,
    duckdb: DuckDBResource,
    privacy: PrivacyResource,
    source: DatasetSource,
) -> None:
    reports = import_outputs(duckdb.database, source, privacy, config)
    for report in reports:
        context.log.info(report.text())
        summary = report.as_dict()
        context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey(ROLE_ASSETS[config.role]),
                metadata={
                    "import": report.name,
                    "lines_read": report.lines_read,
                    "imported": report.imported,
                    "already_imported": report.already_imported,
                    "duplicates": report.duplicates,
                    "rejected": dg.MetadataValue.json(summary["rejected"]),
                    "answers_written": report.answers_written,
                    "files": dg.MetadataValue.json(report.files),
                },
            )
        )


@dg.job(
    name="import_llm_outputs",
    description="Import LLM answers produced elsewhere (see LLMImportConfig); run it from the "
    "launchpad with the files and the role.",
)
def import_llm_outputs_job() -> None:
    import_llm_outputs_op()
