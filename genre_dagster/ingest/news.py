"""Validation shared by every item source (MIND news.tsv, generic items): checks, duplicates and
repairs.

Strict where it matters, tolerant where the data allows it: a row missing a required field (id,
title, category) is quarantined; a row whose optional entity field is not a JSON list is kept
with that field set to `"[]"` (what downstream reads for "no entities", see stg_news) and the
repair is listed in `IngestResult.repairs` with its file, line and reason.
"""

from __future__ import annotations

import json

import polars as pl

from genre_dagster.ingest.checks import Check, first_failure
from genre_dagster.ingest.result import (
    DUPLICATE_NEWS_ID,
    EMPTY_TITLE,
    INVALID_ENTITY_JSON,
    MISSING_CATEGORY,
    MISSING_VALUE,
    NEWS_QUARANTINE_SCHEMA,
    NEWS_REPAIRS_SCHEMA,
    NEWS_SCHEMA,
    IngestResult,
)

CONTENT_COLUMNS = (
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
ENTITY_COLUMNS = ("title_entities", "abstract_entities")


def _not_json_lists(values: pl.Series) -> pl.Series:
    """The distinct non-empty values that are not a JSON list (checked once per distinct value)."""
    bad = []
    for value in values.drop_nulls().unique().to_list():
        if value.strip() in ("", "[]"):
            continue
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            bad.append(value)
            continue
        if not isinstance(parsed, list):
            bad.append(value)
    return pl.Series(bad, dtype=pl.Utf8)


def _content_checks() -> list[Check]:
    return [
        (
            pl.col("news_id").str.strip_chars() == "",
            MISSING_VALUE,
            pl.lit("empty news id"),
        ),
        (pl.col("title").str.strip_chars() == "", EMPTY_TITLE, pl.lit("empty title")),
        (
            pl.col("category").str.strip_chars() == "",
            MISSING_CATEGORY,
            pl.lit("empty category"),
        ),
    ]


def _repair_entities(keepers: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accepted rows with every entity field that is not a JSON list set to `"[]"`, and one
    repairs row (`NEWS_REPAIRS_SCHEMA`) per field replaced, in file and line order."""
    repairs, replaced = [], []
    for column in ENTITY_COLUMNS:
        bad = pl.col(column).is_in(_not_json_lists(keepers[column]).implode())
        repairs.append(
            keepers.filter(bad).select(
                "file_index",
                "source_file",
                "line_number",
                "news_id",
                field=pl.lit(column),
                reason=pl.lit(INVALID_ENTITY_JSON),
                detail=pl.format(
                    f"{column} is not a JSON list, stored as []: {{}}",
                    pl.col(column).str.slice(0, 60),
                ),
                raw_line="raw_line",
            )
        )
        replaced.append(pl.when(bad).then(pl.lit("[]")).otherwise(pl.col(column)).alias(column))
    table = (
        pl.concat(repairs, how="vertical")
        .sort("file_index", "line_number", maintain_order=True)
        .select(list(NEWS_REPAIRS_SCHEMA))
    )
    return keepers.with_columns(replaced), table.cast(NEWS_REPAIRS_SCHEMA)


def validate_news(frame: pl.DataFrame, format_checks: list[Check]) -> IngestResult:
    """Turn parsed item rows into accepted news and quarantine.

    `frame` holds, in input order, the canonical content columns (empty strings where a field is
    absent, entity fields `"[]"` when empty), `news_id`, `source_file`, `file_index` (position
    of the file in the input order), `line_number` and `raw_line`. `format_checks` are the
    source's own checks, run first. Then come missing_value (empty id), empty_title,
    missing_category, and duplicates among the rows that passed: the first occurrence wins; a
    later row with identical content (as read) from another file is merged (`rows_merged`, as
    MIND's train/dev overlap), any other repeat is quarantined as duplicate_news_id. Last, the
    accepted rows' entity fields that are not JSON lists are repaired (invalid_entity_json, see
    the module docstring).
    """
    reason, detail = first_failure([*format_checks, *_content_checks()])
    frame = frame.with_columns(reason=reason, detail=detail)
    failed = frame.filter(pl.col("reason").is_not_null())
    valid = frame.filter(pl.col("reason").is_null()).with_columns(
        is_first=pl.col("news_id").is_first_distinct()
    )
    keepers = valid.filter("is_first")
    repeats = valid.filter(~pl.col("is_first")).join(
        keepers.select("news_id", *CONTENT_COLUMNS, "source_file", "line_number"),
        on="news_id",
        how="left",
        suffix="_first",
        maintain_order="left",
    )
    same_content = pl.all_horizontal([pl.col(c) == pl.col(f"{c}_first") for c in CONTENT_COLUMNS])
    other_file = pl.col("source_file") != pl.col("source_file_first")
    merged = repeats.filter(same_content & other_file)
    duplicates = repeats.filter(~(same_content & other_file)).with_columns(
        reason=pl.lit(DUPLICATE_NEWS_ID),
        detail=pl.format(
            "news id {} already read at {} line {}{}",
            "news_id",
            "source_file_first",
            "line_number_first",
            pl.when(other_file)
            .then(pl.lit(" with different content"))
            .otherwise(pl.lit(" (repeated within the file)")),
        ),
    )
    quarantine = (
        pl.concat([failed, duplicates.select(failed.columns)], how="vertical")
        .sort("file_index", "line_number")
        .select(list(NEWS_QUARANTINE_SCHEMA))
    )
    keepers, repairs = _repair_entities(keepers)
    return IngestResult(
        accepted=keepers.select(list(NEWS_SCHEMA)).cast(NEWS_SCHEMA),
        quarantine=quarantine.cast(NEWS_QUARANTINE_SCHEMA),
        rows_read=frame.height,
        rows_merged=merged.height,
        repairs=repairs,
    )
