"""Interaction drift and prediction drift: Evidently's `DataDriftPreset` on our frames.

Per-column tests: by default normed Wasserstein distance (numeric: the shift in units of the
reference's standard deviation) and Jensen-Shannon distance (categorical), drift when >= 0.2.
Evidently's own default picks these distances with threshold 0.1 above 1,000 reference rows
and p-value tests (KS, chi-squared) below; on the demo world threshold 0.1 flagged up to 3 of
7 columns on ordinary days (noise reaches 0.11), while the shift day scores 0.42-0.89, so 0.2
separates them. Pass `num_method=None, cat_method=None, stat_threshold=None` for Evidently's
defaults. The method and threshold of each column are in the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from genre_dagster.monitoring.frames import (
    INTERACTION_CATEGORICAL,
    INTERACTION_NUMERIC,
    require_columns,
)
from genre_dagster.monitoring.reports import ReportResult, run_report, threshold_verdict
from genre_dagster.monitoring.summaries import drift_summary

DRIFT_METHOD = "Evidently DataDriftPreset"
NUM_METHOD = "wasserstein"
CAT_METHOD = "jensenshannon"
STAT_THRESHOLD = 0.2


def _usable_columns(
    current: pl.DataFrame, reference: pl.DataFrame, columns: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    usable, skipped = [], {}
    for column in columns:
        if current[column].null_count() == current.height:
            skipped[column] = "no values on the current day"
        elif reference[column].null_count() == reference.height:
            skipped[column] = "no values in the reference window"
        elif pl.concat([current[column], reference[column]]).drop_nulls().n_unique() == 1:
            # zero variance (every item in one category, say): nothing can drift, and
            # Evidently's correlations would divide by zero
            skipped[column] = "one single value on both sides"
        else:
            usable.append(column)
    return usable, skipped


def _drift_snapshot(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    drift_share: float,
    tests: dict[str, Any],
) -> object:
    from evidently import DataDefinition
    from evidently.presets import DataDriftPreset

    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    return run_report(
        [DataDriftPreset(columns=columns, drift_share=drift_share, **tests)],
        current.select(columns).to_pandas(),
        reference.select(columns).to_pandas(),
        definition,
    )


def interaction_drift_report(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    *,
    numeric: Sequence[str] = INTERACTION_NUMERIC,
    categorical: Sequence[str] = INTERACTION_CATEGORICAL,
    warn_share: float = 0.25,
    drift_share: float = 0.5,
    num_method: str | None = NUM_METHOD,
    cat_method: str | None = CAT_METHOD,
    stat_threshold: float | None = STAT_THRESHOLD,
) -> ReportResult:
    """Drift of the interaction features (`interaction_frame` rows) of the current day against
    the reference window.

    Verdict: `threshold_verdict(drift share, warn_share, drift_share)`; `dataset_drift` is
    Evidently's (share of drifted columns >= `drift_share`). Columns without any value on one
    side (e.g. clicks on an unlabeled day) are left out and listed in `skipped_columns`.
    """
    require_columns(current, [*numeric, *categorical], "current interaction frame")
    require_columns(reference, [*numeric, *categorical], "reference interaction frame")
    if current.height == 0 or reference.height == 0:
        raise ValueError(
            f"interaction_drift_report: need rows on both sides (current {current.height}, "
            f"reference {reference.height})"
        )
    num, skipped_num = _usable_columns(current, reference, numeric)
    cat, skipped_cat = _usable_columns(current, reference, categorical)
    if not num and not cat:
        raise ValueError(
            f"interaction_drift_report: no comparable column ({skipped_num | skipped_cat})"
        )
    tests = _tests(num_method, cat_method, stat_threshold)
    snapshot = _drift_snapshot(current, reference, num, cat, drift_share, tests)
    summary = drift_summary(snapshot)
    summary.update(
        report="interaction_drift",
        verdict=threshold_verdict(summary["drift_share"], warn_share, drift_share),
        method=DRIFT_METHOD,
        headline={"name": "drift share", "value": summary["drift_share"]},
        thresholds={
            "warn_share": warn_share,
            "drift_share": drift_share,
            "column_statistic": stat_threshold,
        },
        n_current=current.height,
        n_reference=reference.height,
        skipped_columns=skipped_num | skipped_cat,
    )
    return ReportResult("interaction_drift", {"Interaction features": snapshot}, summary)


def _tests(
    num_method: str | None, cat_method: str | None, stat_threshold: float | None
) -> dict[str, Any]:
    """DataDriftPreset keyword arguments; None leaves the choice to Evidently."""
    tests = {"num_method": num_method, "cat_method": cat_method, "threshold": stat_threshold}
    return {k: v for k, v in tests.items() if v is not None}


def _as_array(values: object, name: str, dtype: type) -> np.ndarray:
    array = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if dtype is float:
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains {int((~np.isfinite(array)).sum())} NaN/inf values")
    elif any(v is None for v in array.tolist()):
        raise ValueError(f"{name} contains missing categories")
    return array


def _shares(values: np.ndarray) -> dict[str, float]:
    names, counts = np.unique(values.astype(str), return_counts=True)
    return {str(n): float(c / counts.sum()) for n, c in zip(names, counts, strict=True)}


def prediction_drift_report(
    current_scores: Sequence[float] | np.ndarray | pl.Series,
    reference_scores: Sequence[float] | np.ndarray | pl.Series,
    current_topk_categories: Sequence[str] | np.ndarray | pl.Series,
    reference_topk_categories: Sequence[str] | np.ndarray | pl.Series,
    *,
    warn_share: float = 0.5,
    error_share: float = 1.0,
    num_method: str | None = NUM_METHOD,
    cat_method: str | None = CAT_METHOD,
    stat_threshold: float | None = STAT_THRESHOLD,
) -> ReportResult:
    """Drift of the model's outputs: the distribution of candidate scores and the category mix
    of the top-K recommendations (one category per recommended slot).

    Two Evidently sections (the two inputs have different lengths). `drift_share` is the share
    of the two that drifted; verdict `threshold_verdict(drift_share, warn_share, error_share)`
    (defaults: one drifted -> warn, both -> error). The summary also carries score quantiles
    and category shares on both sides.
    """
    cur_s = _as_array(current_scores, "current_scores", float)
    ref_s = _as_array(reference_scores, "reference_scores", float)
    cur_c = _as_array(current_topk_categories, "current_topk_categories", str)
    ref_c = _as_array(reference_topk_categories, "reference_topk_categories", str)

    tests = _tests(num_method, cat_method, stat_threshold)
    score_snapshot = _drift_snapshot(
        pl.DataFrame({"score": cur_s}), pl.DataFrame({"score": ref_s}), ["score"], [], 0.5, tests
    )
    sections = {"Score distribution": score_snapshot}
    columns = drift_summary(score_snapshot)["columns"]
    skipped = {}
    if len(set(cur_c) | set(ref_c)) > 1:
        category_snapshot = _drift_snapshot(
            pl.DataFrame({"topk_category": cur_c.astype(str)}),
            pl.DataFrame({"topk_category": ref_c.astype(str)}),
            [],
            ["topk_category"],
            0.5,
            tests,
        )
        sections["Top-K category mix"] = category_snapshot
        columns = columns | drift_summary(category_snapshot)["columns"]
    else:  # a one-category catalogue: the mix cannot drift (and has no variance to test)
        skipped["topk_category"] = "one single value on both sides"
    drifted = sorted(c for c, info in columns.items() if info["drifted"])
    share = len(drifted) / len(columns)
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
    cur_shares, ref_shares = _shares(cur_c), _shares(ref_c)
    changes = {
        c: cur_shares.get(c, 0.0) - ref_shares.get(c, 0.0)
        for c in set(cur_shares) | set(ref_shares)
    }
    largest = max(changes.items(), key=lambda kv: (abs(kv[1]), kv[0]))
    summary = {
        "report": "prediction_drift",
        "verdict": threshold_verdict(share, warn_share, error_share),
        "method": DRIFT_METHOD,
        "headline": {"name": "drift share", "value": share},
        "drift_share": share,
        "n_drifted": len(drifted),
        "n_columns": len(columns),
        "drifted_columns": drifted,
        "dataset_drift": share >= error_share,
        "thresholds": {
            "warn_share": warn_share,
            "error_share": error_share,
            "column_statistic": stat_threshold,
        },
        "columns": columns,
        "n_current_scores": len(cur_s),
        "n_reference_scores": len(ref_s),
        "n_current_topk": len(cur_c),
        "n_reference_topk": len(ref_c),
        "score_quantiles": {
            "q": quantiles,
            "current": np.quantile(cur_s, quantiles),
            "reference": np.quantile(ref_s, quantiles),
        },
        "topk_category_share": {"current": cur_shares, "reference": ref_shares},
        "largest_share_change": {"category": largest[0], "change": largest[1]},
        "skipped_columns": skipped,
    }
    return ReportResult("prediction_drift", sections, summary)
