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

from genre_dagster import warehouse as wh
from genre_dagster.resources.encoder import EncoderResource
from genre_dagster.scoring.inputs import embedding_fields
from genre_dagster.scoring.variants import DEFAULT_SCORERS

GROUP = "embeddings"
SUMMARIES = dg.AssetKey(["enrichment", "news_summaries"])
PROFILES = wh.USER_PROFILES.key
SYNTHETIC = wh.SYNTHETIC_ITEMS.key
NEWS_TABLE = wh.NEWS_EMBEDDINGS


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


def _stored_texts(conn, model_id: str) -> pl.DataFrame | None:
    """(field, news_id, text_hash) already stored for `model_id`; None when there is nothing to
    update in place (no table yet, a table written before these columns, another encoder)."""
    columns = {
        name
        for (name,) in conn.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ?",
            [NEWS_TABLE.schema, NEWS_TABLE.name],
        ).fetchall()
    }
    if not {"field", "news_id", "text_hash", "model_id", "vector"} <= columns:
        return None
    stored = wh.query_frame(
        conn, f"select field, news_id, text_hash from {NEWS_TABLE} where model_id = ?", [model_id]
    )
    return stored if stored.height else None


def _vector_rows(texts: pl.DataFrame, field: str, model_id: str, matrix: np.ndarray):
    """Arrow rows (news_id, field, text_hash, model_id, vector FLOAT[]) of one field."""
    import pyarrow as pa

    from genre_dagster.embedding.cache import vector_list_array

    n = len(texts)
    return pa.table(
        {
            "news_id": pa.array(texts["news_id"].to_list(), pa.string()),
            "field": pa.array([field] * n, pa.string()),
            "text_hash": pa.array(texts["text_hash"].to_list(), pa.string()),
            "model_id": pa.array([model_id] * n, pa.string()),
            "vector": vector_list_array(matrix),
        }
    )


def _write_news_vectors(conn, fresh, wanted, model_id: str, update_in_place: bool) -> int:
    """Make the table hold exactly `wanted` (field, news_id, text_hash) rows: in place, only
    rows whose text changed or went away are deleted and `fresh` rows inserted; otherwise the
    table is replaced by `fresh` (which then holds every row). One transaction, committed only
    when the table holds one row per wanted row: a failed or killed run leaves yesterday's
    table. Returns the rows deleted."""
    with (
        wh.registered(conn, "_fresh_vectors", fresh),
        wh.registered(conn, "_wanted_texts", wanted),
    ):
        try:
            conn.execute("begin transaction")
            conn.execute(f"create schema if not exists {NEWS_TABLE.schema}")
            deleted = 0
            if update_in_place:
                (deleted,) = conn.execute(
                    f"""delete from {NEWS_TABLE} where rowid in (
                        select t.rowid from {NEWS_TABLE} t
                        anti join _wanted_texts w using (field, news_id, text_hash)
                        union all
                        select rowid from {NEWS_TABLE} where model_id <> ?
                    )""",
                    [model_id],
                ).fetchone()
                conn.execute(f"insert into {NEWS_TABLE} by name select * from _fresh_vectors")
            else:
                conn.execute(
                    f"create or replace table {NEWS_TABLE} as select * from _fresh_vectors"
                )
            (rows,) = conn.execute(f"select count(*) from {NEWS_TABLE}").fetchone()
            if rows != wanted.num_rows:
                raise RuntimeError(
                    f"{NEWS_TABLE} would hold {rows} rows after the update, expected "
                    f"{wanted.num_rows} (one per item and field); nothing was changed"
                )
            conn.execute("commit")
            return int(deleted)
        except Exception:
            conn.execute("rollback")
            raise


