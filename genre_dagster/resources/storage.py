"""DuckDB storage for Polars outputs.

The stock dagster-duckdb-polars handler skips empty DataFrames and so never creates the table
of an output that happens to be empty (a quarantine with no bad rows, a day with no new items),
which breaks every reader of that table. Ours always creates the table from the frame's schema.
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
        if not obj.is_empty():
            super().handle_output(context, table_slice, obj, connection)
            return
        obj_arrow = obj.to_arrow()  # noqa: F841  (referenced by name in the SQL below)
        connection.execute(f'create schema if not exists "{table_slice.schema}"')
        connection.execute(
            f'create table if not exists "{table_slice.schema}"."{table_slice.table}" as '
            "select * from obj_arrow"
        )
        context.add_output_metadata({"row_count": 0})


class DuckDBPolarsTablesIOManager(DuckDBPolarsIOManager):
    """DuckDB IO manager for Polars frames; schema = asset key prefix (e.g. `raw`)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]
