"""LLM/PLM embeddings of item texts and of GENRE user-profile topics.

Vectors are cached by (model id, text hash) in DuckDB, so a nightly refresh encodes only new or
changed texts and identical texts are encoded once.
"""

import time

import dagster as dg
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster.assets.scoring import embedding_fields
from genre_dagster.resources.encoder import EncoderResource
from genre_dagster.scoring.variants import DEFAULT_SCORERS

GROUP = "embeddings"
SUMMARIES = dg.AssetKey(["enrichment", "news_summaries"])
PROFILES = dg.AssetKey(["enrichment", "user_profiles"])
SYNTHETIC = dg.AssetKey(["enrichment", "synthetic_items"])


# What the default scorers read, plus the title (explanations and embedding drift use it).
DEFAULT_FIELDS = sorted(
    {"title"} | {f for spec in DEFAULT_SCORERS for f in embedding_fields(spec.config)}
)


class EmbeddingConfig(dg.Config):
    fields: list[str] = Field(
        default=DEFAULT_FIELDS,
        description=(
            "text fields to embed: title, abstract (falls back to the title), title_abstract "
            "(one text; scorers can average title and abstract vectors instead, as 'title+"
            "abstract'), summary (falls back to the title), summary_replace (summary + "
            "abstract), summary_append (title + abstract + category + summary)"
        ),
    )


def _encoder_metadata(encoder) -> dict:
    return {"model_id": encoder.model_id, "device": encoder.device, "dtype": encoder.dtype}


@dg.asset(
    key=[GROUP, "news_embeddings"],
    ins={
        "summaries": dg.AssetIn(SUMMARIES),
        "synthetic": dg.AssetIn(SYNTHETIC),
    },
    deps=["stg_news"],
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    pool="duckdb",
)
def news_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingConfig,
    summaries: pl.DataFrame,
    synthetic: pl.DataFrame,
    encoder: EncoderResource,
    duckdb: DuckDBResource,
) -> pl.DataFrame:
    """One vector per (item, text field), real and synthetic items alike. LLM summaries feed the
    summary fields (items without one fall back to their title)."""
    from genre_dagster.embedding import EmbeddingCache, build_item_texts, embed_with_cache

    with duckdb.get_connection() as conn:
        news = pl.from_arrow(
            conn.sql(
                "select news_id, title, abstract, category from main.stg_news order by news_id"
            ).to_arrow_table()
        )
    if synthetic.height:
        news = pl.concat([news, synthetic.select(news.columns)], how="vertical_relaxed")
    news = news.join(summaries.select("news_id", "summary"), on="news_id", how="left")
    model = encoder.get_encoder()
    cache = EmbeddingCache(duckdb.database)
    frames, totals = [], {"texts": 0, "encoded": 0, "reused": 0, "seconds": 0.0}
    per_field = []
    for field in config.fields:
        texts = build_item_texts(news, field)
        started = time.perf_counter()
        matrix, stats = embed_with_cache(texts, model, cache)
        seconds = time.perf_counter() - started
        frames.append(
            pl.DataFrame(
                {
                    "news_id": texts["news_id"],
                    "field": field,
                    "vector": pl.Series(matrix.astype(np.float32)).cast(pl.List(pl.Float32)),
                }
            )
        )
        fallback = int(texts["used_fallback"].sum())
        per_field.append((field, stats["texts"], stats["encoded"], stats["reused"], fallback))
        for key in ("texts", "encoded", "reused"):
            totals[key] += stats[key]
        totals["seconds"] += seconds
        context.log.info(
            f"{field}: {stats['encoded']} encoded, {stats['reused']} reused in {seconds:.1f} s"
        )
    out = pl.concat(frames)
    table = "| field | texts | encoded | reused | fallback to title |\n|---|---|---|---|---|\n"
    table += "\n".join(f"| {f} | {t} | {e} | {r} | {b} |" for f, t, e, r, b in per_field)
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "texts_encoded": totals["encoded"],
            "texts_reused": totals["reused"],
            # Encoder throughput: texts actually encoded per second of this step's embedding
            # work (cache lookups included in the seconds, reused texts not in the count).
            "texts_per_second": round(totals["encoded"] / max(totals["seconds"], 1e-9), 1),
            "encode_seconds": round(totals["seconds"], 2),
            "dim": int(model.dim),
            "fields": dg.MetadataValue.md(table),
            **_encoder_metadata(model),
        }
    )
    return out


@dg.asset(
    key=[GROUP, "user_profile_embeddings"],
    ins={"profiles": dg.AssetIn(PROFILES)},
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    pool="duckdb",
)
def user_profile_embeddings(
    context: dg.AssetExecutionContext,
    profiles: pl.DataFrame,
    encoder: EncoderResource,
    duckdb: DuckDBResource,
) -> pl.DataFrame:
    """Per user, the mean embedding of their GENRE profile topics and regions (ONCE): the user
    feature that the profile plug-in of the neural scorers fuses into the user vector."""
    from genre_dagster.embedding import EmbeddingCache, build_profile_texts, embed_with_cache

    texts = build_profile_texts(profiles)
    model = encoder.get_encoder()
    if texts.height == 0:
        context.log.warning("no user profiles yet: nothing to embed")
        out = pl.DataFrame(schema={"user_id": pl.Utf8, "vector": pl.List(pl.Float32)})
        context.add_output_metadata({"dagster/row_count": 0, **_encoder_metadata(model)})
        return out
    matrix, stats = embed_with_cache(texts, model, EmbeddingCache(duckdb.database))
    users, inverse = np.unique(texts["user_id"].to_numpy(), return_inverse=True)
    sums = np.zeros((len(users), matrix.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, matrix)
    means = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    out = pl.DataFrame({"user_id": users, "vector": pl.Series(means).cast(pl.List(pl.Float32))})
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "profile_terms": texts.height,
            "texts_encoded": stats["encoded"],
            "texts_reused": stats["reused"],
            **_encoder_metadata(model),
        }
    )
    return out
