"""Evidently reports in the lineage graph: each compares the newest day with a reference window,
writes a self-contained HTML page plus a JSON summary (kept per day, listed in index.html), and
evaluates its thresholds as an asset check so a verdict is visible and can act.

The five report assets come from one factory (`_report_asset`); what each report computes lives
in `genre_dagster.monitoring.daily`."""

import inspect
from collections.abc import Iterator

import dagster as dg
import numpy as np
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.reports import ReportStore
from genre_dagster.step_budget import budgeted

GROUP = "monitoring"


class ReportConfig(dg.Config):
    reference_days: int = Field(default=7, description="reference window: days before the newest")
    warn: float = Field(default=0.25, description="WARN when the drift measure reaches this")
    error: float = Field(default=0.5, description="ERROR when the drift measure reaches this")
    max_impressions: int = Field(
        default=20_000,
        ge=0,
        description=(
            "reports that score impressions use at most this many per window (a seeded random "
            "sample; 0 = all): Evidently's ranking metrics hold every candidate row in pandas"
        ),
    )


class PredictionDriftConfig(ReportConfig):
    block_promotion: bool = Field(
        default=False,
        description="an ERROR-level prediction drift blocks promotion of the challenger",
    )
    top_k: int = Field(default=5, description="top-K whose category mix is compared")


def _publish(context, report, reports: ReportStore, name: str) -> tuple:
    """Save the report, refresh the index, and return (history row, metadata)."""
    from genre_dagster.monitoring import markdown_summary, write_report_index
    from genre_dagster.monitoring.daily import history_row

    run_id = context.run.run_id
    if report.skipped:
        context.log.warning(f"report skipped for {report.day}: {report.skipped}")
        metadata = {"day": str(report.day), "verdict": "skipped", "reason": report.skipped}
        return history_row(report, run_id), metadata
    html, json_path = report.result.save(reports.folder, name, str(report.day), run_id)
    index = write_report_index(reports.folder)
    summary, value = report.result.summary, report.value
    metadata = {
        "day": str(report.day),
        "verdict": summary["verdict"],
        report.measure: value if value is not None else float("nan"),
        "report": dg.MetadataValue.url(reports.url_of(html)),
        "report_path": dg.MetadataValue.path(str(html)),
        "report_index": dg.MetadataValue.url(reports.url_of(index)),
        "summary": dg.MetadataValue.md(markdown_summary(summary)),
    }
    if "drifted_columns" in summary:
        metadata["drifted_columns"] = dg.MetadataValue.json(summary["drifted_columns"])
    return history_row(report, run_id, str(html), str(json_path)), metadata


def _check(spec: dg.AssetCheckSpec, report, thresholds, blocking_error) -> dg.AssetCheckResult:
    """The report's threshold check (passed, with the reason, when the day was skipped)."""
    from genre_dagster.monitoring import threshold_verdict

    if report.skipped:
        return dg.AssetCheckResult(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=True,
            description=f"skipped: {report.skipped}",
        )
    warn, error = thresholds
    value = report.result.summary[report.measure]
    verdict = "ok" if value is None or np.isnan(value) else threshold_verdict(value, warn, error)
    error_blocks = verdict == "error" and blocking_error
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=verdict == "ok",
        severity=dg.AssetCheckSeverity.ERROR if error_blocks else dg.AssetCheckSeverity.WARN,
        metadata={"value": float(value), "warn": warn, "error": error, "verdict": verdict},
        description=report.headline,
    )


def _run_report(context: dg.AssetExecutionContext, config: ReportConfig, name: str) -> tuple:
    """Run `genre_dagster.monitoring.daily.<name>`, publish it, append it to its history table:
    (the report, the history, the metadata)."""
    from genre_dagster.monitoring import daily

    settings = daily.ReportSettings(**config.model_dump(include=_SETTINGS))
    model_store = getattr(context.resources, "model_store", None)
    with context.resources.duckdb.get_connection() as conn:
        report = getattr(daily, name)(conn, settings, model_store)
        row, metadata = _publish(context, report, context.resources.reports, name)
        history = daily.with_history(conn, f"{GROUP}.{name}", row)
    return report, history, metadata


