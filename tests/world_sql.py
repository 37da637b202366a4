"""Reading the warehouse of the session's news world (the `news_world` fixture in conftest)."""

from __future__ import annotations

import duckdb


def query(world, sql: str):
    """The rows of `sql` on the world's DuckDB file, opened read-only."""
    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        return conn.sql(sql).fetchall()
