"""MIND `behaviors.tsv`: day discovery, validation and parsing into the canonical impressions.

Each line is `impression_id, user_id, time, history, impressions` (tab-separated). A header as
first line (a file written by pandas) is skipped and reported, CSV-quoted fields are unquoted
and pandas' index column is dropped (see `ingest/lines.py`).
The work is vectorized in Polars (the whole file is one column of lines) because a per-day run
still scans whole files: MIND-large has ~2.2M lines.

Day attribution: a line's day is the date of its time. A line whose time cannot be parsed takes
the day of the nearest preceding dated line of the same file (the next one when none precedes),
so every line belongs to exactly one daily partition and per-day counts add up. A file with no
parsable time at all (garbage, a gzip by mistake, an empty file) is unattributable: it adds no
day, and every parse of a day quarantines all its lines as `unattributable_file` (see
`ingest/unattributable.py`). Only when no file at all has a parsable time is it a ValueError.

Official MIND `test` split: its impression tokens carry no label (`N123` instead of `N123-1`).
Such lines are accepted in the `test` split only, with `candidate_labels` holding one null per
candidate; the rows flow downstream like any other and serve prediction, never training or
metrics. A line mixing labelled and unlabelled tokens is quarantined (`bad_impression_token`), as
is an unlabelled line in any other split.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

from genre_dagster.ingest.checks import Check, first_failure, pseudonym_table
from genre_dagster.ingest.lines import read_table_lines, truncate_raw
from genre_dagster.ingest.result import (
    BAD_IMPRESSION_ID,
    BAD_IMPRESSION_TOKEN,
    BEHAVIORS_QUARANTINE_SCHEMA,
    BEHAVIORS_SCHEMA,
    DUPLICATE_IMPRESSION_ID,
    EMPTY_IMPRESSIONS,
    INVALID_UTF8,
    MISSING_VALUE,
    UNATTRIBUTABLE_FILE,
    UNKNOWN_NEWS_IN_HISTORY,
    UNKNOWN_NEWS_IN_IMPRESSIONS,
    UNPARSABLE_TIME,
    WRONG_COLUMN_COUNT,
    IngestResult,
)
from genre_dagster.ingest.sources import SourceFile
from genre_dagster.ingest.unattributable import (
    EMPTY_FILE,
    DayScan,
    days_or_raise,
    file_scan,
    no_parsable_time,
    require_attributable,
)

MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
NO_PARSABLE_TIME = no_parsable_time("'11/11/2019 9:05:58 AM'")
BEHAVIORS_COLUMNS = 5
BEHAVIORS_COLUMN_NAMES = ("impression_id", "user_id", "time", "history", "impressions")
UNLABELLED_SPLIT = "test"
# Token syntax (`N123-1`, or `N123` in the test split), checked with one whole-line pattern:
# much faster than per token. Given that pattern, counting dashes tells labelled from not.
_ANY = r"[^\s-]+(?:-[01])?"
_ANY_LINE = rf"^{_ANY}(?: {_ANY})*$"
_UNKNOWN_SAMPLE = 3
_EMPTY_LIST = pl.lit([], pl.List(pl.Utf8))


def _with_empty_files(lines: pl.DataFrame, files: list[SourceFile]) -> pl.DataFrame:
    """Add one placeholder line (line_number 0, empty text) per file without any line (a header
    alone counts as none), so an empty file is reported like any other unattributable file
    instead of vanishing."""
    present = set(lines["file_index"].unique().to_list())
    empty = [(i, f) for i, f in enumerate(files) if i not in present]
    if not empty:
        return lines
    placeholders = pl.DataFrame(
        {
            "file_index": [i for i, _ in empty],
            "source_split": [f.split for _, f in empty],
            "source_file": [str(f.path) for _, f in empty],
            "line_number": [0] * len(empty),
            "line": [""] * len(empty),
            "utf8_ok": [True] * len(empty),
            "fields": [[""]] * len(empty),
        },
        schema=lines.schema,
    )
    return pl.concat([lines, placeholders]).sort("file_index", "line_number", maintain_order=True)


def _dated_lines(files: list[SourceFile]) -> tuple[pl.DataFrame, dict[str, str], dict[str, str]]:
    """Lines split into fields, with parsed `time`, attributed `day` and `file_detail` (why the
    line's file is unattributable; null, with a non-null `day`, in usable files), the skipped
    header of each file that had one and the files whose pandas index column was dropped (see
    `read_table_lines`)."""
    lines, headers, repairs = read_table_lines(files, BEHAVIORS_COLUMN_NAMES)
    lines = _with_empty_files(lines, files)
    fields = pl.col("fields")
    frame = (
        lines.with_columns(
            n_columns=fields.list.len().cast(pl.Int64),
            time=fields.list.get(2, null_on_oob=True).str.strptime(
                pl.Datetime("us"), MIND_TIME_FORMAT, strict=False
            ),
        )
        .with_columns(
            day=pl.col("time").dt.date().forward_fill().backward_fill().over("file_index")
        )
        .with_columns(
            file_detail=pl.when(pl.col("day").is_null()).then(
                pl.when(pl.col("line_number") == 0)
                .then(pl.lit(EMPTY_FILE))
                .otherwise(pl.lit(NO_PARSABLE_TIME))
            )
        )
    )
    return frame, headers, repairs


def scan_behavior_days(files: list[SourceFile]) -> DayScan:
    """Days of the behaviors files with their line counts, and the unattributable files (file ->
    why). Never raises for file content: for a caller that handles files one by one (a sensor)."""
    return file_scan(_dated_lines(files)[0])


def behavior_days(files: list[SourceFile]) -> dict[date, int]:
    """Days present in the behaviors files, with the number of lines attributed to each, sorted.

    Unattributable files add no day; each is logged as a warning. Raises ValueError when no file
    has a parsable time at all. The counts equal `rows_read` of `parse_behaviors(files, ...,
    day=d)` for each day `d` minus the rows of unattributable files, which every day reports.
    """
    return days_or_raise(scan_behavior_days(files), "behaviors")


IMPRESSION_DAYS_SCHEMA: dict[str, pl.DataType] = {
    "source_split": pl.Utf8(),
    "day": pl.Date(),
    "labelled": pl.Boolean(),
    "impressions": pl.Int64(),
}


def impression_days(files: list[SourceFile]) -> pl.DataFrame:
    """Lines per (source folder, day, labelled) of the behaviors files (`IMPRESSION_DAYS_SCHEMA`):
    what the split preflight reads before anything is ingested.

    The lines are read as `behavior_days` reads them (header, quoting, pandas' index column,
    day attribution), so the days are those ingestion will make; a line is `labelled` when its
    first impression token carries a click label (`N123-1`; MIND's test folder has `N123`).
    Unattributable files add nothing; lines that ingestion will quarantine are counted.
    """
    frame, _, _ = _dated_lines(files)
    tokens = pl.col("fields").list.get(4, null_on_oob=True).fill_null("").str.strip_chars()
    return (
        frame.filter(pl.col("file_detail").is_null())
        .group_by("source_split", "day", labelled=tokens.str.contains(r"^[^\s]+-[01](?:\s|$)"))
        .agg(impressions=pl.len())
        .sort("day", "source_split", "labelled")
        .cast(IMPRESSION_DAYS_SCHEMA)
        .select(list(IMPRESSION_DAYS_SCHEMA))
    )


def _with_impression_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """Parse impression ids and flag repeats of a (split, id) over all lines, first one wins.

    Evaluated before any day filter so a repeat is caught whichever day its first use falls on.
    The first line with a given id keeps it even if it is quarantined for another reason.
    """
    raw_id = pl.col("fields").list.get(0)
    mind_id = pl.when(raw_id.str.contains(r"^\d{1,18}$")).then(raw_id.cast(pl.Int64, strict=False))
    frame = frame.with_columns(mind_impression_id=mind_id)
    key = ["source_split", "id_key"]
    return (
        frame.with_columns(
            # Lines of unattributable files are never ingested, so they claim no id.
            id_key=pl.when(
                (pl.col("n_columns") == BEHAVIORS_COLUMNS) & pl.col("file_detail").is_null()
            ).then("mind_impression_id")
        )
        .with_columns(
            first_file=pl.col("source_file").first().over(key),
            first_line=pl.col("line_number").first().over(key),
        )
        .with_columns(
            duplicate_id=pl.col("id_key").is_not_null()
            & (
                (pl.col("first_file") != pl.col("source_file"))
                | (pl.col("first_line") != pl.col("line_number"))
            )
        )
    )


def _words(field: pl.Expr) -> pl.Expr:
    """Space-separated words of a field, `[]` when it is blank (stray spaces give `""` words)."""
    return pl.when(field.str.strip_chars() == "").then(_EMPTY_LIST).otherwise(field.str.split(" "))


def _unknown_counts(ids: pl.DataFrame, known: pl.DataFrame, name: str) -> pl.DataFrame:
    """Per `row`: `{name}_unknown` (ids not in `known`) and `{name}_unknown_ids` (first few)."""
    unknown = ids.join(known, on="news_id", how="anti")
    return unknown.group_by("row").agg(
        pl.len().cast(pl.Int64).alias(f"{name}_unknown"),
        pl.col("news_id").head(_UNKNOWN_SAMPLE).str.join(" ").alias(f"{name}_unknown_ids"),
    )


def _with_candidates(frame: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    """Add candidate ids and labels (nulls for unlabelled lines), unknown-candidate counts and,
    for lines with a malformed token, the first such token (for the quarantine detail)."""
    tokens = pl.col("tokens")
    frame = frame.with_columns(
        candidate_ids=pl.when("unlabelled_line")
        .then(tokens)
        .otherwise(tokens.list.eval(pl.element().str.head(-2))),
        candidate_labels=pl.when("unlabelled_line")
        .then(pl.lit(None, pl.Int8).repeat_by(tokens.list.len()))
        .otherwise(tokens.list.eval(pl.element().str.tail(1).cast(pl.Int8, strict=False))),
    )
    ids = frame.select("row", news_id="candidate_ids").explode("news_id").drop_nulls("news_id")
    first_bad = frame.filter(~pl.col("any_line")).select(
        "row",
        bad_token=tokens.list.eval(
            pl.element().filter(~pl.element().str.contains(f"^{_ANY}$"))
        ).list.first(),
    )
    frame = frame.join(first_bad, on="row", how="left", maintain_order="left")
    frame = frame.join(
        _unknown_counts(ids, known, "candidates"), on="row", how="left", maintain_order="left"
    )
    return frame.with_columns(pl.col("candidates_unknown").fill_null(0))


def _with_history_checks(frame: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    """Add unknown-history counts; empty words (repeated spaces) are not ids and are dropped."""
    ids = (
        frame.select("row", news_id="history")
        .explode("news_id")
        .filter(pl.col("news_id").is_not_null() & (pl.col("news_id") != ""))
    )
    frame = frame.join(
        _unknown_counts(ids, known, "history"), on="row", how="left", maintain_order="left"
    )
    return frame.with_columns(pl.col("history_unknown").fill_null(0))


def _checks() -> list[Check]:
    fields = pl.col("fields")
    impressions = pl.col("impressions_text")
    return [
        (pl.col("file_detail").is_not_null(), UNATTRIBUTABLE_FILE, pl.col("file_detail")),
        (
            ~pl.col("utf8_ok"),
            INVALID_UTF8,
            pl.lit("line is not valid UTF-8 (undecodable bytes shown as U+FFFD)"),
        ),
        (
            pl.col("n_columns") != BEHAVIORS_COLUMNS,
            WRONG_COLUMN_COUNT,
            pl.format("expected 5 tab-separated columns, found {}", pl.col("n_columns")),
        ),
        (
            pl.col("mind_impression_id").is_null(),
            BAD_IMPRESSION_ID,
            pl.lit("impression id (column 1) is not a non-negative integer"),
        ),
        (
            pl.col("duplicate_id"),
            DUPLICATE_IMPRESSION_ID,
            pl.format(
                "impression id {} of split {} already used at {} line {}",
                "mind_impression_id",
                "source_split",
                "first_file",
                "first_line",
            ),
        ),
        (
            fields.list.get(1, null_on_oob=True).str.strip_chars() == "",
            MISSING_VALUE,
            pl.lit("empty user id (column 2)"),
        ),
        (
            pl.col("time").is_null(),
            UNPARSABLE_TIME,
            pl.format(
                "time '{}' is not like '11/11/2019 9:05:58 AM'",
                fields.list.get(2, null_on_oob=True).str.slice(0, 60),
            ),
        ),
        (
            impressions.str.strip_chars() == "",
            EMPTY_IMPRESSIONS,
            pl.lit("no impression tokens (column 5)"),
        ),
        (
            ~pl.col("any_line"),
            BAD_IMPRESSION_TOKEN,
            pl.format(
                "token '{}' is not like 'N123-1' or 'N123-0'",
                pl.col("bad_token").fill_null("").str.slice(0, 60),
            ),
        ),
        (
            ~pl.col("labelled_line") & ~pl.col("unlabelled_line"),
            BAD_IMPRESSION_TOKEN,
            pl.lit("line mixes labelled (N123-1) and unlabelled (N123) tokens"),
        ),
        (
            pl.col("unlabelled_line") & (pl.col("source_split") != UNLABELLED_SPLIT),
            BAD_IMPRESSION_TOKEN,
            pl.lit("unlabelled tokens (N123) are only allowed in the test split"),
        ),
        (
            pl.col("candidates_unknown") > 0,
            UNKNOWN_NEWS_IN_IMPRESSIONS,
            pl.format(
                "{} candidate(s) not in the news table, e.g. {}",
                "candidates_unknown",
                "candidates_unknown_ids",
            ),
        ),
        (
            pl.col("history_unknown") > 0,
            UNKNOWN_NEWS_IN_HISTORY,
            pl.format(
                "{} history item(s) not in the news table, e.g. {}",
                "history_unknown",
                "history_unknown_ids",
            ),
        ),
    ]


def _raw_line_with_pseudonym() -> pl.Expr:
    """The line with its user-id field (2nd column) replaced by the pseudonym, cut to size."""
    parts = pl.col("line").str.splitn("\t", 3)
    rest = parts.struct.field("field_2")
    line = pl.concat_str(
        parts.struct.field("field_0"),
        pl.lit("\t"),
        # An empty user field stays empty rather than showing the pseudonym of "".
        pl.when(parts.struct.field("field_1") == "")
        .then(pl.lit(""))
        .otherwise(pl.col("user_pseudonym")),
        pl.when(rest.is_not_null()).then(pl.lit("\t") + rest).otherwise(pl.lit("")),
    )
    return truncate_raw(pl.when(pl.col("n_columns") >= 2).then(line).otherwise(pl.col("line")))


def parse_behaviors(
    files: list[SourceFile],
    known_news_ids: pl.Series,
    pseudonymize: Callable[[pl.Series], pl.Series],
    day: date | None = None,
) -> IngestResult:
    """Validate and parse behaviors lines attributed to `day` (every day when None).

    Accepted rows follow `BEHAVIORS_SCHEMA` (`impression_id = "{split}-{id}"`, user ids replaced
    by `pseudonymize(raw ids)`); rejected lines follow `BEHAVIORS_QUARANTINE_SCHEMA` with the
    reason of the first failing check, in this order: unattributable_file (every line of a file
    with no parsable time, or line 0 for an empty file, with `day` = `day`, null when `day` is
    None), invalid_utf8, wrong_column_count,
    bad_impression_id, duplicate_impression_id (same split, any file, first line wins),
    missing_value (empty user id), unparsable_time, empty_impressions, bad_impression_token,
    unknown_news_in_impressions, unknown_news_in_history. A header line is skipped
    (`skipped_headers`, in every day's result; not a row). Raw user ids appear nowhere in the
    output: quarantined lines carry the pseudonym in their 2nd column. `rows_read` is the number
    of lines attributed to `day` plus the unattributable rows; `rows_merged` is always 0.
    Raises ValueError when no file has a parsable time at all.
    """
    frame, headers, file_repairs = _dated_lines(files)
    require_attributable(file_scan(frame), "behaviors")
    frame = _with_impression_ids(frame)
    if day is not None:
        unattributable = pl.col("file_detail").is_not_null()
        frame = frame.filter((pl.col("day") == day) | unattributable).with_columns(
            day=pl.when(unattributable).then(pl.lit(day)).otherwise("day")
        )
    fields = pl.col("fields")
    frame = (
        frame.with_row_index("row")
        .with_columns(
            impressions_text=fields.list.get(4, null_on_oob=True),
            history=_words(fields.list.get(3, null_on_oob=True)),
            raw_user_id=pl.when(pl.col("n_columns") >= 2).then(fields.list.get(1)),
        )
        .with_columns(
            tokens=_words(pl.col("impressions_text")),
            any_line=pl.col("impressions_text").str.contains(_ANY_LINE),
            dashes=pl.col("impressions_text").str.count_matches("-", literal=True),
        )
        .with_columns(
            labelled_line=pl.col("any_line") & (pl.col("dashes") == pl.col("tokens").list.len()),
            unlabelled_line=pl.col("any_line") & (pl.col("dashes") == 0),
        )
    )
    known = pl.DataFrame({"news_id": known_news_ids.cast(pl.Utf8).unique()})
    frame = _with_history_checks(_with_candidates(frame, known), known)
    reason, detail = first_failure(_checks())
    frame = frame.with_columns(reason=reason, detail=detail)
    pseudonyms = pseudonym_table(frame["raw_user_id"], pseudonymize)
    frame = frame.join(pseudonyms, on="raw_user_id", how="left", maintain_order="left")

    accepted = frame.filter(pl.col("reason").is_null())
    if accepted["history"].list.contains("").any():
        accepted = accepted.with_columns(
            pl.col("history").list.eval(pl.element().filter(pl.element() != ""))
        )
    accepted = accepted.select(
        impression_id=pl.format("{}-{}", "source_split", "mind_impression_id"),
        mind_impression_id="mind_impression_id",
        source_split="source_split",
        user_id="user_pseudonym",
        time="time",
        day="day",
        history="history",
        candidate_ids="candidate_ids",
        candidate_labels="candidate_labels",
        source_file="source_file",
        line_number="line_number",
    )
    quarantine = frame.filter(pl.col("reason").is_not_null()).select(
        "source_file",
        "line_number",
        "reason",
        "detail",
        raw_line=_raw_line_with_pseudonym(),
        day="day",
    )
    return IngestResult(
        accepted=accepted.cast(BEHAVIORS_SCHEMA),
        quarantine=quarantine.cast(BEHAVIORS_QUARANTINE_SCHEMA),
        rows_read=frame.height,
        skipped_headers=headers,
        file_repairs=file_repairs,
    )
