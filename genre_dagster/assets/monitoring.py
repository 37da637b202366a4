"""Evidently reports in the lineage graph: each compares the newest day with a reference window,
writes a self-contained HTML page plus a JSON summary (kept per day, listed in index.html), and
evaluates its thresholds as an asset check so a verdict is visible and can act."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.resources.reports import ReportStore

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


def _newest_window(conn, reference_days: int):
    (newest,) = conn.execute(f"select max(day) from {wh.STG_BEHAVIORS} where is_labeled").fetchone()
    if newest is None:
        raise RuntimeError("no labelled impressions to monitor")
    return newest, newest - timedelta(days=reference_days)


def _publish(context, result, reports: ReportStore, name: str, day, measure: str):
    """Save the report, refresh the index, and return (history row, metadata)."""
    from genre_dagster.monitoring import markdown_summary, write_report_index

    html, json_path = result.save(reports.folder, name, str(day), context.run.run_id)
    index = write_report_index(reports.folder)
    summary = result.summary
    value = summary.get(measure, (summary.get("headline") or {}).get("value"))
    if isinstance(value, list):  # e.g. the list of data-quality issues: publish its length
        value = len(value)
    metadata = {
        "day": str(day),
        "verdict": summary["verdict"],
        measure: float(value) if value is not None else float("nan"),
        "report": dg.MetadataValue.url(reports.url_of(html)),
        "report_path": dg.MetadataValue.path(str(html)),
        "report_index": dg.MetadataValue.url(reports.url_of(index)),
        "summary": dg.MetadataValue.md(markdown_summary(summary)),
    }
    if "drifted_columns" in summary:
        metadata["drifted_columns"] = dg.MetadataValue.json(summary["drifted_columns"])
    row = pl.DataFrame(
        {
            "day": [day],
            "run_id": [context.run.run_id],
            "verdict": [summary["verdict"]],
            "measure": [measure],
            "value": [float(value) if value is not None else None],
            "html": [str(html)],
            "json": [str(json_path)],
        }
    )
    return row, metadata


def _skipped(context, day, reason: str) -> tuple[pl.DataFrame, dict]:
    """A history row for a day whose report could not be computed, and why (never silent)."""
    context.log.warning(f"report skipped for {day}: {reason}")
    row = pl.DataFrame(
        {
            "day": [day],
            "run_id": [context.run.run_id],
            "verdict": ["skipped"],
            "measure": [reason],
            "value": [None],
            "html": [None],
            "json": [None],
        },
        schema_overrides={"value": pl.Float64, "html": pl.Utf8, "json": pl.Utf8},
    )
    return row, {"day": str(day), "verdict": "skipped", "reason": reason}


def _skip_check(name: str, asset_key, reason: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=name, passed=True, description=f"skipped: {reason}"
    )


def _history(conn, table: str, row: pl.DataFrame) -> pl.DataFrame:
    old = wh.read_table(conn, f"{GROUP}.{table}")  # table: a constant name below
    return row if old is None else pl.concat([old, row], how="vertical_relaxed")


def _threshold_check(name, asset_key, value, config, blocking_error=True, description=""):
    from genre_dagster.monitoring import threshold_verdict

    verdict = (
        "ok"
        if value is None or np.isnan(value)
        else threshold_verdict(value, config.warn, config.error)
    )
    severity = (
        dg.AssetCheckSeverity.ERROR
        if verdict == "error" and blocking_error
        else (dg.AssetCheckSeverity.WARN)
    )
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=verdict == "ok",
        severity=severity,
        metadata={
            "value": float(value),
            "warn": config.warn,
            "error": config.error,
            "verdict": verdict,
        },
        description=description,
    )


INTERACTION = dg.AssetKey([GROUP, "interaction_drift"])


@dg.asset(
    key=INTERACTION,
    deps=[wh.STG_BEHAVIORS.key, wh.IMPRESSIONS.key, wh.STG_NEWS.key],
    check_specs=[dg.AssetCheckSpec("drift_share_within_thresholds", asset=INTERACTION)],
    group_name=GROUP,
    kinds={"evidently", "duckdb"},
    pool="duckdb",
)
def interaction_drift(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    duckdb: DuckDBResource,
    reports: ReportStore,
) -> Iterator:
    """Data drift of the newest day's impressions against the reference window: history length,
    clicks and candidates per impression, category mix of candidates and clicks, item text
    length, hour of day (Evidently DataDriftPreset)."""
    from genre_dagster.monitoring import (
        current_and_reference,
        interaction_drift_report,
        interaction_frame,
    )

    with duckdb.get_connection() as conn:
        behaviors = wh.query_frame(conn, f"select * from {wh.STG_BEHAVIORS}")
        impressions = wh.query_frame(conn, f"select * from {wh.IMPRESSIONS}")
        news = wh.query_frame(conn, f"select * from {wh.STG_NEWS}")
        frame = interaction_frame(behaviors, impressions, news)
        newest, start = _newest_window(conn, config.reference_days)
        if frame.filter(pl.col("day").is_between(start, newest - timedelta(days=1))).is_empty():
            row, metadata = _skipped(context, newest, "no reference window yet")
            history = _history(conn, "interaction_drift", row)
            yield dg.Output(history, metadata=metadata)
            yield _skip_check("drift_share_within_thresholds", INTERACTION, metadata["reason"])
            return
        current, reference = current_and_reference(frame, reference_days=config.reference_days)
        result = interaction_drift_report(
            current, reference, warn_share=config.warn, drift_share=config.error
        )
        day = current["day"][0]
        row, metadata = _publish(context, result, reports, "interaction_drift", day, "drift_share")
        history = _history(conn, "interaction_drift", row)
    yield dg.Output(history, metadata={"dagster/row_count": history.height, **metadata})
    yield _threshold_check(
        "drift_share_within_thresholds",
        INTERACTION,
        result.summary["drift_share"],
        config,
        description=_headline(result.summary),
    )


QUALITY = dg.AssetKey([GROUP, "data_quality"])


@dg.asset(
    key=QUALITY,
    deps=[wh.STG_BEHAVIORS.key, wh.STG_NEWS.key, wh.ITEM_DAILY_STATS.key],
    group_name=GROUP,
    kinds={"evidently", "duckdb"},
    pool="duckdb",
)
def data_quality(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    duckdb: DuckDBResource,
    reports: ReportStore,
) -> pl.DataFrame:
    """Summary and quality of the newest day's new items and impressions: missing values, new
    categories, duplicates (Evidently DataSummaryPreset plus explicit counts)."""
    from genre_dagster.monitoring import data_quality_report

    with duckdb.get_connection() as conn:
        newest, start = _newest_window(conn, config.reference_days)
        first_seen = f"""
            select n.* from {wh.STG_NEWS} n join (
                select news_id, min(day) as first_day from {wh.ITEM_DAILY_STATS} group by 1
            ) f using (news_id) where f.first_day between ? and ?
        """
        new_items = wh.query_frame(conn, first_seen, [newest, newest])
        ref_items = wh.query_frame(conn, first_seen, [start, newest - timedelta(days=1)])
        behaviors = f"select * from {wh.STG_BEHAVIORS} where day between ? and ?"
        new_b = wh.query_frame(conn, behaviors, [newest, newest])
        ref_b = wh.query_frame(conn, behaviors, [start, newest - timedelta(days=1)])
        if ref_items.is_empty() or ref_b.is_empty():
            row, metadata = _skipped(context, newest, "no reference window yet")
        else:
            result = data_quality_report(new_items, ref_items, new_b, ref_b)
            row, metadata = _publish(context, result, reports, "data_quality", newest, "issues")
        history = _history(conn, "data_quality", row)
    context.add_output_metadata({"dagster/row_count": history.height, **metadata})
    return history


EMBEDDING = dg.AssetKey([GROUP, "embedding_drift"])


@dg.asset(
    key=EMBEDDING,
    deps=[wh.ITEM_DAILY_STATS.key, wh.NEWS_EMBEDDINGS.key],
    check_specs=[dg.AssetCheckSpec("embedding_drift_within_thresholds", asset=EMBEDDING)],
    group_name=GROUP,
    kinds={"evidently", "duckdb"},
    pool="duckdb",
)
def embedding_drift(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    duckdb: DuckDBResource,
    reports: ReportStore,
) -> Iterator:
    """Embedding drift of the items first shown on the newest day against the items of the
    reference window (MMD permutation test; Evidently's embedding drift view in the page).
    The checked measure is 1 - p-value."""
    from genre_dagster.monitoring import embedding_drift_report

    with duckdb.get_connection() as conn:
        newest, start = _newest_window(conn, config.reference_days)
        sql = f"""
            select e.vector from {wh.NEWS_EMBEDDINGS} e join (
                select news_id, min(day) as first_day from {wh.ITEM_DAILY_STATS} group by 1
            ) f using (news_id) where e.field = 'title' and f.first_day between ? and ?
        """
        current = wh.query_frame(conn, sql, [newest, newest])
        reference = wh.query_frame(conn, sql, [start, newest - timedelta(days=1)])
        if current.height < 5 or reference.height < 5:
            reason = (
                f"too few items to compare: {current.height} new, {reference.height} in the "
                "reference window (5 each needed)"
            )
            row, metadata = _skipped(context, newest, reason)
            history = _history(conn, "embedding_drift", row)
            yield dg.Output(history, metadata=metadata)
            yield _skip_check("embedding_drift_within_thresholds", EMBEDDING, reason)
            return
        dim = int(current["vector"].list.len()[0])
        as_matrix = lambda f: np.asarray(  # noqa: E731
            f["vector"].cast(pl.Array(pl.Float32, dim)).to_numpy(), np.float32
        )
        result = embedding_drift_report(as_matrix(current), as_matrix(reference))
        p_value = result.summary.get("p_value")
        result.summary["drift_confidence"] = None if p_value is None else 1.0 - float(p_value)
        row, metadata = _publish(
            context, result, reports, "embedding_drift", newest, "drift_confidence"
        )
        history = _history(conn, "embedding_drift", row)
    yield dg.Output(history, metadata={"dagster/row_count": history.height, **metadata})
    yield _threshold_check(
        "embedding_drift_within_thresholds",
        EMBEDDING,
        result.summary["drift_confidence"],
        _Thresholds(warn=0.95, error=0.99),
        description=_headline(result.summary),
    )


def _headline(summary: dict) -> str:
    headline = summary.get("headline") or {}
    return f"{summary['verdict']}: {headline.get('name')} = {headline.get('value')}"


class _Thresholds:
    def __init__(self, warn: float, error: float) -> None:
        self.warn, self.error = warn, error


def _sample_impressions(frame: pl.DataFrame, most: int) -> pl.DataFrame:
    """At most `most` impressions (0 = all), a seeded random sample in the original order."""
    if not most or frame.height <= most:
        return frame
    return frame.with_row_index("_row").sample(most, seed=0).sort("_row").drop("_row")


def _challenger_scores(conn, model_store, newest, start, max_impressions: int = 0):
    """Scores of the challenger on the newest day and on the reference window (each sampled
    down to `max_impressions`, see ReportConfig)."""
    from genre_dagster.scoring.inputs import embedding_fields, load_scorer_inputs
    from genre_dagster.scoring.loading import build_impressions, load_behaviors_between

    (name, scorer_id) = conn.execute(f"select name, scorer_id from {wh.CHALLENGER}").fetchone()
    (profile, generated) = conn.execute(
        f'select profile, generated_history from scoring."{name}"'  # name checked by challenger
    ).fetchone()
    scorer = model_store.load(scorer_id)
    inputs = load_scorer_inputs(
        conn, (), embedding_fields(scorer.config), profile=profile, generated_history=generated
    )
    out = {}
    for label, (a, b) in {
        "current": (newest, newest),
        "reference": (start, newest - timedelta(days=1)),
    }.items():
        frame = _sample_impressions(load_behaviors_between(conn, a, b), max_impressions)
        data = build_impressions(
            frame, inputs.items, extra_history=inputs.extra_history, day_zero=inputs.day_zero
        )
        kwargs = {"profiles": inputs.profiles} if profile else {}
        scores = scorer.score(data, inputs.items, **kwargs) if data.n_impressions else np.zeros(0)
        out[label] = (frame, data, scores)
    return scorer_id, inputs, out


def _scored_frame(frame: pl.DataFrame, data, scores: np.ndarray) -> pl.DataFrame:
    counts = np.diff(data.cand_offsets)
    return pl.DataFrame(
        {
            "impression_id": np.repeat(frame["impression_id"].to_numpy(), counts),
            "news_id": frame["candidate_ids"].explode().to_numpy(),
            "score": scores,
            "label": data.labels.astype(np.int64),
            "position": np.concatenate([np.arange(1, n + 1) for n in counts]),
        }
    )


def _topk_categories(data, scores, items, k: int) -> list[str]:
    cats = np.array(items.category_names)
    out = []
    for j in range(data.n_impressions):
        a, b = data.cand_offsets[j], data.cand_offsets[j + 1]
        top = np.argsort(-scores[a:b], kind="stable")[:k]
        out += cats[items.categories[data.cand_items[a:b][top]]].tolist()
    return out


PREDICTION = dg.AssetKey([GROUP, "prediction_drift"])


@dg.asset(
    key=PREDICTION,
    deps=[wh.CHALLENGER.key],
    check_specs=[
        dg.AssetCheckSpec("prediction_drift_within_thresholds", asset=PREDICTION, blocking=True)
    ],
    group_name=GROUP,
    kinds={"evidently", "duckdb"},
    pool="duckdb",
)
def prediction_drift(
    context: dg.AssetExecutionContext,
    config: PredictionDriftConfig,
    duckdb: DuckDBResource,
    model_store: ModelStore,
    reports: ReportStore,
) -> Iterator:
    """Drift of the challenger's score distribution and of its top-K category mix, newest day
    against the reference window. With `block_promotion`, an ERROR verdict blocks the promotion
    of the challenger (the serving scorer is downstream of this check)."""
    from genre_dagster.monitoring import prediction_drift_report

    with duckdb.get_connection() as conn:
        newest, start = _newest_window(conn, config.reference_days)
        scorer_id, inputs, scored = _challenger_scores(
            conn, model_store, newest, start, config.max_impressions
        )
        (_, cur_data, cur_scores), (_, ref_data, ref_scores) = (
            scored["current"],
            scored["reference"],
        )
        if ref_data.n_impressions == 0 or cur_data.n_impressions == 0:
            # nothing to compare yet (first day of a dataset): say so, never block the lists
            row, metadata = _skipped(context, newest, "no reference window yet")
            history = _history(conn, "prediction_drift", row)
            yield dg.Output(history, metadata=metadata)
            yield _skip_check("prediction_drift_within_thresholds", PREDICTION, metadata["reason"])
            return
        result = prediction_drift_report(
            cur_scores,
            ref_scores,
            _topk_categories(cur_data, cur_scores, inputs.items, config.top_k),
            _topk_categories(ref_data, ref_scores, inputs.items, config.top_k),
            warn_share=config.warn,
            error_share=config.error,
        )
        row, metadata = _publish(
            context, result, reports, "prediction_drift", newest, "drift_share"
        )
        history = _history(conn, "prediction_drift", row)
    metadata["scorer_id"] = scorer_id
    yield dg.Output(history, metadata={"dagster/row_count": history.height, **metadata})
    yield _threshold_check(
        "prediction_drift_within_thresholds",
        PREDICTION,
        result.summary["drift_share"],
        config,
        blocking_error=config.block_promotion,
        description=_headline(result.summary),
    )


@dg.asset(
    key=[GROUP, "recommendation_quality"],
    deps=[wh.CHALLENGER.key, wh.STG_NEWS.key],
    group_name=GROUP,
    kinds={"evidently", "duckdb"},
    pool="duckdb",
)
def recommendation_quality(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    duckdb: DuckDBResource,
    model_store: ModelStore,
    reports: ReportStore,
) -> pl.DataFrame:
    """Ranking quality of the challenger on the newest labelled day (precision/recall/nDCG/MRR/
    hit at k) with personalization, diversity, novelty and popularity bias, against the
    reference window."""
    from genre_dagster.monitoring import recommendation_quality_report

    with duckdb.get_connection() as conn:
        newest, start = _newest_window(conn, config.reference_days)
        _, _, scored = _challenger_scores(conn, model_store, newest, start, config.max_impressions)
        news = wh.query_frame(conn, f"select * from {wh.STG_NEWS}")
        current = _scored_frame(*scored["current"])
        reference = (
            _scored_frame(*scored["reference"]) if scored["reference"][1].n_impressions else None
        )
        # Evidently's top-k metrics need every list to hold at least k candidates
        k = int(min(10, current.group_by("impression_id").len()["len"].min()))
        if reference is not None:
            k = int(min(k, reference.group_by("impression_id").len()["len"].min()))
        result = recommendation_quality_report(current, k=k, news=news, reference_scored=reference)
        row, metadata = _publish(
            context, result, reports, "recommendation_quality", newest, f"ndcg@{k}"
        )
        history = _history(conn, "recommendation_quality", row)
    context.add_output_metadata({"dagster/row_count": history.height, **metadata})
    return history
