"""MIND `news.tsv`: 8 tab-separated columns, one item per line.

A header as first line (a file written by pandas) is skipped and reported, CSV-quoted fields are
unquoted, and pandas' index column is dropped (see `ingest/lines.py`).

A file none of whose lines is 8 tab-separated UTF-8 columns (binary garbage, a gzip by mistake,
an HTML error page) is unreadable as a whole: all its lines are quarantined as `unreadable_file`,
a file-level reason the quarantine threshold leaves out, so one such file dropped next to good
ones does not stop the night. When no news file has any readable line it is an error.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from genre_dagster.ingest.lines import read_table_lines, truncate_raw
from genre_dagster.ingest.news import validate_news
from genre_dagster.ingest.result import (
    INVALID_UTF8,
    UNREADABLE_FILE,
    WRONG_COLUMN_COUNT,
    IngestResult,
)
from genre_dagster.ingest.sources import SourceFile
from genre_dagster.ingest.unattributable import raise_if_none_usable

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
UNREADABLE_NEWS = (
    "unreadable file: no line has 8 tab-separated UTF-8 columns (corrupt or wrong format?)"
)


def parse_news(files: list[SourceFile]) -> IngestResult:
    """Validate and parse MIND news files, in the given order (see `discover_mind_files`).

    A header line is skipped (`skipped_headers`, not a row), CSV-quoted fields are unquoted
    (they may hold tabs) and pandas' index column is dropped (`file_repairs` when the file has
    no header).
    Checks per line, first failure wins: unreadable_file (every line of a file without a single
    well-formed line, see the module docstring), invalid_utf8, wrong_column_count (must be 8),
    missing_value (empty id), empty_title, missing_category, duplicate_news_id. Ids repeated
    with identical content in another file (MIND's train/dev/test overlap) are merged into the
    first occurrence and counted in `rows_merged`; other repeats are quarantined, first
    occurrence (file order, then line number) wins. Empty abstracts stay `""`, empty entity
    fields become `"[]"`; an accepted row's entity field that is not a JSON list becomes `"[]"`
    too, listed in `repairs` (invalid_entity_json). Raises ValueError when every non-empty news
    file is unreadable.
    """
    lines, headers, file_repairs = read_table_lines(files, NEWS_COLUMNS)
    fields = pl.col("fields")
    frame = lines.with_columns(
        n_columns=fields.list.len(),
        **{
            name: fields.list.get(i, null_on_oob=True).fill_null("")
            for i, name in enumerate(NEWS_COLUMNS)
        },
        raw_line=truncate_raw(pl.col("line")),
    )
    well_formed = pl.col("utf8_ok") & (pl.col("n_columns") == len(NEWS_COLUMNS))
    frame = frame.with_columns(
        file_detail=pl.when(~well_formed.any().over("file_index")).then(pl.lit(UNREADABLE_NEWS))
    )
    unreadable = frame.filter(pl.col("file_detail").is_not_null())["source_file"].unique(
        maintain_order=True
    )
    raise_if_none_usable(
        dict.fromkeys(unreadable.to_list(), UNREADABLE_NEWS),
        frame["file_detail"].null_count() > 0,
        "no news file has a readable line, so there is nothing to ingest",
    )
    frame = frame.with_columns(
        pl.when(pl.col(c).str.strip_chars() == "").then(pl.lit("[]")).otherwise(pl.col(c)).alias(c)
        for c in ("title_entities", "abstract_entities")
    )
    format_checks = [
        (pl.col("file_detail").is_not_null(), UNREADABLE_FILE, pl.col("file_detail")),
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
    return replace(
        validate_news(frame, format_checks), skipped_headers=headers, file_repairs=file_repairs
    )
