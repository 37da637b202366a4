"""Files whose rows cannot be attributed to any day: skipped by day discovery, quarantined whole.

A behaviors or interactions file with no parsable time at all (binary garbage, a gzip by
mistake, an HTML error page, an empty or truncated file, an unreadable Parquet) contributes no
day. Day discovery logs a warning naming it; every parse of a day puts all its lines (one row
with line_number 0 when the file has no lines or cannot be read) into that day's quarantine
with reason `unattributable_file`, so each night that skips the file says so in its own
partition and its counts still add up. Only when no file at all can be attributed is it an
error: then there is nothing to ingest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

import polars as pl

logger = logging.getLogger(__name__)

UNATTRIBUTABLE = "unattributable file"
EMPTY_FILE = f"{UNATTRIBUTABLE}: the file is empty, no line to attribute to a day"
# Reader errors can quote whole schemas; the quarantine's detail stays readable.
_ERROR_MAX_CHARS = 500
# Errors of a reader facing bytes it cannot decode. I/O errors (missing file, permissions) are
# not among them: they are not the file's content and must fail the run (it is retried).
READ_ERRORS: tuple[type[Exception], ...] = (pl.exceptions.PolarsError, UnicodeDecodeError)


def no_parsable_time(expected: str) -> str:
    """Detail for a file none of whose lines has a parsable time; `expected` shows the format."""
    return (
        f"{UNATTRIBUTABLE}: no line has a parsable time like {expected} (corrupt or wrong format?)"
    )


def error_detail(prefix: str, error: Exception) -> str:
    """`prefix: ErrorType: message`, cut to a readable length."""
    text = f"{prefix}: {type(error).__name__}: {error}"
    return text if len(text) <= _ERROR_MAX_CHARS else text[: _ERROR_MAX_CHARS - 3] + "..."


@dataclass(frozen=True)
class DayScan:
    """Day discovery over a set of files.

    `days`: lines (rows) attributed to each day, sorted by day. `unattributable`: source file ->
    why none of its lines has a day (the quarantine's detail), in input order.
    """

    days: dict[date, int]
    unattributable: dict[str, str] = field(default_factory=dict)


def days_or_raise(scan: DayScan, what: str) -> dict[date, int]:
    """The scan's days, after a warning per unattributable file; ValueError when no file at all
    could be attributed (nothing to ingest). `what` names the files, e.g. "behaviors"."""
    for path, detail in scan.unattributable.items():
        logger.warning("%s file %s skipped for day discovery: %s", what, path, detail)
    require_attributable(scan, what)
    return scan.days


def require_attributable(scan: DayScan, what: str) -> None:
    """Raise ValueError, naming every file and why, when files exist but none has a day."""
    raise_if_none_usable(
        scan.unattributable,
        bool(scan.days),
        f"no {what} file can be attributed to a day, so there is nothing to ingest",
    )


def raise_if_none_usable(unusable: dict[str, str], any_usable: bool, message: str) -> None:
    """Raise ValueError(`message` + every unusable file and why) when there are unusable files
    and nothing usable: skipping a bad file is fine, ingesting nothing at all is not."""
    if any_usable or not unusable:
        return
    reasons = "; ".join(f"{path}: {detail}" for path, detail in unusable.items())
    raise ValueError(f"{message}: {reasons}")


def file_scan(frame: pl.DataFrame) -> DayScan:
    """Day counts of attributed rows and the unattributable files of a parsed frame.

    `frame` has `source_file`, `day` and `file_detail`: why the row's file is unattributable,
    null for the rows of usable files (exactly the rows whose `day` is not null).
    """
    counts = frame.filter(pl.col("file_detail").is_null()).group_by("day").len().sort("day")
    undated = (
        frame.filter(pl.col("file_detail").is_not_null())
        .group_by("source_file", maintain_order=True)
        .agg(pl.col("file_detail").first())
    )
    return DayScan(
        days=dict(zip(counts["day"].to_list(), counts["len"].to_list(), strict=True)),
        unattributable=dict(undated.iter_rows()),
    )
