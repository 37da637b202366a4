"""The newest day's monitoring reports, read from the warehouse: each function compares the
newest labelled day with its reference window and returns a `DailyReport` (the Evidently result
and the measure it publishes, or why the day was skipped), plus the report history rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from genre_dagster import warehouse as wh
from genre_dagster.monitoring.challenger import challenger_scores, scored_frame, topk_categories

NO_REFERENCE = "no reference window yet"


@dataclass(frozen=True)
class ReportSettings:
    """What a report run is told: the reference window, the thresholds, the sample size."""

    reference_days: int = 7
    warn: float = 0.25
    error: float = 0.5
    max_impressions: int = 0
    top_k: int = 5


@dataclass
class DailyReport:
    """One day's report: `result` and the `measure` it publishes, or the `skipped` reason."""

    day: date
    result: Any = None  # a ReportResult; None when skipped
    measure: str = ""
    skipped: str = ""
    extra: dict = field(default_factory=dict)  # more metadata (e.g. the scorer id)

    @property
    def value(self) -> float | None:
        """The published value of the measure (a list, e.g. of issues, counts as its length)."""
        summary = self.result.summary
        value = summary.get(self.measure, (summary.get("headline") or {}).get("value"))
        if isinstance(value, list):
            value = len(value)
        return float(value) if value is not None else None

    @property
    def headline(self) -> str:
        summary = self.result.summary
        headline = summary.get("headline") or {}
        return f"{summary['verdict']}: {headline.get('name')} = {headline.get('value')}"


def newest_window(conn: Any, reference_days: int) -> tuple[date, date]:
    """The newest labelled day and the first day of its reference window."""
    (newest,) = conn.execute(f"select max(day) from {wh.STG_BEHAVIORS} where is_labeled").fetchone()
    if newest is None:
        raise RuntimeError("no labelled impressions to monitor")
    return newest, newest - timedelta(days=reference_days)


def interaction_drift(conn: Any, settings: ReportSettings, model_store: Any = None) -> DailyReport:
    """Data drift of the newest day's impressions against the reference window."""
    from genre_dagster.monitoring import current_and_reference, interaction_drift_report

    newest, start = newest_window(conn, settings.reference_days)
    # the report's current day is the newest day with impressions (labelled or not)
    (last,) = conn.execute(f"select max(day) from {wh.STG_BEHAVIORS}").fetchone()
    frame = interaction_window(conn, min(start, last - timedelta(settings.reference_days)), last)
    if frame.filter(pl.col("day").is_between(start, newest - timedelta(days=1))).is_empty():
        return DailyReport(newest, skipped=NO_REFERENCE)
    current, reference = current_and_reference(frame, reference_days=settings.reference_days)
    result = interaction_drift_report(
        current, reference, warn_share=settings.warn, drift_share=settings.error
    )
    return DailyReport(current["day"][0], result, "drift_share")


# Above every candidate position (MIND shows at most a few hundred candidates per impression).
POSITION_KEY = 1_000_000_000


def interaction_window(conn: Any, first: date, last: date) -> pl.DataFrame:
    """`monitoring.interaction_frame` of the impressions of days `first`..`last`, its candidate
    rows aggregated per impression by DuckDB: only one row per impression reaches Python, so
    the step's memory follows the impressions, not their tens of millions of candidates (and
    DuckDB spills under its memory limit). Same checks and same frame as the Polars version."""
    from genre_dagster.monitoring.frames import finish_interaction_frame

    window = [first, last]
    behaviors = wh.query_frame(
        conn,
        "select impression_id, time, day, history_length, n_candidates, n_clicks, is_labeled "
        f"from {wh.STG_BEHAVIORS} where day between ? and ?",
        window,
    )
    candidates = f"""
        select i.impression_id, i.position, i.label, i.news_id
        from {wh.IMPRESSIONS} i semi join (
            select impression_id from {wh.STG_BEHAVIORS} where day between ? and ?
        ) w using (impression_id)
    """
    (unknown, examples) = conn.execute(
        f"""select count(*), (list(distinct news_id order by news_id))[1:5] from ({candidates}) c
        anti join {wh.STG_NEWS} n using (news_id)""",
        window,
    ).fetchone()
    if unknown:
        raise ValueError(
            f"interaction_frame: {unknown} candidates have news ids missing from the news "
            f"table (e.g. {examples})"
        )
    aggregates = wh.query_frame(
        conn,
        f"""
        with c as (
            select c.impression_id, c.position, c.label, n.category, n.text_length
            from ({candidates}) c join {wh.STG_NEWS} n using (news_id)
        ),
        per as (
            select impression_id, count(*) as n_rows,
                avg(text_length) as mean_candidate_text_length
            from c group by impression_id
        ),
        counts as (
            select impression_id, category, count(*) as n, min(position) as first,
                count(*) filter (where label = 1) as clicks,
                min(position) filter (where label = 1) as first_click
            from c group by impression_id, category
        ),
        -- per impression, the category shown most (the first shown among equals) and the one
        -- clicked most (the first clicked among equals; a null category counts as one): one
        -- key each, as positions within an impression are distinct and below POSITION_KEY.
        -- Two grouped aggregates, where row_number() windows sorted every (impression,
        -- category) row of the window.
        top as (
            select impression_id,
                arg_max_null(category, n * {POSITION_KEY} - first) as candidate_top_category,
                arg_max_null(category, clicks * {POSITION_KEY} - first_click)
                    filter (where clicks > 0) as clicked_category
            from counts group by impression_id
        )
        select per.impression_id, per.n_rows, per.mean_candidate_text_length,
            top.clicked_category, top.candidate_top_category
        from per join top using (impression_id)
        """,
        window,
    )
    return finish_interaction_frame(behaviors, aggregates)


