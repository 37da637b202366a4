"""MIND `news.tsv`: 8 tab-separated columns, no header, one item per line."""

from __future__ import annotations

import polars as pl

from genre_dagster.ingest.lines import read_lines, truncate_raw
from genre_dagster.ingest.news import validate_news
from genre_dagster.ingest.result import INVALID_UTF8, WRONG_COLUMN_COUNT, IngestResult
from genre_dagster.ingest.sources import SourceFile

NEWS_COLUMNS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)


def parse_news(files: list[SourceFile]) -> IngestResult:
    """Validate and parse MIND news files, in the given order (see `discover_mind_files`).

    Checks per line, first failure wins: invalid_utf8, wrong_column_count (must be 8),
    missing_value (empty id), empty_title, missing_category, invalid_entity_json (a non-empty
    entity field that is not a JSON list), duplicate_news_id. Ids repeated with identical
    content in another file (MIND's train/dev/test overlap) are merged into the first occurrence
    and counted in `rows_merged`; other repeats are quarantined, first occurrence (file order,
    then line number) wins. Empty abstracts stay `""`, empty entity fields become `"[]"`.
    """
    lines = read_lines(files)
    fields = pl.col("fields")
    frame = lines.with_columns(fields=pl.col("line").str.split("\t")).with_columns(
        n_columns=fields.list.len(),
        **{
            name: fields.list.get(i, null_on_oob=True).fill_null("")
            for i, name in enumerate(NEWS_COLUMNS)
        },
        raw_line=truncate_raw(pl.col("line")),
    )
    frame = frame.with_columns(
        pl.when(pl.col(c).str.strip_chars() == "").then(pl.lit("[]")).otherwise(pl.col(c)).alias(c)
        for c in ("title_entities", "abstract_entities")
    )
    format_checks = [
        (
            ~pl.col("utf8_ok"),
            INVALID_UTF8,
            pl.lit("line is not valid UTF-8 (undecodable bytes shown as U+FFFD)"),
        ),
        (
            pl.col("n_columns") != len(NEWS_COLUMNS),
            WRONG_COLUMN_COUNT,
            pl.format("expected 8 tab-separated columns, found {}", "n_columns"),
        ),
    ]
    return validate_news(frame, format_checks)
