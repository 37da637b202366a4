"""DuckDB storage for Polars outputs.

Two differences from the stock dagster-duckdb-polars handler:
- an empty frame still creates its table (the stock one skips it, so a quarantine with no bad
  rows or a day with no new items would leave readers without a table);
- an unpartitioned output replaces its table, schema included, so adding a column to an asset
  does not break the next run (the stock one inserts into the old table and fails).
Partitioned outputs keep the stock behaviour: the partition's rows are deleted, then inserted.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb_polars import DuckDBPolarsIOManager
from dagster_duckdb_polars.duckdb_polars_type_handler import DuckDBPolarsTypeHandler


class PolarsTableHandler(DuckDBPolarsTypeHandler):
    """Writes Polars frames to DuckDB, creating the table even when the frame is empty."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection
    ) -> None:
        partitioned = bool(table_slice.partition_dimensions)
        if partitioned and not obj.is_empty():
            super().handle_output(context, table_slice, obj, connection)
            return
        obj_arrow = obj.to_arrow()  # noqa: F841  (referenced by name in the SQL below)
        target = f'"{table_slice.schema}"."{table_slice.table}"'
        connection.execute(f'create schema if not exists "{table_slice.schema}"')
        verb = "create table if not exists" if partitioned else "create or replace table"
        connection.execute(f"{verb} {target} as select * from obj_arrow")
        context.add_output_metadata({"row_count": obj.height})


class DuckDBPolarsTablesIOManager(DuckDBPolarsIOManager):
    """DuckDB IO manager for Polars frames; schema = asset key prefix (e.g. `raw`)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]
