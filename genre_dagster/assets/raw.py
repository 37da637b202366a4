"""Raw layer: validated items and impressions, the quarantine of rejected lines and the repairs
made to accepted items (an optional field replaced, the row kept).

Parsing and validation live in `genre_dagster.ingest`; these assets pick the source, enforce the
quarantine threshold and report counts. Impressions are partitioned by day so that a nightly
refresh ingests only the new day.

The threshold applies to the lines of usable files. A wholly corrupt file (no parsable time,
unreadable) is quarantined in full and listed in the metadata (`files_quarantined`,
`quarantined_files`) with a warning, but does not count toward the share: one bad file dropped
next to good ones would otherwise swamp a small day and stop the whole night. A header as first
line of a file is skipped and reported (`header_lines_skipped`), not counted as a row; a file
whose pandas index column was dropped is reported in `files_repaired`.
"""

from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.partitions import behavior_days
from genre_dagster.resources import DatasetSource, PrivacyResource
from genre_dagster.step_budget import budgeted

if TYPE_CHECKING:
    from genre_dagster.ingest import IngestResult

RAW = "raw"
NEWS = wh.RAW_NEWS.key
NEWS_QUARANTINE = dg.AssetKey([RAW, "news_quarantine"])
NEWS_REPAIRS = dg.AssetKey([RAW, "news_repairs"])
BEHAVIORS = wh.RAW_BEHAVIORS.key
BEHAVIORS_QUARANTINE = dg.AssetKey([RAW, "behaviors_quarantine"])


class IngestionConfig(dg.Config):
    """Launchpad-editable ingestion settings."""

    max_quarantine_share: float = Field(
        default=0.05,
        description=(
            "fail the step when more than this share of the rows of usable files is quarantined "
            "(wholly corrupt files are reported apart, in files_quarantined)"
        ),
    )


def _counts_metadata(result: "IngestResult") -> dict[str, dg.MetadataValue | int | float]:
    reasons = (
        result.quarantine.group_by("reason").len().sort("len", descending=True)
        if result.quarantine.height
        else None
    )
    table = "| reason | rows |\n|---|---|\n" + (
        "\n".join(f"| {r} | {n} |" for r, n in reasons.iter_rows()) if reasons is not None else ""
    )
    return {
        "rows_read": result.rows_read,
        "rows_accepted": result.accepted.height,
        "rows_quarantined": result.quarantine.height,
        "rows_merged": result.rows_merged,
        "quarantine_share": round(result.quarantine_share, 6),
        "line_quarantine_share": round(result.line_quarantine_share, 6),
        "quarantine_reasons": dg.MetadataValue.md(table),
        "header_lines_skipped": result.header_lines_skipped,
        "files_repaired": result.files_repaired,
        **_files_metadata(result),
    }


def _repairs_metadata(result: "IngestResult") -> dict[str, dg.MetadataValue | int]:
    """Accepted rows with a repaired field, and the repairs by reason and field."""
    counts = (
        result.repairs.group_by("reason", "field").len().sort("len", "reason", "field")
        if result.repairs.height
        else None
    )
    rows = (
        "\n".join(f"| {r} | {f} | {n} |" for r, f, n in counts.iter_rows())
        if counts is not None
        else ""
    )
    return {
        "rows_repaired": result.rows_repaired,
        "repair_reasons": dg.MetadataValue.md("| reason | field | rows |\n|---|---|---|\n" + rows),
    }


def _files_metadata(result: "IngestResult") -> dict[str, dg.MetadataValue | int]:
    """Wholly rejected files (name, rows, reason), apart from the line-level counts."""
    files = result.quarantined_files()
    rows = "\n".join(
        f"| {path} | {n} | {detail.replace('|', '/')} |"
        for path, n, detail in files.select("source_file", "rows", "detail").iter_rows()
    )
    return {
        "files_quarantined": files.height,
        "rows_in_quarantined_files": result.rows_in_quarantined_files,
        "quarantined_files": dg.MetadataValue.md(
            "| file | rows | reason |\n|---|---|---|\n" + rows
        ),
    }


def _conservation_check(asset_key: dg.AssetKey, result: "IngestResult") -> dg.AssetCheckResult:
    accounted = result.accepted.height + result.quarantine.height + result.rows_merged
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="row_conservation",
        passed=accounted == result.rows_read,
        metadata={"rows_read": result.rows_read, "rows_accounted": accounted},
        description="rows read = rows accepted + rows quarantined (+ identical duplicates merged)",
    )


def _enforce_threshold(result: "IngestResult", config: IngestionConfig, what: str) -> None:
    if result.line_quarantine_share > config.max_quarantine_share:
        in_files = result.rows_in_quarantined_files
        top = result.line_quarantine().group_by("reason").len().sort("len", descending=True)
        top = top.head(3)
        reasons = ", ".join(f"{r} ({n})" for r, n in top.iter_rows())
        raise dg.Failure(
            description=(
                f"{what}: {result.quarantine.height - in_files} of {result.rows_read - in_files}"
                f" rows of usable files quarantined ({result.line_quarantine_share:.1%}) exceeds "
                f"max_quarantine_share={config.max_quarantine_share:.1%} ({in_files} more rows "
                f"in wholly rejected files). Most common reasons: {reasons}. The quarantine "
                "table holds every rejected line with its file and line number."
            ),
            allow_retries=False,
        )