def _report_asset(
    name: str,
    description: str,
    deps: list,
    check: str | None = None,
    config_class: type[ReportConfig] = ReportConfig,
    fixed_thresholds: tuple[float, float] | None = None,
    scores_challenger: bool = False,
    may_block_promotion: bool = False,
) -> dg.AssetsDefinition:
    """A report asset: `_run_report`, then its check (if any) on the report's measure."""
    key = dg.AssetKey([GROUP, name])
    checks = [dg.AssetCheckSpec(check, asset=key, blocking=may_block_promotion)] if check else []
    resources = {"duckdb", "reports"} | ({"model_store"} if scores_challenger else set())

    @dg.asset(
        key=key,
        description=inspect.cleandoc(description),
        deps=deps,
        check_specs=checks,
        group_name=GROUP,
        kinds={"evidently", "duckdb"},
        pool="duckdb",
        required_resource_keys=resources,
    )
    @budgeted
    def _asset(context: dg.AssetExecutionContext, config: config_class) -> Iterator:
        report, history, metadata = _run_report(context, config, name)
        if not (report.skipped and check):  # (a skipped day with a check never counted rows)
            metadata = {"dagster/row_count": history.height, **metadata}
        yield dg.Output(history, metadata={**metadata, **report.extra})
        if check:
            thresholds = fixed_thresholds or (config.warn, config.error)
            # an ERROR blocks, except where it may block promotion: there the config decides
            blocking = config.block_promotion if may_block_promotion else True
            yield _check(checks[0], report, thresholds, blocking)

    return _asset


_SETTINGS = {"reference_days", "warn", "error", "max_impressions", "top_k"}

interaction_drift = _report_asset(
    "interaction_drift",
    """Data drift of the newest day's impressions against the reference window: history length,
    clicks and candidates per impression, category mix of candidates and clicks, item text
    length, hour of day (Evidently DataDriftPreset).""",
    deps=[wh.STG_BEHAVIORS.key, wh.IMPRESSIONS.key, wh.STG_NEWS.key],
    check="drift_share_within_thresholds",
)
data_quality = _report_asset(
    "data_quality",
    """Summary and quality of the newest day's new items and impressions: missing values, new
    categories, duplicates (Evidently DataSummaryPreset plus explicit counts).""",
    deps=[wh.STG_BEHAVIORS.key, wh.STG_NEWS.key, wh.ITEM_DAILY_STATS.key],
)
embedding_drift = _report_asset(
    "embedding_drift",
    """Embedding drift of the items first shown on the newest day against the items of the
    reference window (MMD permutation test; Evidently's embedding drift view in the page).
    The checked measure is 1 - p-value.""",
    deps=[wh.ITEM_DAILY_STATS.key, wh.NEWS_EMBEDDINGS.key],
    check="embedding_drift_within_thresholds",
    fixed_thresholds=(0.95, 0.99),
)
prediction_drift = _report_asset(
    "prediction_drift",
    """Drift of the challenger's score distribution and of its top-K category mix, newest day
    against the reference window. With `block_promotion`, an ERROR verdict blocks the promotion
    of the challenger (the serving scorer is downstream of this check).""",
    deps=[wh.CHALLENGER.key],
    check="prediction_drift_within_thresholds",
    config_class=PredictionDriftConfig,
    scores_challenger=True,
    may_block_promotion=True,
)
recommendation_quality = _report_asset(
    "recommendation_quality",
    """Ranking quality of the challenger on the newest labelled day (precision/recall/nDCG/MRR/
    hit at k) with personalization, diversity, novelty and popularity bias, against the
    reference window.""",
    deps=[wh.CHALLENGER.key, wh.STG_NEWS.key],
    scores_challenger=True,
)
