"""Recommendation quality on a labeled day: ranking metrics at k and beyond-accuracy numbers.

Two sources, both in the summary:

- `metrics`: our numbers over ALL impressions. Accuracy on labeled impressions with at least
  one click: MIND-protocol AUC, MRR, nDCG@k, recall@k, hit@k (`genre_dagster.evaluation`) and
  precision@k = clicks in the top k / min(k, candidates). Beyond accuracy on all impressions
  (`beyond_accuracy`): personalization, intra-list category diversity, novelty, popularity
  (ARP), coverage, catalog coverage, Gini.
- `evidently`: Evidently 0.7's recsys metrics (PrecisionTopK, RecallTopK, MAP, NDCG, MRR,
  HitRate, ScoreDistribution, Personalization, PopularityBiasMetric, Novelty, Diversity) on a
  seeded sample of at most `max_impressions` labeled impressions, which is also what the HTML
  shows. Evidently's NDCG and Diversity loop over lists in Python (minutes on a MIND-size
  day), hence the sample. Its MRR is 1/rank of the first click (MIND averages over all
  clicks) and its Diversity divides summed distances by the list length.

Each impression is one ranked list (Evidently's "user"). Within an impression candidates are
ranked by score, ties by display position (Evidently averages tied ranks instead).
Verdict: with a reference day, relative drop of nDCG@k: >= `error_drop` -> error,
>= `warn_drop` -> warn; without one, `ok` (nothing to compare, said in `verdict_basis`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from genre_dagster.evaluation.metrics import evaluate
from genre_dagster.monitoring import beyond_accuracy as ba
from genre_dagster.monitoring.frames import require_columns
from genre_dagster.monitoring.reports import ReportResult, run_report, threshold_verdict
from genre_dagster.monitoring.summaries import single_value, top_k_value

SCORED_COLUMNS = ["impression_id", "news_id", "score", "label"]


def rank_candidates(scored: pl.DataFrame) -> pl.DataFrame:
    """Add `rank` (1 = highest score in its impression; ties by `position` when present, else
    by row order), sorted by impression and display order."""
    require_columns(scored, SCORED_COLUMNS, "scored candidates")
    scored = scored.with_columns(pl.col("score").cast(pl.Float64))
    if scored["score"].null_count() or scored["score"].is_nan().any():
        raise ValueError("scored candidates: scores contain null/NaN")
    order = "position" if "position" in scored.columns else "_row"
    frame = scored.with_row_index("_row").sort("impression_id", order)
    ranked = frame.with_row_index("_display").sort(
        ["impression_id", "score", "_display"], descending=[False, True, False]
    )
    ranked = ranked.with_columns(rank=pl.int_range(1, pl.len() + 1).over("impression_id"))
    return ranked.sort("_display").drop("_row", "_display")


def accuracy_metrics(ranked: pl.DataFrame, k: int) -> dict[str, float | int]:
    """MIND-protocol metrics at k plus precision@k over labeled impressions (see module doc)."""
    labeled = ranked.filter(pl.col("label").is_not_null().all().over("impression_id"))
    if labeled.height == 0:
        raise ValueError("recommendation quality needs labeled impressions; none has labels")
    index = labeled["impression_id"].rank("dense").to_numpy()
    labels = labeled["label"].to_numpy()
    metrics = evaluate(index, labels, labeled["score"].to_numpy(), ks=(k,))
    per = labeled.group_by("impression_id").agg(
        clicks=pl.col("label").sum(),
        hits=(pl.col("label") * (pl.col("rank") <= k)).sum(),
        size=pl.len(),
    )
    per = per.filter(pl.col("clicks") > 0)
    precision = per["hits"] / pl.Series(np.minimum(per["size"].to_numpy(), k))
    metrics[f"precision@{k}"] = float(precision.mean()) if per.height else float("nan")
    metrics["n_unlabeled_impressions"] = (
        ranked["impression_id"].n_unique() - labeled["impression_id"].n_unique()
    )
    return metrics


def quality_numbers(
    ranked: pl.DataFrame,
    k: int,
    news: pl.DataFrame | None,
    interactions: pl.DataFrame | None,
) -> dict[str, Any]:
    """Accuracy and beyond-accuracy numbers of ranked candidates (one day)."""
    out: dict[str, Any] = dict(accuracy_metrics(ranked, k))
    top = ba.top_k(ranked, k)
    out[f"personalization@{k}"] = ba.personalization(top, k)
    out[f"catalog_coverage@{k}"] = ba.catalog_coverage(top, ranked)
    out[f"gini@{k}"] = ba.gini(top)
    if news is not None:
        lists, categories = ba.category_lists(_with_category(top, news))
        out[f"intra_list_diversity@{k}"] = ba.intra_list_diversity(lists, categories)
    if interactions is not None:
        out.update(ba.popularity_numbers(top, interactions, k))
    return out


def _with_category(frame: pl.DataFrame, news: pl.DataFrame) -> pl.DataFrame:
    require_columns(news, ["news_id", "category"], "news")
    joined = frame.join(news.select("news_id", "category"), on="news_id", how="left")
    missing = joined.filter(pl.col("category").is_null())
    if missing.height:
        raise ValueError(
            f"{missing.height} rows have news ids without a category in `news` "
            f"(e.g. {missing['news_id'].head(3).to_list()})"
        )
    return joined


def _evidently_frame(ranked: pl.DataFrame, categories: list[str], news: Any) -> Any:
    # Evidently ranks tied scores by their average rank, so a list of more than 2k equal scores
    # (a constant model, an empty history) has no top-k at all and its Diversity divides by zero.
    # Ties are broken here as in our numbers (by `rank`, i.e. display position), by an offset of
    # 1e-9 of the score's magnitude per tied place: the order changes, the values barely do.
    tied_place = pl.col("rank") - pl.col("rank").min().over("impression_id", "score")
    offset = tied_place * 1e-9 * pl.max_horizontal(pl.col("score").abs(), pl.lit(1.0))
    frame = ranked.select(
        user_id="impression_id", news_id="news_id", score=pl.col("score") - offset, label="label"
    )
    if news is not None:
        frame = _one_hot(frame, news, categories)
    return frame.to_pandas()


def _one_hot(frame: pl.DataFrame, news: pl.DataFrame, categories: list[str]) -> pl.DataFrame:
    frame = _with_category(frame, news)
    return frame.with_columns(
        [
            (pl.col("category") == c).cast(pl.Float64).alias(f"cat_{i}")
            for i, c in enumerate(categories)
        ]
    ).drop("category")


def _sample_labeled(ranked: pl.DataFrame, max_impressions: int, seed: int) -> pl.DataFrame:
    labeled = ranked.filter(pl.col("label").is_not_null().all().over("impression_id"))
    ids = labeled["impression_id"].unique().sort()
    if ids.len() > max_impressions:
        ids = ids.sample(max_impressions, seed=seed)
    return labeled.filter(pl.col("impression_id").is_in(ids.implode()))


def _evidently_snapshot(
    current: pl.DataFrame,
    reference: pl.DataFrame | None,
    k: int,
    news: pl.DataFrame | None,
    interactions: pl.DataFrame | None,
) -> tuple[Any, list[str]]:
    from evidently import DataDefinition, Recsys
    from evidently.metrics import (
        MAP,
        MRR,
        NDCG,
        Diversity,
        HitRate,
        Novelty,
        Personalization,
        PopularityBiasMetric,
        PrecisionTopK,
        RecallTopK,
        ScoreDistribution,
    )

    categories = [] if news is None else sorted(news["category"].unique().to_list())
    features = [f"cat_{i}" for i in range(len(categories))]
    ranking = Recsys(user_id="user_id", item_id="news_id", target="label", prediction="score")
    definition = DataDefinition(
        numerical_columns=["score", "label", *features],
        categorical_columns=["user_id", "news_id"],
        ranking=[ranking],
    )
    metrics: list[Any] = [
        cls(k=k) for cls in (PrecisionTopK, RecallTopK, MAP, NDCG, MRR, HitRate)
    ] + [ScoreDistribution(k=k), Personalization(k=k)]
    additional = None
    if interactions is not None:
        metrics += [PopularityBiasMetric(k=k, metric=m) for m in ("arp", "coverage", "gini")]
        metrics.append(Novelty(k=k))
        train = interactions.select("user_id", "news_id")
        if news is not None:
            train = _one_hot(train, news, categories)
        train_definition = DataDefinition(
            numerical_columns=features, categorical_columns=["user_id", "news_id"]
        )
        additional = {"current_train_data": (train.to_pandas(), train_definition)}
    if news is not None:
        metrics.append(Diversity(k=k, item_features=features))
    snapshot = run_report(
        metrics,
        _evidently_frame(current, categories, news),
        None if reference is None else _evidently_frame(reference, categories, news),
        definition,
        include_tests=False,
        additional=additional,
    )
    return snapshot, [type(m).__name__ for m in metrics]


def _evidently_numbers(snapshot: Any, k: int, has_train: bool, has_news: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"precision@{k}": top_k_value(snapshot, "PrecisionTopK", k),
        f"recall@{k}": top_k_value(snapshot, "RecallTopK", k),
        f"map@{k}": top_k_value(snapshot, "MAP", k),
        f"ndcg@{k}": top_k_value(snapshot, "NDCG", k),
        f"mrr_first_click@{k}": top_k_value(snapshot, "MRR", k),
        f"hit_rate@{k}": top_k_value(snapshot, "HitRate", k),
        f"score_entropy@{k}": float(single_value(snapshot, "ScoreDistribution", k=k)),
        f"personalization@{k}": float(single_value(snapshot, "Personalization", k=k)),
    }
    if has_train:
        for name in ("arp", "coverage", "gini"):
            value = single_value(snapshot, "PopularityBiasMetric", k=k, metric=name)
            out[f"popularity_{name}@{k}"] = float(value)
        out[f"novelty@{k}"] = float(single_value(snapshot, "Novelty", k=k))
    if has_news:
        out[f"diversity@{k}"] = float(single_value(snapshot, "Diversity", k=k))
    return out


def recommendation_quality_report(
    scored: pl.DataFrame,
    *,
    k: int = 10,
    news: pl.DataFrame | None = None,
    interactions: pl.DataFrame | None = None,
    reference_scored: pl.DataFrame | None = None,
    max_impressions: int = 1000,
    warn_drop: float = 0.1,
    error_drop: float = 0.25,
    seed: int = 0,
) -> ReportResult:
    """Quality of one day's rankings.

    Args:
        scored: one row per shown candidate: `impression_id`, `news_id`, `score`, `label`
            (1/0, null when unlabeled), optionally `position` (display order, for ties).
        k: cut-off of every top-k metric.
        news: `news_id`, `category` of every candidate (and interacted item): enables
            diversity.
        interactions: `user_id`, `news_id` pairs defining item popularity (e.g. the reference
            window's clicks, `click_interactions`): enables novelty and popularity bias.
        reference_scored: an earlier labeled day in the same layout, for comparison/verdict.
        max_impressions: labeled impressions per day given to Evidently (seeded sample).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked = rank_candidates(scored)
    reference = None if reference_scored is None else rank_candidates(reference_scored)
    numbers = quality_numbers(ranked, k, news, interactions)
    reference_numbers = (
        None if reference is None else quality_numbers(reference, k, news, interactions)
    )
    current_sample = _sample_labeled(ranked, max_impressions, seed)
    reference_sample = (
        None if reference is None else _sample_labeled(reference, max_impressions, seed)
    )
    snapshot, evidently_metrics = _evidently_snapshot(
        current_sample, reference_sample, k, news, interactions
    )
    key = f"ndcg@{k}"
    if reference_numbers is None:
        verdict, basis, drop = "ok", "no reference day: nothing to compare", None
    else:
        drop = 1.0 - numbers[key] / reference_numbers[key] if reference_numbers[key] else 0.0
        verdict = threshold_verdict(drop, warn_drop, error_drop)
        basis = f"relative drop of {key} against the reference day"
    summary = {
        "report": "recommendation_quality",
        "verdict": verdict,
        "verdict_basis": basis,
        "method": "MIND-protocol metrics + own beyond-accuracy numbers (all impressions); "
        "Evidently recsys metrics on a sample",
        "headline": {"name": key, "value": numbers[key]},
        "k": k,
        "metrics": numbers,
        "reference_metrics": reference_numbers,
        f"relative_drop_{key}": drop,
        "thresholds": {"warn_drop": warn_drop, "error_drop": error_drop},
        "evidently": _evidently_numbers(snapshot, k, interactions is not None, news is not None),
        "evidently_metrics": evidently_metrics,
        "evidently_sample_impressions": current_sample["impression_id"].n_unique(),
        "n_impressions": ranked["impression_id"].n_unique(),
        "n_candidates": ranked.height,
    }
    return ReportResult("recommendation_quality", {"Recommendation quality": snapshot}, summary)
