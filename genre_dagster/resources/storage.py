"""DuckDB storage for Polars outputs.

Two differences from the stock dagster-duckdb-polars handler:
- an empty frame still creates its table (the stock one skips it, so a quarantine with no bad
  rows or a day with no new items would leave readers without a table);
- an unpartitioned output replaces its table, schema included, so adding a column to an asset
  does not break the next run (the stock one inserts into the old table and fails).
Partitioned outputs keep the stock behaviour: the partition's rows are deleted, then inserted.

Every connection (the IO manager's and the `duckdb` resource's) is opened by
`genre_dagster.warehouse.connect`, under the project's writer lock, so concurrent runs and
multiprocess steps take turns on the file instead of failing with DuckDB's lock error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import polars as pl
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_polars import DuckDBPolarsIOManager
from dagster_duckdb_polars.duckdb_polars_type_handler import DuckDBPolarsTypeHandler

from genre_dagster import warehouse


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


def _step_name(context) -> str:
    key = getattr(context, "asset_key", None) if getattr(context, "has_asset_key", False) else None
    return f"io manager ({key.to_user_string()})" if key else "io manager"


class LockedDuckDbClient(DuckDbClient):
    """The stock client, with connections opened under the writer lock."""

    @staticmethod
    @contextmanager
    def connect(context, _) -> Iterator:
        config = context.resource_config
        with warehouse.connect(
            config["database"], _step_name(context), config.get("connection_config") or {}
        ) as conn:
            yield conn


class DuckDBPolarsTablesIOManager(DuckDBPolarsIOManager):
    """DuckDB IO manager for Polars frames; schema = asset key prefix (e.g. `raw`)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=LockedDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )


class LockedDuckDBResource(DuckDBResource):
    """`DuckDBResource` whose connections are opened under the writer lock."""

    @contextmanager
    def get_connection(self) -> Iterator:
        with warehouse.connect(self.database, "duckdb resource", self.connection_config) as conn:
            yield conn
