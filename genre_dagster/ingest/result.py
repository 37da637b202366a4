"""The result of parsing one source: accepted rows, quarantined rows and the counts that tie them,
plus the repairs made to accepted rows and the header lines skipped.

Schemas follow the canonical raw tables in docs/ARCHITECTURE.md exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

RAW_LINE_MAX_CHARS = 2000

NEWS_SCHEMA: dict[str, pl.DataType] = {
    "news_id": pl.Utf8(),
    "category": pl.Utf8(),
    "subcategory": pl.Utf8(),
    "title": pl.Utf8(),
    "abstract": pl.Utf8(),
    "url": pl.Utf8(),
    "title_entities": pl.Utf8(),
    "abstract_entities": pl.Utf8(),
    "source_file": pl.Utf8(),
    "line_number": pl.Int64(),
}

BEHAVIORS_SCHEMA: dict[str, pl.DataType] = {
    "impression_id": pl.Utf8(),
    "mind_impression_id": pl.Int64(),
    "source_split": pl.Utf8(),
    "user_id": pl.Utf8(),
    "time": pl.Datetime("us"),
    "day": pl.Date(),
    "history": pl.List(pl.Utf8()),
    "candidate_ids": pl.List(pl.Utf8()),
    "candidate_labels": pl.List(pl.Int8()),
    "source_file": pl.Utf8(),
    "line_number": pl.Int64(),
}

NEWS_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.Utf8(),
    "line_number": pl.Int64(),
    "reason": pl.Utf8(),
    "detail": pl.Utf8(),
    "raw_line": pl.Utf8(),
}

BEHAVIORS_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    **NEWS_QUARANTINE_SCHEMA,
    "day": pl.Date(),
}

# One row per repaired field of an accepted item: the row is kept with the field replaced.
NEWS_REPAIRS_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.Utf8(),
    "line_number": pl.Int64(),
    "news_id": pl.Utf8(),
    "field": pl.Utf8(),
    "reason": pl.Utf8(),
    "detail": pl.Utf8(),
    "raw_line": pl.Utf8(),
}

# Reason codes of the quarantine tables (docs/ARCHITECTURE.md).
WRONG_COLUMN_COUNT = "wrong_column_count"
INVALID_UTF8 = "invalid_utf8"
UNPARSABLE_TIME = "unparsable_time"
BAD_IMPRESSION_ID = "bad_impression_id"
DUPLICATE_IMPRESSION_ID = "duplicate_impression_id"
BAD_IMPRESSION_TOKEN = "bad_impression_token"
EMPTY_IMPRESSIONS = "empty_impressions"
UNKNOWN_NEWS_IN_IMPRESSIONS = "unknown_news_in_impressions"
UNKNOWN_NEWS_IN_HISTORY = "unknown_news_in_history"
EMPTY_TITLE = "empty_title"
MISSING_CATEGORY = "missing_category"
DUPLICATE_NEWS_ID = "duplicate_news_id"
MISSING_VALUE = "missing_value"
BAD_LABEL = "bad_label"
# File-level reasons: the whole file could not be used (see ingest/unattributable.py). Its rows
# are reported in the quarantine but kept out of the line-level quarantine share.
UNATTRIBUTABLE_FILE = "unattributable_file"
UNREADABLE_FILE = "unreadable_file"
FILE_LEVEL_REASONS: tuple[str, ...] = (UNATTRIBUTABLE_FILE, UNREADABLE_FILE)

REASON_CODES: tuple[str, ...] = (
    WRONG_COLUMN_COUNT,
    INVALID_UTF8,
    UNPARSABLE_TIME,
    BAD_IMPRESSION_ID,
    DUPLICATE_IMPRESSION_ID,
    BAD_IMPRESSION_TOKEN,
    EMPTY_IMPRESSIONS,
    UNKNOWN_NEWS_IN_IMPRESSIONS,
    UNKNOWN_NEWS_IN_HISTORY,
    EMPTY_TITLE,
    MISSING_CATEGORY,
    DUPLICATE_NEWS_ID,
    MISSING_VALUE,
    BAD_LABEL,
    UNATTRIBUTABLE_FILE,
    UNREADABLE_FILE,
)

# Reason codes of the repairs table: an optional field that was unusable and replaced, its row
# kept (required fields stay strict and quarantine their row).
INVALID_ENTITY_JSON = "invalid_entity_json"
REPAIR_REASON_CODES: tuple[str, ...] = (INVALID_ENTITY_JSON,)


def _no_repairs() -> pl.DataFrame:
    return pl.DataFrame(schema=NEWS_REPAIRS_SCHEMA)


@dataclass
class IngestResult:
    """Accepted and quarantined rows of one parse, with the number of input rows.

    `rows_merged` counts input rows that are neither accepted nor quarantined because they were
    folded into another accepted row: news ids repeated identically in several files (MIND's
    train/dev overlap), or generic interaction rows grouped into an impression started by an
    earlier row. Counts always satisfy `rows_read = accepted + quarantined + merged`.

    `repairs` (`NEWS_REPAIRS_SCHEMA`) lists the fields of accepted rows that were replaced
    because they were unusable but optional. `skipped_headers` maps each file whose first line
    was a header to what was skipped; header lines are not rows, so `rows_read` leaves them out.
    `file_repairs` maps each file repaired as a whole (pandas' index column written without a
    header, dropped) to what was done; its rows are read as they would be without it.
    """

    accepted: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    rows_merged: int = 0
    repairs: pl.DataFrame = field(default_factory=_no_repairs)
    skipped_headers: dict[str, str] = field(default_factory=dict)
    file_repairs: dict[str, str] = field(default_factory=dict)

    @property
    def header_lines_skipped(self) -> int:
        return len(self.skipped_headers)

    @property
    def files_repaired(self) -> int:
        return len(self.file_repairs)

    @property
    def rows_repaired(self) -> int:
        """Accepted rows with at least one repaired field."""
        return self.repairs.select("source_file", "line_number").unique().height

    @property
    def rows_accepted(self) -> int:
        return self.accepted.height

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.height

    @property
    def quarantine_share(self) -> float:
        """Quarantined rows as a share of rows read (0.0 when nothing was read)."""
        return self.quarantine.height / self.rows_read if self.rows_read else 0.0

    @property
    def rows_in_quarantined_files(self) -> int:
        """Quarantined rows that stand for a whole unusable file (`FILE_LEVEL_REASONS`)."""
        return self.quarantine.height - self.line_quarantine().height

    def line_quarantine(self) -> pl.DataFrame:
        """Quarantined rows of usable files (file-level rejects left out)."""
        return self.quarantine.filter(~pl.col("reason").is_in(list(FILE_LEVEL_REASONS)))

    @property
    def line_quarantine_share(self) -> float:
        """Quarantined rows of usable files as a share of the rows read from usable files.

        Whole-file rejects are left out: one corrupt file dropped next to valid ones is
        reported (`quarantined_files`) but does not swamp the share of a small day.
        """
        in_files = self.rows_in_quarantined_files
        lines_read = self.rows_read - in_files
        return (self.quarantine.height - in_files) / lines_read if lines_read else 0.0

    def quarantined_files(self) -> pl.DataFrame:
        """One row per wholly rejected file: `source_file`, `reason`, `rows`, `detail`."""
        return (
            self.quarantine.filter(pl.col("reason").is_in(list(FILE_LEVEL_REASONS)))
            .group_by("source_file", maintain_order=True)
            .agg(
                pl.col("reason").first(),
                pl.len().cast(pl.Int64).alias("rows"),
                pl.col("detail").first(),
            )
        )

    def check_counts(self) -> None:
        """Raise ValueError unless rows_read = accepted + quarantined + merged."""
        accounted = self.accepted.height + self.quarantine.height + self.rows_merged
        if accounted != self.rows_read:
            raise ValueError(
                f"row counts do not add up: rows_read={self.rows_read} but accepted="
                f"{self.accepted.height} + quarantined={self.quarantine.height} + merged="
                f"{self.rows_merged} = {accounted}"
            )
