"""The embedding tables: one vector per (item, text field) in `embeddings.news_embeddings`,
updated in place (only new or changed texts are encoded and written), and per user the mean
vector of their profile terms. No Dagster here; the assets read the inputs and report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from genre_dagster import warehouse as wh

NEWS_TABLE = wh.NEWS_EMBEDDINGS


def check_fields(fields: Sequence[str]) -> None:
    """Raise ValueError when a text field is listed more than once."""
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    if repeated:
        raise ValueError(f"news_embeddings: fields are listed more than once: {repeated}")


def read_news(conn: Any) -> pl.DataFrame:
    """The items' texts (news_id, title, abstract, category), by id."""
    return wh.query_frame(
        conn, f"select news_id, title, abstract, category from {wh.STG_NEWS} order by news_id"
    )


def stored_texts(conn: Any, model_id: str) -> pl.DataFrame | None:
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


def vector_rows(texts: pl.DataFrame, field: str, model_id: str, matrix: np.ndarray):
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


@dataclass
class NewsVectors:
    """The rows to write (`fresh`), the rows the table must hold (`wanted`), and the counts."""

    fresh: Any  # Arrow table
    wanted: Any  # Arrow table (field, news_id, text_hash)
    per_field: list[tuple] = field(default_factory=list)
    encoded: int = 0
    reused: int = 0
    kept: int = 0
    seconds: float = 0.0

    def counts(self, deleted: int) -> dict[str, Any]:
        """What the update did (with the rows it `deleted`), and the encoder's throughput."""
        return {
            "texts_encoded": self.encoded,
            "texts_reused": self.reused,
            "rows_written": self.fresh.num_rows,
            "rows_deleted": deleted,
            "rows_unchanged": self.kept,
            # Encoder throughput: texts actually encoded per second of this step's embedding
            # work (cache lookups included in the seconds, reused texts not in the count).
            "texts_per_second": round(self.encoded / max(self.seconds, 1e-9), 1),
            "encode_seconds": round(self.seconds, 2),
        }

    def fields_markdown(self) -> str:
        """Per field: texts, encoded, from the cache, unchanged, fallbacks (a Markdown table)."""
        table = (
            "| field | texts | encoded | from cache | unchanged | fallback to title |\n"
            "|---|---|---|---|---|---|\n"
        )
        return table + "\n".join(
            "| " + " | ".join(str(v) for v in row) + " |" for row in self.per_field
        )


def item_texts(news: pl.DataFrame, summaries: pl.DataFrame, synthetic: pl.DataFrame):
    """Real and synthetic items with their LLM summary (null where there is none)."""
    if synthetic.height:
        news = pl.concat([news, synthetic.select(news.columns)], how="vertical_relaxed")
    return news.join(summaries.select("news_id", "summary"), on="news_id", how="left")


def embed_news(
    news: pl.DataFrame,
    fields: Sequence[str],
    model: Any,
    cache: Any,
    stored: pl.DataFrame | None,
    log: Callable[[str], None] = lambda message: None,
) -> NewsVectors:
    """Vectors of the texts of `fields` that `stored` lacks (new or changed), through the
    embedding cache (`embed_with_cache`)."""
    import pyarrow as pa

    from genre_dagster.embedding import build_item_texts, embed_with_cache

    fresh, wanted, out = [], [], NewsVectors(None, None)
    for name in fields:
        texts = build_item_texts(news, name)
        wanted.append(texts.select(pl.lit(name).alias("field"), "news_id", "text_hash"))
        todo = texts
        if stored is not None:
            same = stored.filter(pl.col("field") == name).select("news_id", "text_hash")
            todo = texts.join(same, on=["news_id", "text_hash"], how="anti")
        started = time.perf_counter()
        if todo.height:
            matrix, stats = embed_with_cache(todo, model, cache)
        else:
            matrix, stats = np.zeros((0, 0), np.float32), {"encoded": 0, "reused": 0}
        seconds = time.perf_counter() - started
        fresh.append(vector_rows(todo, name, model.model_id, matrix))
        kept = texts.height - todo.height
        fallback = int(texts["used_fallback"].sum())
        out.per_field.append(
            (name, texts.height, stats["encoded"], stats["reused"], kept, fallback)
        )
        out.encoded += stats["encoded"]
        out.reused += stats["reused"] + kept
        out.kept += kept
        out.seconds += seconds
        log(
            f"{name}: {stats['encoded']} encoded, {stats['reused']} from the cache, "
            f"{kept} unchanged in {seconds:.1f} s"
        )
    out.fresh, out.wanted = pa.concat_tables(fresh), pl.concat(wanted).to_arrow()
    return out


