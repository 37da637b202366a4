"""Feature frames for drift reports, built from the canonical tables (dbt `stg_behaviors`,
`impressions`, `stg_news`), and the split into the current day and its reference window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import polars as pl

NO_CLICK = "(no click)"
"""`clicked_category` of a labeled impression without any click."""

INTERACTION_NUMERIC = [
    "history_length",
    "n_candidates",
    "n_clicks",
    "hour",
    "mean_candidate_text_length",
]
INTERACTION_CATEGORICAL = ["clicked_category", "candidate_top_category"]


def require_columns(frame: pl.DataFrame, columns: Iterable[str], table: str) -> None:
    """Raise ValueError naming the table and its missing columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} lacks columns {missing} (has {frame.columns})")


def _dominant(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Most frequent category per impression; ties go to the category shown first."""
    return (
        frame.group_by("impression_id", "category")
        .agg(n=pl.len(), first=pl.col("position").min())
        .sort(["impression_id", "n", "first"], descending=[False, True, False])
        .group_by("impression_id", maintain_order=True)
        .agg(pl.col("category").first().alias(name))
    )


def interaction_frame(
    behaviors: pl.DataFrame, impressions: pl.DataFrame, news: pl.DataFrame
) -> pl.DataFrame:
    """One row per impression with the features the interaction drift report compares.

    Columns: `impression_id`, `day` (for splitting, not compared), then `history_length`,
    `n_candidates`, `n_clicks`, `hour` (of `time`), `mean_candidate_text_length` (numeric) and
    `clicked_category` (most clicked category of the impression, ties to the earliest
    position; `"(no click)"` when nothing was clicked), `candidate_top_category` (most frequent
    candidate category, same tie rule) (categorical). Unlabeled impressions (MIND test split)
    get null `n_clicks` and `clicked_category`: unknown, not zero.

    Raises ValueError when a candidate's news id is missing from `news` or when behaviors and
    impressions do not describe the same impressions.
    """
    require_columns(
        behaviors,
        [
            "impression_id",
            "time",
            "day",
            "history_length",
            "n_candidates",
            "n_clicks",
            "is_labeled",
        ],
        "behaviors (stg_behaviors)",
    )
    require_columns(impressions, ["impression_id", "position", "news_id", "label"], "impressions")
    require_columns(news, ["news_id", "category", "text_length"], "news (stg_news)")

    candidates = impressions.select("impression_id", "position", "news_id", "label").join(
        news.select("news_id", "category", "text_length"), on="news_id", how="left"
    )
    unknown = candidates.filter(pl.col("category").is_null())
    if unknown.height:
        examples = unknown["news_id"].unique().head(5).to_list()
        raise ValueError(
            f"interaction_frame: {unknown.height} candidates have news ids missing from the news "
            f"table (e.g. {examples})"
        )
    per_impression = candidates.group_by("impression_id").agg(
        n_rows=pl.len(), mean_candidate_text_length=pl.col("text_length").mean()
    )
    clicked = _dominant(candidates.filter(pl.col("label") == 1), "clicked_category")
    top = _dominant(candidates, "candidate_top_category")
    aggregates = per_impression.join(clicked, on="impression_id", how="left").join(
        top, on="impression_id", how="left"
    )
    return finish_interaction_frame(behaviors, aggregates)


def finish_interaction_frame(behaviors: pl.DataFrame, aggregates: pl.DataFrame) -> pl.DataFrame:
    """`interaction_frame` from the behaviors and the per-impression aggregates of their
    candidate rows (`impression_id`, `n_rows`, `mean_candidate_text_length`,
    `clicked_category`, `candidate_top_category`: computed by `interaction_frame` in Polars,
    or in DuckDB by `monitoring.daily`, which never loads the candidate rows)."""
    base = behaviors.select(
        "impression_id",
        "day",
        "history_length",
        "n_candidates",
        "n_clicks",
        "is_labeled",
        hour=pl.col("time").dt.hour(),
    )
    frame = base.join(aggregates, on="impression_id", how="left")
    mismatched = frame.filter(
        pl.col("n_rows").is_null() | (pl.col("n_rows") != pl.col("n_candidates"))
    )
    orphans = aggregates.height - (frame.height - frame["n_rows"].null_count())
    if mismatched.height or orphans:
        raise ValueError(
            f"interaction_frame: behaviors and impressions disagree: {mismatched.height} "
            f"impressions whose candidate rows do not match n_candidates, {orphans} impression "
            "ids only in the impressions table"
        )
    labeled = pl.col("is_labeled")
    return frame.select(
        "impression_id",
        "day",
        pl.col("history_length").cast(pl.Float64),
        pl.col("n_candidates").cast(pl.Float64),
        pl.when(labeled).then(pl.col("n_clicks")).cast(pl.Float64).alias("n_clicks"),
        pl.col("hour").cast(pl.Float64),
        pl.col("mean_candidate_text_length").cast(pl.Float64),
        pl.when(labeled)
        .then(pl.col("clicked_category").fill_null(NO_CLICK))
        .alias("clicked_category"),
        "candidate_top_category",
    )


def current_and_reference(
    frame: pl.DataFrame,
    current_day: date | str | None = None,
    reference_days: int = 7,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a frame with a `day` column into the current day and the reference window.

    The current day defaults to the newest day; the reference is the `reference_days` days
    before it (`[current - reference_days, current - 1]`; days without rows simply contribute
    nothing). Raises ValueError when the current day or the window has no rows.
    """
    require_columns(frame, ["day"], "frame")
    if reference_days < 1:
        raise ValueError(f"reference_days must be >= 1, got {reference_days}")
    if frame.height == 0:
        raise ValueError("current_and_reference: the frame is empty")
    day = pl.col("day").cast(pl.Date)
    if current_day is None:
        current_day = frame.select(day.max()).item()
    elif isinstance(current_day, str):
        current_day = date.fromisoformat(current_day)
    start = current_day - timedelta(days=reference_days)
    current = frame.filter(day == current_day)
    reference = frame.filter((day >= start) & (day < current_day))
    if current.height == 0:
        raise ValueError(f"current_and_reference: no rows on the current day {current_day}")
    if reference.height == 0:
        raise ValueError(
            f"current_and_reference: no rows in the reference window {start} .. "
            f"{current_day - timedelta(days=1)} ({reference_days} days before {current_day})"
        )
    return current, reference


def click_interactions(impressions: pl.DataFrame) -> pl.DataFrame:
    """(user_id, news_id) of clicked candidates: the interactions that define item popularity
    for novelty and popularity bias."""
    require_columns(impressions, ["user_id", "news_id", "label"], "impressions")
    return impressions.filter(pl.col("label") == 1).select("user_id", "news_id")
