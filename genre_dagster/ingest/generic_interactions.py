"""Generic interactions (one row per user x item event) grouped into canonical impressions.

Canonical columns: `user_id`, `item_id`, `timestamp` (required; ISO text such as
`2024-01-05T10:00:00`, `2024-01-05 10:00`, `2024-01-05`, optionally with `Z`/`+02:00`, or a
datetime column; aware times are converted to UTC), `label` (optional: 0/1 or true/false,
default 1 = interacted) and `impression_id` (optional). `column_map` maps them to the file's names.

Several files (daily drops) are read as one table: line numbers, file names and days stay per
file. A file that cannot be read or mapped, or none of whose rows has a parsable timestamp, is
unattributable (see `ingest/unattributable.py`): it adds no day and each parsed day quarantines
it (every row, or one row with line_number 0 when it cannot be read).

Rows form impressions by `impression_id` (with the user: two users never share one impression)
or, without that column, by (user, timestamp). An impression's time is the earliest timestamp of
its rows, its candidates are its rows in file order, its history is the user's positively
labelled items strictly before that time (oldest first, the 100 most recent). `source_split` is
`generic`; `mind_impression_id` is the dense rank of (time, raw user id, impression key) from 1,
so it does not depend on the day asked for nor on the pseudonym key.

Counts: `rows_read` = rows attributed to the day (plus unattributable rows),
`rows_quarantined` = rejected rows,
`rows_accepted` = impressions, `rows_merged` = valid rows that joined an impression started by
another row, so that rows_read = accepted + quarantined + merged still holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

from genre_dagster.ingest.checks import Check, first_failure, pseudonym_table
from genre_dagster.ingest.generic import (
    GENERIC_SPLIT,
    Paths,
    UnusableFileError,
    as_paths,
    as_text,
    read_mapped,
    row_json,
)
from genre_dagster.ingest.result import (
    BAD_LABEL,
    BEHAVIORS_QUARANTINE_SCHEMA,
    BEHAVIORS_SCHEMA,
    MISSING_VALUE,
    UNATTRIBUTABLE_FILE,
    UNKNOWN_NEWS_IN_IMPRESSIONS,
    UNPARSABLE_TIME,
    IngestResult,
)
from genre_dagster.ingest.unattributable import (
    EMPTY_FILE,
    UNATTRIBUTABLE,
    DayScan,
    days_or_raise,
    error_detail,
    file_scan,
    no_parsable_time,
    require_attributable,
)

INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
INTERACTION_OPTIONAL = ("label", "impression_id")
HISTORY_MAX = 100
_NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_AWARE_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
NO_PARSABLE_TIMESTAMP = no_parsable_time("'2024-01-05T10:00:00'")
# Columns `_file_rows` computes for every file (besides the file's own canonical columns).
_ROW_SCHEMA: dict[str, pl.DataType] = {
    "file_index": pl.Int64(),
    "source_file": pl.Utf8(),
    "line_number": pl.Int64(),
    "raw_user_id": pl.Utf8(),
    "item": pl.Utf8(),
    "time": pl.Datetime("us"),
    "label_value": pl.Int8(),
    "group_token": pl.Utf8(),
    "missing": pl.List(pl.Utf8()),
    "timestamp_text": pl.Utf8(),
    "label_text": pl.Utf8(),
    "file_detail": pl.Utf8(),
}


def _timestamps(frame: pl.DataFrame, path: Path) -> pl.Expr:
    """The `timestamp` column as naive Datetime("us") (UTC for aware inputs), null if unparsable."""
    dtype = frame.schema["timestamp"]
    column = pl.col("timestamp")
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return column.cast(pl.Datetime("us"))
    if dtype == pl.Date:
        return column.cast(pl.Datetime("us"))
    if dtype not in (pl.Utf8, pl.Categorical):
        raise UnusableFileError(
            f"{path}: column 'timestamp' has type {dtype}; expected ISO datetime text or a "
            "datetime column"
        )
    text = (
        column.cast(pl.Utf8)
        .str.strip_chars()
        .str.replace(r"^(\d{4}-\d{2}-\d{2})T", "$1 ")
        .str.replace(r"Z$", "+00:00")
    )
    naive = [text.str.strptime(pl.Datetime("us"), f, strict=False) for f in _NAIVE_FORMATS]
    aware = [
        text.str.strptime(pl.Datetime("us", "UTC"), f, strict=False).dt.replace_time_zone(None)
        for f in _AWARE_FORMATS
    ]
    return pl.coalesce([*naive, *aware])


def _labels(frame: pl.DataFrame) -> pl.Expr:
    """Labels as Int8 0/1, null when the value is not 0 or 1 (1 when the file has no labels)."""
    if "label" not in frame.columns:
        return pl.lit(1, pl.Int8)
    if frame.schema["label"].is_numeric():
        value = pl.col("label")
        return pl.when(value == 0).then(0).when(value == 1).then(1).cast(pl.Int8)
    text = pl.col("label").cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    as_number = pl.when(text.is_in(["0", "false"])).then(0).when(text.is_in(["1", "true"])).then(1)
    return as_number.cast(pl.Int8)


def _file_rows(path: Path, index: int, column_map: dict[str, str] | None) -> pl.DataFrame:
    """One file's rows with parsed fields and canonical columns as text (for `raw_line`), or a
    single row (line_number 0) carrying `file_detail` when the file cannot be used at all."""
    table = read_mapped(path, INTERACTION_REQUIRED, INTERACTION_OPTIONAL, column_map)
    if isinstance(table, pl.DataFrame):
        try:
            time = _timestamps(table, path)
        except UnusableFileError as error:
            table = error
    if isinstance(table, Exception) or table.height == 0:
        detail = (
            error_detail(f"{UNATTRIBUTABLE}: cannot be used", table)
            if isinstance(table, Exception)
            else EMPTY_FILE
        )
        values = {"file_index": index, "source_file": str(path), "line_number": 0}
        values["file_detail"] = detail
        return pl.DataFrame([{c: values.get(c) for c in _ROW_SCHEMA}], schema=_ROW_SCHEMA)
    has_impression_id = "impression_id" in table.columns
    blank = {c: as_text(table, c).str.strip_chars().fill_null("") == "" for c in table.columns}
    # Rows group by impression id when the file has one, else by timestamp (with the user).
    group_token = (
        pl.lit("id:") + as_text(table, "impression_id")
        if has_impression_id
        else pl.lit("at:") + time.cast(pl.Utf8)
    )
    return table.select(
        *(as_text(table, c).alias(c) for c in table.columns),
        file_index=pl.lit(index, pl.Int64),
        source_file=pl.lit(str(path)),
        line_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        raw_user_id=as_text(table, "user_id"),
        item=as_text(table, "item_id"),
        time=time,
        label_value=_labels(table),
        group_token=group_token,
        missing=pl.concat_list(
            pl.when(blank[c]).then(pl.lit(c))
            for c in (*INTERACTION_REQUIRED, "impression_id")
            if c in blank
        ).list.drop_nulls(),
        timestamp_text=as_text(table, "timestamp").str.slice(0, 60),
        label_text=as_text(table, "label").str.slice(0, 60),
        file_detail=pl.lit(None, pl.Utf8),
    )


def _load(paths: Paths, column_map: dict[str, str] | None) -> pl.DataFrame:
    """Every row of every file with parsed fields, structural validity, impression grouping,
    its `day` and `file_detail` (why its file is unattributable; then `day` is null).

    Independent of the known items, so day attribution and impression ids are the same for
    `generic_days` and every `parse_generic_interactions` call.
    """
    paths = as_paths(paths)
    if not paths:
        raise ValueError("no interactions file given")
    frame = pl.concat(
        [_file_rows(path, i, column_map) for i, path in enumerate(paths)], how="diagonal_relaxed"
    )
    dated_file = pl.col("time").is_not_null().any().over("file_index")
    frame = frame.with_columns(
        file_detail=pl.coalesce(
            "file_detail", pl.when(~dated_file).then(pl.lit(NO_PARSABLE_TIMESTAMP))
        ),
        structural=(
            (pl.col("missing").list.len() == 0)
            & pl.col("time").is_not_null()
            & pl.col("label_value").is_not_null()
        ).fill_null(False),
    )
    group_by = ["raw_user_id", "group_token"]
    impressions = (
        frame.filter("structural")
        .group_by(group_by)
        .agg(impression_time=pl.col("time").min())
        .sort("impression_time", *group_by)
        .with_row_index("mind_impression_id", offset=1)
        .with_columns(pl.col("mind_impression_id").cast(pl.Int64))
    )
    frame = frame.join(impressions, on=group_by, how="left", maintain_order="left")
    own_day = pl.col("time").dt.date().forward_fill().backward_fill().over("file_index")
    return frame.with_columns(
        day=pl.when("structural").then(pl.col("impression_time").dt.date()).otherwise(own_day)
    )


def scan_generic_days(paths: Paths, column_map: dict[str, str] | None = None) -> DayScan:
    """Days of the interactions files with their row counts, and the unattributable files (file
    -> why). Never raises for file content."""
    return file_scan(_load(paths, column_map))


def generic_days(paths: Paths, column_map: dict[str, str] | None = None) -> dict[date, int]:
    """Days present in generic interactions files, with the number of rows attributed to each.

    A valid row belongs to the day of its impression's time; a row without a usable timestamp to
    the day of the nearest preceding dated row of its file (the next one when none precedes).
    The counts equal `rows_read` of `parse_generic_interactions(..., day=d)` minus the rows of
    unattributable files, which add no day (each is logged as a warning). Raises ValueError
    when no file can be attributed at all.
    """
    return days_or_raise(scan_generic_days(paths, column_map), "interactions")


def generic_impression_days(paths: Paths, column_map: dict[str, str] | None = None) -> pl.DataFrame:
    """Impressions per day of the interactions files, in `IMPRESSION_DAYS_SCHEMA` (source folder
    `generic`, every impression labelled): what the split preflight reads before anything is
    ingested. Impressions are grouped and dated as ingestion groups them; rows without a user,
    item, time or valid label form none."""
    from genre_dagster.ingest.mind_behaviors import IMPRESSION_DAYS_SCHEMA

    frame = _load(paths, column_map)
    return (
        frame.filter(pl.col("structural") & pl.col("file_detail").is_null())
        .group_by("day")
        .agg(impressions=pl.col("mind_impression_id").n_unique())
        .with_columns(source_split=pl.lit(GENERIC_SPLIT), labelled=pl.lit(True))
        .sort("day")
        .cast(IMPRESSION_DAYS_SCHEMA)
        .select(list(IMPRESSION_DAYS_SCHEMA))
    )


def _checks() -> list[Check]:
    return [
        (pl.col("file_detail").is_not_null(), UNATTRIBUTABLE_FILE, pl.col("file_detail")),
        (
            pl.col("missing").list.len() > 0,
            MISSING_VALUE,
            pl.format("missing {}", pl.col("missing").list.join(", ")),
        ),
        (
            pl.col("time").is_null(),
            UNPARSABLE_TIME,
            pl.format("timestamp '{}' is not an ISO datetime", pl.col("timestamp_text")),
        ),
        (
            pl.col("label_value").is_null(),
            BAD_LABEL,
            pl.format("label '{}' is not 0 or 1", pl.col("label_text")),
        ),
        (
            pl.col("unknown_item"),
            UNKNOWN_NEWS_IN_IMPRESSIONS,
            pl.format("item {} is not in the items table", pl.col("item").str.slice(0, 60)),
        ),
    ]


def _histories(valid: pl.DataFrame, impressions: pl.DataFrame) -> pl.DataFrame:
    """Add `history`: the user's positive items strictly before the impression time."""
    positives = (
        valid.filter(pl.col("label_value") == 1)
        .select("raw_user_id", "time", "file_index", "line_number", "item")
        .sort("raw_user_id", "time", "file_index", "line_number")
        .with_columns(clicks_so_far=pl.int_range(1, pl.len() + 1).over("raw_user_id"))
    )
    per_user = positives.group_by("raw_user_id", maintain_order=True).agg(clicks=pl.col("item"))
    counted = impressions.sort("impression_time").join_asof(
        positives.select("raw_user_id", "time", "clicks_so_far").sort("time"),
        left_on="impression_time",
        right_on="time",
        by="raw_user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    n = pl.col("clicks_so_far").fill_null(0)
    return counted.join(per_user, on="raw_user_id", how="left").with_columns(
        history=pl.col("clicks")
        .fill_null(pl.lit([], pl.List(pl.Utf8)))
        .list.slice(pl.max_horizontal(n - HISTORY_MAX, 0), pl.min_horizontal(n, HISTORY_MAX))
    )


def parse_generic_interactions(
    paths: Paths,
    known_item_ids: pl.Series,
    pseudonymize: Callable[[pl.Series], pl.Series],
    column_map: dict[str, str] | None = None,
    day: date | None = None,
) -> IngestResult:
    """Validate generic interactions (one file or several) and group them into canonical
    impressions of `day` (every day when None).

    Per-row checks, first failure wins: unattributable_file (every row of a file without any
    parsable timestamp, or one row with line_number 0 and an empty `raw_line` for a file that
    cannot be read or mapped; their `day` is `day`, null when `day` is None), missing_value
    (empty user, item, timestamp or, when the column exists, impression id), unparsable_time,
    bad_label (not 0/1/true/false), unknown_news_in_impressions (item not in
    `known_item_ids`). An impression keeps its valid rows. Histories use every day of every
    file. See the module docstring for grouping and counts. Raises ValueError when no file can
    be attributed to a day.
    """
    frame = _load(paths, column_map)
    require_attributable(file_scan(frame), "interactions")
    known = known_item_ids.cast(pl.Utf8).unique().implode()
    frame = frame.with_columns(unknown_item=~pl.col("item").is_in(known))
    reason, detail = first_failure(_checks())
    frame = frame.with_columns(reason=reason, detail=detail)
    valid = frame.filter(pl.col("reason").is_null())
    impressions = valid.group_by("mind_impression_id", maintain_order=True).agg(
        pl.col("raw_user_id").first(),
        pl.col("impression_time").first(),
        pl.col("day").first(),
        candidate_ids=pl.col("item"),
        candidate_labels=pl.col("label_value"),
        # Rows are in file order, so the first row is the earliest file's lowest line.
        source_file=pl.col("source_file").first(),
        line_number=pl.col("line_number").first(),
    )
    impressions = _histories(valid, impressions).sort("mind_impression_id")
    rows = frame
    if day is not None:
        unattributable = pl.col("file_detail").is_not_null()
        impressions = impressions.filter(pl.col("day") == day)
        rows = frame.filter((pl.col("day") == day) | unattributable).with_columns(
            day=pl.when(unattributable).then(pl.lit(day)).otherwise("day")
        )
        valid = valid.filter(pl.col("day") == day)
    quarantined = rows.filter(pl.col("reason").is_not_null())
    pseudonyms = pseudonym_table(
        pl.concat([impressions["raw_user_id"], quarantined["raw_user_id"]]), pseudonymize
    )
    impressions = impressions.join(pseudonyms, on="raw_user_id", how="left", maintain_order="left")
    quarantined = quarantined.join(pseudonyms, on="raw_user_id", how="left", maintain_order="left")

    accepted = impressions.select(
        impression_id=pl.format("{}-{}", pl.lit(GENERIC_SPLIT), "mind_impression_id"),
        mind_impression_id="mind_impression_id",
        source_split=pl.lit(GENERIC_SPLIT),
        user_id="user_pseudonym",
        time="impression_time",
        day="day",
        history="history",
        candidate_ids="candidate_ids",
        candidate_labels="candidate_labels",
        source_file="source_file",
        line_number="line_number",
    )
    columns = [c for c in (*INTERACTION_REQUIRED, *INTERACTION_OPTIONAL) if c in frame.columns]
    raw_line = row_json(quarantined, columns, {"user_id": pl.col("user_pseudonym")})
    quarantine = quarantined.select(
        "source_file",
        "line_number",
        "reason",
        "detail",
        # A file that could not be read has no row to echo.
        raw_line=pl.when(pl.col("line_number") == 0).then(pl.lit("")).otherwise(raw_line),
        day="day",
    )
    return IngestResult(
        accepted=accepted.cast(BEHAVIORS_SCHEMA),
        quarantine=quarantine.cast(BEHAVIORS_QUARANTINE_SCHEMA),
        rows_read=rows.height,
        rows_merged=valid.height - impressions.height,
    )
