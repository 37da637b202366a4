"""The DuckDB warehouse: its table names, connections, and the reads and writes stages share.

Every stage reaches the DuckDB file through here (or through the `duckdb` resource and the IO
manager, which open their connections the same way): `connect` opens a connection under the
project's writer lock (`genre_dagster.duckdb_lock`), `query_frame` reads rows as a Polars frame
via Arrow, `registered` lends an Arrow/Polars frame to SQL for one block.

Table names are written once, below. A `Table` is its "schema.name" string (use it in SQL as
is) and knows its asset key (`key`): dbt models live in schema `main` and are keyed by name, the
Python assets' tables by schema (= asset group) and name (the IO manager's mapping).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl

from genre_dagster.duckdb_lock import connect, exclusive

__all__ = ["Table", "connect", "exclusive", "query_frame", "read_table", "registered"]


class Table(str):
    """A warehouse table as "schema.name"."""

    @property
    def schema(self) -> str:
        return self.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.split(".", 1)[1]

    @property
    def path(self) -> list[str]:
        """Its asset key path: [name] for a dbt model (schema main), else [schema, name]."""
        return [self.name] if self.schema == "main" else [self.schema, self.name]

    @property
    def key(self):
        """Its Dagster asset key (Dagster is imported here only, for the asset modules)."""
        import dagster as dg

        return dg.AssetKey(self.path)


# Ingestion (Python assets, schema raw)
RAW_NEWS = Table("raw.news")
RAW_BEHAVIORS = Table("raw.behaviors")
# Features (dbt models, schema main)
STG_NEWS = Table("main.stg_news")
STG_BEHAVIORS = Table("main.stg_behaviors")
IMPRESSIONS = Table("main.impressions")
IMPRESSION_SPLITS = Table("main.impression_splits")
ITEM_DAILY_STATS = Table("main.item_daily_stats")
USER_HISTORIES = Table("main.user_histories")
USER_SEGMENTS = Table("main.user_segments")
QUARANTINE = Table("main.quarantine")
# GENRE enrichment and embeddings
USER_PROFILES = Table("enrichment.user_profiles")
NEWS_SUMMARIES = Table("enrichment.news_summaries")
SYNTHETIC_ITEMS = Table("enrichment.synthetic_items")
NEWS_EMBEDDINGS = Table("embeddings.news_embeddings")
USER_PROFILE_EMBEDDINGS = Table("embeddings.user_profile_embeddings")
# token states after layer k of a language model, per text hash (embedding/layer_cache.py)
LAYER_STATES = Table("embeddings.layer_states")
# Evaluation and serving
LEADERBOARD = Table("evaluation.leaderboard")
LEADERBOARD_HISTORY = Table("evaluation.leaderboard_history")
CHALLENGER = Table("serving.challenger")
SERVING_SCORER = Table("serving.serving_scorer")


def query_frame(conn: Any, sql: str, params: list | None = None) -> pl.DataFrame:
    """Rows of `sql` (with optional parameters) as a Polars frame, via Arrow."""
    return pl.from_arrow(conn.execute(sql, params or []).to_arrow_table())


def table_exists(conn: Any, table: str) -> bool:
    """Whether `table` ("schema.name") exists in the connected database."""
    schema, name = table.split(".", 1)
    (n,) = conn.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    return n > 0


def read_table(conn: Any, table: str) -> pl.DataFrame | None:
    """Every row of `table` ("schema.name"), or None when it does not exist yet."""
    if not table_exists(conn, table):
        return None
    schema, name = table.split(".", 1)
    return query_frame(conn, f'select * from {schema}."{name}"')


@contextmanager
def registered(conn: Any, name: str, data: Any) -> Iterator[None]:
    """Lend `data` (an Arrow table or Polars frame) to SQL as the view `name` for the block."""
    conn.register(name, data)
    try:
        yield
    finally:
        conn.unregister(name)
