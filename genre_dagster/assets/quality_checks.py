"""Data-quality checks in Python, where dbt tests do not reach."""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources import DatasetSource

BEHAVIORS = wh.RAW_BEHAVIORS.key
IMPRESSIONS = wh.IMPRESSIONS.key
USER_HISTORIES = wh.USER_HISTORIES.key
IMPRESSION_SPLITS = wh.IMPRESSION_SPLITS.key


class ClickRateConfig(dg.Config):
    min_ctr: float = Field(default=0.005, description="lowest plausible click rate of a day")
    max_ctr: float = Field(default=0.5, description="highest plausible click rate of a day")


@dg.asset_check(
    asset=IMPRESSIONS,
    description="The click rate of every labelled day lies within plausible bounds.",
    pool="duckdb",
)
def click_rate_bounds(config: ClickRateConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        rows = conn.sql(
            "select day, count(*) as shown, sum(label) as clicks, avg(label) as ctr "
            f"from {wh.IMPRESSIONS} where label is not null group by day order by day"
        ).fetchall()
    outside = [(d, ctr) for d, _, _, ctr in rows if not config.min_ctr <= ctr <= config.max_ctr]
    table = "| day | shown | clicks | ctr |\n|---|---|---|---|\n" + "\n".join(
        f"| {d} | {s} | {c} | {ctr:.4f} |" for d, s, c, ctr in rows
    )
    return dg.AssetCheckResult(
        passed=bool(rows) and not outside,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "days": len(rows),
            "days_outside_bounds": len(outside),
            "ctr_by_day": dg.MetadataValue.md(table),
        },
        description=None if rows else "no labelled impressions",
    )


@dg.asset_check(
    asset=USER_HISTORIES,
    description="Every news id in a user history exists in the news table.",
    pool="duckdb",
)
def histories_reference_known_news(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        (total, missing) = conn.sql(
            f"""
            with items as (select unnest(history) as news_id from {wh.USER_HISTORIES})
            select count(*), count(*) filter (where n.news_id is null)
            from items as i left join {wh.STG_NEWS} as n using (news_id)
            """
        ).fetchone()
    return dg.AssetCheckResult(
        passed=missing == 0,
        metadata={"history_items": total, "unknown_news_ids": missing},
    )


@dg.asset_check(
    asset=IMPRESSION_SPLITS,
    description=(
        "Train, validation and test each hold labelled impressions; the days of each split. "
        "Blocking: no scorer trains on an unusable split."
    ),
    blocking=True,
    pool="duckdb",
)
def splits_are_usable(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    from genre_dagster.scoring.splits import describe_splits

    with duckdb.get_connection() as conn:
        report = describe_splits(conn)
    return dg.AssetCheckResult(
        passed=not report.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "splits": report.summary(),
            "split_rule": report.rule,
            "days": dg.MetadataValue.md(report.table()),
            **{f"{split}_impressions": n for split, n in report.impressions.items()},
        },
        description=report.problem(),
    )


class FreshnessConfig(dg.Config):
    max_age_days: int = Field(
        default=0,
        description=(
            "also fail when the newest ingested day is older than this many days before today "
            "(0 = off: demo and benchmark data are historical)"
        ),
    )


@dg.asset_check(
    asset=BEHAVIORS,
    description=(
        "The newest day present in the source files has been ingested (nothing is waiting), "
        "and optionally is recent."
    ),
)
def behaviors_freshness(
    context: dg.AssetCheckExecutionContext, config: FreshnessConfig, source: DatasetSource
) -> dg.AssetCheckResult:
    available = sorted(source.days())
    materialized = sorted(context.instance.get_materialized_partitions(BEHAVIORS))
    newest_available = available[-1].isoformat() if available else None
    newest_ingested = materialized[-1] if materialized else None
    waiting = sorted({d.isoformat() for d in available} - set(materialized))
    passed = newest_ingested is not None and newest_ingested == newest_available
    age_days = None
    if newest_ingested and config.max_age_days:
        age_days = (date.today() - date.fromisoformat(newest_ingested)).days
        passed = passed and age_days <= config.max_age_days
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "newest_available_day": str(newest_available),
            "newest_ingested_day": str(newest_ingested),
            "days_waiting": dg.MetadataValue.json(waiting),
            "age_days": age_days if age_days is not None else -1,
        },
    )