@dg.asset(
    key=NEWS_TABLE.key,
    ins={
        "summaries": dg.AssetIn(SUMMARIES),
        "synthetic": dg.AssetIn(SYNTHETIC),
    },
    deps=[wh.STG_NEWS.key],
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
) -> dg.MaterializeResult:
    """One vector per (item, text field), real and synthetic items alike, in table
    `embeddings.news_embeddings` (news_id, field, text_hash, model_id, vector). LLM summaries
    feed the summary fields (items without one fall back to their title). The table is updated
    in place: rows whose text and encoder are unchanged stay, so a nightly run writes only the
    new or changed items' vectors."""
    import pyarrow as pa

    from genre_dagster.embedding import EmbeddingCache, build_item_texts, embed_with_cache

    repeated = sorted({f for f in config.fields if config.fields.count(f) > 1})
    if repeated:
        raise ValueError(f"news_embeddings: fields are listed more than once: {repeated}")
    model = encoder.get_encoder()
    with duckdb.get_connection() as conn:
        news = wh.query_frame(
            conn, f"select news_id, title, abstract, category from {wh.STG_NEWS} order by news_id"
        )
        stored = _stored_texts(conn, model.model_id)
    if synthetic.height:
        news = pl.concat([news, synthetic.select(news.columns)], how="vertical_relaxed")
    news = news.join(summaries.select("news_id", "summary"), on="news_id", how="left")
    cache = EmbeddingCache(duckdb.database)
    fresh, wanted, per_field = [], [], []
    totals = {"encoded": 0, "reused": 0, "kept": 0, "seconds": 0.0}
    for field in config.fields:
        texts = build_item_texts(news, field)
        wanted.append(texts.select(pl.lit(field).alias("field"), "news_id", "text_hash"))
        todo = texts
        if stored is not None:
            same = stored.filter(pl.col("field") == field).select("news_id", "text_hash")
            todo = texts.join(same, on=["news_id", "text_hash"], how="anti")
        started = time.perf_counter()
        if todo.height:
            matrix, stats = embed_with_cache(todo, model, cache)
        else:
            matrix, stats = np.zeros((0, 0), np.float32), {"encoded": 0, "reused": 0}
        seconds = time.perf_counter() - started
        fresh.append(_vector_rows(todo, field, model.model_id, matrix))
        kept = texts.height - todo.height
        fallback = int(texts["used_fallback"].sum())
        per_field.append((field, texts.height, stats["encoded"], stats["reused"], kept, fallback))
        totals["encoded"] += stats["encoded"]
        totals["reused"] += stats["reused"] + kept
        totals["kept"] += kept
        totals["seconds"] += seconds
        context.log.info(
            f"{field}: {stats['encoded']} encoded, {stats['reused']} from the cache, "
            f"{kept} unchanged in {seconds:.1f} s"
        )
    fresh_rows = pa.concat_tables(fresh)
    wanted_rows = pl.concat(wanted).to_arrow()
    with duckdb.get_connection() as conn:
        deleted = _write_news_vectors(
            conn, fresh_rows, wanted_rows, model.model_id, update_in_place=stored is not None
        )
    table = (
        "| field | texts | encoded | from cache | unchanged | fallback to title |\n"
        "|---|---|---|---|---|---|\n"
    )
    table += "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in per_field)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": wanted_rows.num_rows,  # checked by the write
            "dagster/table_name": NEWS_TABLE,
            "texts_encoded": totals["encoded"],
            "texts_reused": totals["reused"],
            "rows_written": fresh_rows.num_rows,
            "rows_deleted": deleted,
            "rows_unchanged": totals["kept"],
            # Encoder throughput: texts actually encoded per second of this step's embedding
            # work (cache lookups included in the seconds, reused texts not in the count).
            "texts_per_second": round(totals["encoded"] / max(totals["seconds"], 1e-9), 1),
            "encode_seconds": round(totals["seconds"], 2),
            "dim": int(model.dim),
            "fields": dg.MetadataValue.md(table),
            **_encoder_metadata(model),
        }
    )


@dg.asset(
    key=wh.USER_PROFILE_EMBEDDINGS.key,
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
