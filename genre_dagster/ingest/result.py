"""The result of parsing one source: accepted rows, quarantined rows and the counts that tie them.

Schemas follow the canonical raw tables in docs/ARCHITECTURE.md exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

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
INVALID_ENTITY_JSON = "invalid_entity_json"
MISSING_VALUE = "missing_value"
BAD_LABEL = "bad_label"

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
    INVALID_ENTITY_JSON,
    MISSING_VALUE,
    BAD_LABEL,
)


@dataclass
class IngestResult:
    """Accepted and quarantined rows of one parse, with the number of input rows.

    `rows_merged` counts input rows that are neither accepted nor quarantined because they were
    folded into another accepted row: news ids repeated identically in several files (MIND's
    train/dev overlap), or generic interaction rows grouped into an impression started by an
    earlier row. Counts always satisfy `rows_read = accepted + quarantined + merged`.
    """

    accepted: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    rows_merged: int = 0

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

    def check_counts(self) -> None:
        """Raise ValueError unless rows_read = accepted + quarantined + merged."""
        accounted = self.accepted.height + self.quarantine.height + self.rows_merged
        if accounted != self.rows_read:
            raise ValueError(
                f"row counts do not add up: rows_read={self.rows_read} but accepted="
                f"{self.accepted.height} + quarantined={self.quarantine.height} + merged="
                f"{self.rows_merged} = {accounted}"
            )
