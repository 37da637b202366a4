"""Generic items for any domain (books, products, ...): one Parquet or CSV file, mapped columns.

Canonical item columns: `item_id`, `title`, `category` (required), `text` (becomes `abstract`),
`subcategory`, `url` (optional). `column_map` maps canonical names to the file's own names, e.g.
`{"item_id": "book_id", "text": "description"}`. Rows land in the same `raw.news` schema as MIND.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from genre_dagster.ingest.lines import truncate_raw
from genre_dagster.ingest.news import validate_news
from genre_dagster.ingest.result import IngestResult

GENERIC_SPLIT = "generic"
ITEM_REQUIRED = ("item_id", "title", "category")
ITEM_OPTIONAL = ("text", "subcategory", "url")


def read_table(path: Path) -> pl.DataFrame:
    """A Parquet (`.parquet`, `.pq`) or CSV (`.csv`, read as text, header row) file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if suffix == ".csv":
        # All columns as text: ids like "007" keep their zeros, timestamps are parsed by us.
        return pl.read_csv(path, infer_schema=False)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .parquet, .pq or .csv")


def select_columns(
    frame: pl.DataFrame,
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    column_map: dict[str, str] | None,
) -> pl.DataFrame:
    """The present canonical columns, renamed from the file's names given by `column_map`.

    Raises ValueError for a column_map key that is not a canonical column (a typo would
    otherwise be ignored) and for missing required columns, listing the file's columns.
    """
    column_map = dict(column_map or {})
    known = (*required, *optional)
    unknown = sorted(set(column_map) - set(known))
    if unknown:
        raise ValueError(
            f"column_map for {path} has unknown canonical name(s) {unknown}; "
            f"canonical columns are {list(known)}"
        )
    source = {name: column_map.get(name, name) for name in known}
    missing = [
        name if source[name] == name else f"{name} (mapped to {source[name]!r})"
        for name in required
        if source[name] not in frame.columns
    ]
    if missing:
        raise ValueError(
            f"{path} is missing required column(s): {', '.join(missing)}. The file has columns "
            f"{frame.columns}. Map other names with column_map, e.g. {{'item_id': 'book_id'}}."
        )
    present = [name for name in known if source[name] in frame.columns]
    return frame.select(pl.col(source[name]).alias(name) for name in present)


def as_text(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A column as text, or a null text column when the file does not have it."""
    if column in frame.columns:
        return pl.col(column).cast(pl.Utf8)
    return pl.lit(None, pl.Utf8)


def row_json(frame: pl.DataFrame, columns: Sequence[str], replace: dict[str, pl.Expr]) -> pl.Expr:
    """The row's canonical fields as a JSON object (the quarantine's `raw_line` for tables)."""
    fields = [replace.get(c, as_text(frame, c)).alias(c) for c in columns if c in frame.columns]
    return truncate_raw(pl.struct(fields).struct.json_encode())


def parse_generic_items(path: Path, column_map: dict[str, str] | None = None) -> IngestResult:
    """Validate and map a generic items file to the canonical news schema.

    `line_number` is the 1-based data row (a CSV's header is not counted). Entity columns are
    `"[]"`; missing optional columns give `""`. Checks: missing_value (empty item id),
    empty_title, missing_category, duplicate_news_id (first row wins; every repeat within the
    file is quarantined). `raw_line` is the row's canonical fields as JSON.
    """
    path = Path(path)
    frame = select_columns(read_table(path), path, ITEM_REQUIRED, ITEM_OPTIONAL, column_map)
    text = {c: as_text(frame, c).fill_null("") for c in (*ITEM_REQUIRED, *ITEM_OPTIONAL)}
    items = frame.select(
        news_id=text["item_id"],
        category=text["category"],
        subcategory=text["subcategory"],
        title=text["title"],
        abstract=text["text"],
        url=text["url"],
        title_entities=pl.lit("[]"),
        abstract_entities=pl.lit("[]"),
        source_file=pl.lit(str(path)),
        line_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        file_index=pl.lit(0, pl.Int64),
        raw_line=row_json(frame, frame.columns, {}),
    )
    return validate_news(items, format_checks=[])