def _warn_quarantined_files(context: dg.AssetExecutionContext, result: "IngestResult") -> None:
    for path, n, detail in (
        result.quarantined_files().select("source_file", "rows", "detail").iter_rows()
    ):
        context.log.warning(f"{path}: skipped, {n} row(s) quarantined: {detail}")


def _log_headers(context: dg.AssetExecutionContext, result: "IngestResult") -> None:
    for path, what in {**result.skipped_headers, **result.file_repairs}.items():
        context.log.info(f"{path}: {what}")


@dg.multi_asset(
    outs={
        "news": dg.AssetOut(
            key=NEWS,
            description="Validated items (MIND news.tsv or generic items), one row per news id.",
            kinds={"polars", "duckdb"},
        ),
        "news_quarantine": dg.AssetOut(
            key=NEWS_QUARANTINE,
            description="Item lines rejected at ingestion, with file, line number and reason.",
            kinds={"polars", "duckdb"},
        ),
        "news_repairs": dg.AssetOut(
            key=NEWS_REPAIRS,
            description=(
                "Optional fields of accepted items replaced at ingestion (an entity field that "
                "is not a JSON list becomes []), with file, line number, field and reason."
            ),
            kinds={"polars", "duckdb"},
        ),
    },
    check_specs=[dg.AssetCheckSpec("row_conservation", asset=NEWS)],
    group_name=RAW,
    pool="duckdb",
)
@budgeted
def raw_news(
    context: dg.AssetExecutionContext, config: IngestionConfig, source: DatasetSource
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Parse and validate every item file of the source (the demo world is generated on first
    use). News ids shared by MIND's train and dev folders are merged when identical. An item
    whose optional entity field is unusable is kept with that field repaired (news_repairs)."""
    world = source.prepare()
    if world:
        context.log.info(f"demo world ready at {source.path}")
    result = source.read_items()
    metadata = {**_counts_metadata(result), **_repairs_metadata(result)}
    _warn_quarantined_files(context, result)
    _log_headers(context, result)
    if result.repairs.height:
        context.log.info(
            f"{result.rows_repaired} accepted item(s) had an unusable optional field replaced; "
            "raw.news_repairs lists each with its file, line and reason"
        )
    # The quarantine and repairs are stored before the threshold is enforced, so a failed run
    # still shows which lines were rejected or repaired and why.
    yield dg.Output(
        result.quarantine,
        output_name="news_quarantine",
        metadata={"dagster/row_count": result.quarantine.height},
    )
    yield dg.Output(
        result.repairs,
        output_name="news_repairs",
        metadata={"dagster/row_count": result.repairs.height},
    )
    _enforce_threshold(result, config, "news")
    yield dg.Output(
        result.accepted,
        output_name="news",
        metadata={"dagster/row_count": result.accepted.height, **metadata},
    )
    yield _conservation_check(NEWS, result)


@dg.multi_asset(
    outs={
        "behaviors": dg.AssetOut(
            key=BEHAVIORS,
            description=(
                "Validated impressions of one day, user ids pseudonymized; history and "
                "candidates as lists, labels null for unlabelled (MIND test) impressions."
            ),
            kinds={"polars", "duckdb"},
            metadata={"partition_expr": "day"},
        ),
        "behaviors_quarantine": dg.AssetOut(
            key=BEHAVIORS_QUARANTINE,
            description="Impression lines of one day rejected at ingestion, with the reason.",
            kinds={"polars", "duckdb"},
            metadata={"partition_expr": "day"},
        ),
    },
    deps=[NEWS],
    check_specs=[dg.AssetCheckSpec("row_conservation", asset=BEHAVIORS)],
    partitions_def=behavior_days,
    group_name=RAW,
    pool="duckdb",
)
@budgeted
def raw_behaviors(
    context: dg.AssetExecutionContext,
    config: IngestionConfig,
    source: DatasetSource,
    privacy: PrivacyResource,
    duckdb: DuckDBResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Parse, validate and pseudonymize the impressions of the partition's day. Impressions that
    reference unknown news, bad tokens or unparsable times go to the quarantine."""
    day = date.fromisoformat(context.partition_key)
    with duckdb.get_connection() as conn:
        known = wh.query_frame(conn, f"select news_id from {wh.RAW_NEWS}")
    result = source.read_interactions(day, known.to_series(), privacy.pseudonymize)
    metadata = _counts_metadata(result)
    _warn_quarantined_files(context, result)
    _log_headers(context, result)
    if privacy.uses_default_key:
        context.log.warning(
            "user ids pseudonymized with the local demo key; set GENRE_PSEUDONYM_KEY for real users"
        )
    yield dg.Output(
        result.quarantine,
        output_name="behaviors_quarantine",
        metadata={"dagster/row_count": result.quarantine.height},
    )
    _enforce_threshold(result, config, f"behaviors {day}")
    accepted = result.accepted
    yield dg.Output(
        accepted,
        output_name="behaviors",
        metadata={
            "dagster/row_count": accepted.height,
            "users": accepted["user_id"].n_unique() if accepted.height else 0,
            "candidates": int(accepted["candidate_ids"].list.len().sum() or 0),
            **metadata,
        },
    )
    yield _conservation_check(BEHAVIORS, result)