def write_news_vectors(conn, fresh, wanted, model_id: str, update_in_place: bool) -> int:
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


def profile_vectors(
    profiles: pl.DataFrame, model: Any, cache: Any
) -> tuple[pl.DataFrame, int, dict]:
    """Per user, the mean vector of their profile topics and regions: (user_id, vector), the
    number of profile terms, and the cache statistics (encoded, reused)."""
    from genre_dagster.embedding import build_profile_texts, embed_with_cache

    texts = build_profile_texts(profiles)
    if texts.height == 0:
        empty = pl.DataFrame(schema={"user_id": pl.Utf8, "vector": pl.List(pl.Float32)})
        return empty, 0, {"encoded": 0, "reused": 0}
    matrix, stats = embed_with_cache(texts, model, cache)
    users, inverse = np.unique(texts["user_id"].to_numpy(), return_inverse=True)
    sums = np.zeros((len(users), matrix.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, matrix)
    means = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    out = pl.DataFrame({"user_id": users, "vector": pl.Series(means).cast(pl.List(pl.Float32))})
    return out, texts.height, stats


def item_field_texts(conn: Any, items: pl.DataFrame, fields: Sequence[str]) -> dict[str, Any]:
    """Per text field, the texts of the item table `items` (scoring.loading.load_item_table:
    real and synthetic items) as news_id, text, text_hash, used_fallback in its row order. The
    summary fields read the LLM summaries in `enrichment.news_summaries` (the title where an
    item has none)."""
    from genre_dagster.embedding.fields import _SUMMARY_FIELDS, build_item_texts

    check_fields(list(fields))
    if any(f in _SUMMARY_FIELDS for f in fields):
        summaries = pl.DataFrame(schema={"news_id": pl.Utf8, "summary": pl.Utf8})
        if wh.table_exists(conn, wh.NEWS_SUMMARIES):
            summaries = wh.query_frame(conn, f"select news_id, summary from {wh.NEWS_SUMMARIES}")
        items = items.join(summaries, on="news_id", how="left", maintain_order="left")
    return {name: build_item_texts(items, name) for name in fields}


def refresh_item_layer_states(
    get_connection: Callable[[], Any],
    fields: Sequence[str],
    model: Any,
    store_dtype: str = "bf16",
    batch_size: int = 64,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Fill the layer-state cache (`embeddings.layer_states`) with the states of every item
    text of `fields` (real and synthetic items) under `model` (layer_cache.LayerModel): only
    texts it lacks are computed. `get_connection` returns a context manager yielding a DuckDB
    connection (the `duckdb` resource's). Returns layer_cache.refresh_layer_cache's counts plus
    fields, items, model_id and dim."""
    from genre_dagster.embedding.layer_cache import LayerStateCache, refresh_layer_cache
    from genre_dagster.scoring.loading import load_item_table

    with get_connection() as conn:
        items = load_item_table(conn, include_synthetic=True)
        texts = item_field_texts(conn, items, fields)
    lower = model.lower(store_dtype=store_dtype, batch_size=batch_size)
    frame = pl.concat([t.select("text", "text_hash") for t in texts.values()])
    cache = LayerStateCache(get_connection, wh.LAYER_STATES)
    stats = refresh_layer_cache(frame, lower, cache, log=log)
    return {
        **stats,
        "fields": list(fields),
        "items": items.height,
        "model_id": lower.source.cache_id,
        "dim": lower.dim,
    }