def data_quality(conn: Any, settings: ReportSettings, model_store: Any = None) -> DailyReport:
    """Quality of the newest day's new items and impressions against the reference window."""
    from genre_dagster.monitoring import data_quality_report
    from genre_dagster.monitoring.quality import BEHAVIOR_COLUMNS, ITEM_COLUMNS

    # only the columns the checks and Evidently read: the id lists of a six-day window would
    # be most of the step's memory at MIND-large size, for nothing
    newest, start = newest_window(conn, settings.reference_days)
    item_columns = ", ".join(f"n.{c}" for c in ITEM_COLUMNS)
    first_seen = f"""
        select {item_columns} from {wh.STG_NEWS} n join (
            select news_id, min(day) as first_day from {wh.ITEM_DAILY_STATS} group by 1
        ) f using (news_id) where f.first_day between ? and ?
    """
    new_items = wh.query_frame(conn, first_seen, [newest, newest])
    ref_items = wh.query_frame(conn, first_seen, [start, newest - timedelta(days=1)])
    behaviors = (
        f"select {', '.join(BEHAVIOR_COLUMNS)} from {wh.STG_BEHAVIORS} where day between ? and ?"
    )
    new_b = wh.query_frame(conn, behaviors, [newest, newest])
    ref_b = wh.query_frame(conn, behaviors, [start, newest - timedelta(days=1)])
    if ref_items.is_empty() or ref_b.is_empty():
        return DailyReport(newest, skipped=NO_REFERENCE)
    return DailyReport(newest, data_quality_report(new_items, ref_items, new_b, ref_b), "issues")


def embedding_drift(conn: Any, settings: ReportSettings, model_store: Any = None) -> DailyReport:
    """Embedding drift (title vectors) of the items first shown on the newest day against those
    of the reference window; publishes 1 - p-value as `drift_confidence`."""
    from genre_dagster.monitoring import embedding_drift_report

    newest, start = newest_window(conn, settings.reference_days)
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
        return DailyReport(newest, skipped=reason)
    dim = int(current["vector"].list.len()[0])
    as_matrix = lambda f: np.asarray(  # noqa: E731
        f["vector"].cast(pl.Array(pl.Float32, dim)).to_numpy(), np.float32
    )
    result = embedding_drift_report(as_matrix(current), as_matrix(reference))
    p_value = result.summary.get("p_value")
    result.summary["drift_confidence"] = None if p_value is None else 1.0 - float(p_value)
    return DailyReport(newest, result, "drift_confidence")


def prediction_drift(conn: Any, settings: ReportSettings, model_store: Any) -> DailyReport:
    """Drift of the challenger's scores and of its top-K category mix, newest day against the
    reference window; skipped (never blocking) while either side has no impressions."""
    from genre_dagster.monitoring import prediction_drift_report

    newest, start = newest_window(conn, settings.reference_days)
    scorer_id, inputs, scored = challenger_scores(
        conn, model_store, newest, start, settings.max_impressions
    )
    (_, cur_data, cur_scores), (_, ref_data, ref_scores) = scored["current"], scored["reference"]
    if ref_data.n_impressions == 0 or cur_data.n_impressions == 0:
        return DailyReport(newest, skipped=NO_REFERENCE)
    result = prediction_drift_report(
        cur_scores,
        ref_scores,
        topk_categories(cur_data, cur_scores, inputs.items, settings.top_k),
        topk_categories(ref_data, ref_scores, inputs.items, settings.top_k),
        warn_share=settings.warn,
        error_share=settings.error,
    )
    return DailyReport(newest, result, "drift_share", extra={"scorer_id": scorer_id})


def recommendation_quality(conn: Any, settings: ReportSettings, model_store: Any) -> DailyReport:
    """Ranking quality and beyond-accuracy measures of the challenger on the newest day, against
    the reference window; publishes nDCG at the largest k (<= 10) every list can fill."""
    from genre_dagster.monitoring import recommendation_quality_report

    newest, start = newest_window(conn, settings.reference_days)
    _, _, scored = challenger_scores(conn, model_store, newest, start, settings.max_impressions)
    news = wh.query_frame(conn, f"select news_id, category from {wh.STG_NEWS}")  # all it reads
    current = scored_frame(*scored["current"])
    reference = scored_frame(*scored["reference"]) if scored["reference"][1].n_impressions else None
    # Evidently's top-k metrics need every list to hold at least k candidates
    k = int(min(10, current.group_by("impression_id").len()["len"].min()))
    if reference is not None:
        k = int(min(k, reference.group_by("impression_id").len()["len"].min()))
    result = recommendation_quality_report(current, k=k, news=news, reference_scored=reference)
    return DailyReport(newest, result, f"ndcg@{k}")


def history_row(
    report: DailyReport, run_id: str, html: str | None = None, json: str | None = None
) -> pl.DataFrame:
    """The report history row of one run: its verdict and value, or `skipped` and why."""
    if report.skipped:
        verdict, measure, value = "skipped", report.skipped, None
    else:
        verdict, measure, value = report.result.summary["verdict"], report.measure, report.value
    return pl.DataFrame(
        {
            "day": [report.day],
            "run_id": [run_id],
            "verdict": [verdict],
            "measure": [measure],
            "value": [value],
            "html": [html],
            "json": [json],
        },
        schema_overrides={"value": pl.Float64, "html": pl.Utf8, "json": pl.Utf8},
    )


def with_history(conn: Any, table: str, row: pl.DataFrame) -> pl.DataFrame:
    """The stored history of `table` ("schema.name") with `row` appended."""
    old = wh.read_table(conn, table)
    return row if old is None else pl.concat([old, row], how="vertical_relaxed")
