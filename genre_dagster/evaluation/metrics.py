"""MIND-protocol ranking metrics, computed per impression and then averaged.

Definitions follow the official MIND evaluation script:

- AUC: `sklearn.metrics.roc_auc_score` of the impression (tied scores count 1/2).
- MRR: sum_i y_i / rank_i / sum(y), candidates sorted by score descending.
- nDCG@k: dcg@k(y, score) / dcg@k(y, y), dcg@k = sum over the top k of (2^y - 1)/log2(rank + 1).
- recall@k: clicked candidates in the top k / clicked candidates.
- hit@k: 1 if any clicked candidate is in the top k, else 0.

Undefined values are skipped, never silently: impressions whose candidates are all clicked or all
unclicked have no AUC (`n_auc_skipped`), impressions without a click have no MRR/nDCG/recall/hit
(`n_no_click_skipped`).

Ties: for MRR, nDCG, recall and hit, candidates with equal scores are ordered by their position in
the input arrays (earlier first), i.e. by the position shown when the arrays are in display order.
That is exactly the ranking `write_mind_prediction_file` writes, so these values equal what the
official scorer computes from our prediction file. AUC uses the raw scores (ties = 1/2); it equals
the official scorer's AUC whenever an impression has no tied scores.

The main path is vectorized: one sort by (impression, -score, input order), then segment sums with
`np.bincount` (about a second for 150k impressions x 30 candidates on one core).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from genre_dagster.arrays import ImpressionData
from genre_dagster.evaluation.grouping import dense_index, order_by_group_desc_score

DEFAULT_KS: tuple[int, ...] = (5, 10)


@dataclass(frozen=True)
class ImpressionMetrics:
    """Metric values per impression (NaN where undefined).

    Attributes:
        impression_keys: the distinct impression index values, ascending; row j describes
            impression `impression_keys[j]`.
        n_candidates: candidates per impression.
        n_clicks: clicked candidates per impression.
        values: metric name ("auc", "mrr", "ndcg@5", "recall@5", "hit@5", ...) -> float64 array.
    """

    impression_keys: np.ndarray
    n_candidates: np.ndarray
    n_clicks: np.ndarray
    values: dict[str, np.ndarray]

    @property
    def n_impressions(self) -> int:
        return len(self.impression_keys)


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Names of the averaged metrics, in report order."""
    ks = _check_ks(ks)
    names = ["auc", "mrr"]
    names += [f"ndcg@{k}" for k in ks]
    names += [f"recall@{k}" for k in ks]
    names += [f"hit@{k}" for k in ks]
    return names


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return ks


def _validate(
    impression_index: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    imp = np.asarray(impression_index)
    y = np.asarray(labels)
    s = np.asarray(scores)
    if imp.ndim != 1 or y.ndim != 1 or s.ndim != 1:
        raise ValueError("impression_index, labels and scores must be 1-d arrays")
    if not (len(imp) == len(y) == len(s)):
        raise ValueError(
            f"length mismatch: impression_index {len(imp)}, labels {len(y)}, scores {len(s)}"
        )
    if len(imp) == 0:
        raise ValueError("no candidates to evaluate")
    if not np.issubdtype(imp.dtype, np.integer):
        raise ValueError(f"impression_index must be integers, got dtype {imp.dtype}")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if len(bad):
        raise ValueError(
            f"labels must be 0 or 1 (unlabeled candidates cannot be evaluated); "
            f"candidate {bad[0]} has label {y[bad[0]].item()} ({len(bad)} such candidates)"
        )
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    nan = np.flatnonzero(np.isnan(s))
    if len(nan):
        raise ValueError(f"scores contain NaN: candidate {nan[0]} ({len(nan)} NaN scores)")
    return imp, y.astype(np.float64), s


def impression_metrics(
    impression_index: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
) -> ImpressionMetrics:
    """Per-impression metrics from flat arrays (one entry per candidate).

    Args:
        impression_index: integer impression key of every candidate (any integers; need not be
            contiguous or sorted).
        labels: 1 clicked, 0 not (other values raise ValueError).
        scores: higher = ranked higher; NaN raises ValueError.
        ks: cut-offs for nDCG, recall and hit.
    """
    ks = _check_ks(ks)
    imp, y, s = _validate(impression_index, labels, scores)
    keys, group = dense_index(imp)
    n_groups = len(keys)

    order = order_by_group_desc_score(group, s)
    g = group[order]
    ys = y[order]
    ss = s[order]

    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank0 = np.arange(len(g)) - starts[g]  # 0-based rank within the impression

    clicks = np.bincount(g, weights=ys, minlength=n_groups)
    negatives = counts - clicks
    values: dict[str, np.ndarray] = {}

    # AUC via the rank-sum (Mann-Whitney) form with average ranks over tied scores.
    new_block = np.empty(len(g), dtype=bool)
    new_block[0] = True
    new_block[1:] = (g[1:] != g[:-1]) | (ss[1:] != ss[:-1])
    block = np.cumsum(new_block) - 1
    mean_rank0 = np.bincount(block, weights=rank0) / np.bincount(block)
    ascending_rank = counts[g] - mean_rank0[block]  # 1-based, lowest score = 1
    positive_rank_sum = np.bincount(g, weights=ys * ascending_rank, minlength=n_groups)
    has_auc = (clicks > 0) & (negatives > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (positive_rank_sum - clicks * (clicks + 1) / 2) / (clicks * negatives)
    values["auc"] = np.where(has_auc, auc, np.nan)

    has_click = clicks > 0
    safe_clicks = np.where(has_click, clicks, 1.0)
    rr = np.bincount(g, weights=ys / (rank0 + 1), minlength=n_groups)
    values["mrr"] = np.where(has_click, rr / safe_clicks, np.nan)

    discount = 1.0 / np.log2(rank0 + 2.0)
    max_k = max(ks)
    ideal_cumulative = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(max_k) + 2.0))))
    for k in ks:
        top = rank0 < k
        dcg = np.bincount(g, weights=ys * top * discount, minlength=n_groups)
        idcg = ideal_cumulative[np.minimum(clicks, k).astype(np.int64)]
        values[f"ndcg@{k}"] = np.where(has_click, dcg / np.where(has_click, idcg, 1.0), np.nan)
    for k in ks:
        hits = np.bincount(g, weights=ys * (rank0 < k), minlength=n_groups)
        values[f"recall@{k}"] = np.where(has_click, hits / safe_clicks, np.nan)
        values[f"hit@{k}"] = np.where(has_click, (hits > 0).astype(np.float64), np.nan)

    return ImpressionMetrics(
        impression_keys=keys,
        n_candidates=counts,
        n_clicks=clicks.astype(np.int64),
        values=values,
    )


def summarize(per: ImpressionMetrics, mask: np.ndarray | None = None) -> dict[str, float | int]:
    """Average per-impression metrics over impressions (optionally only where `mask` is True).

    Returns the metric means (NaN when no impression qualifies) plus counts: `n_impressions`,
    `n_candidates`, `n_auc_skipped` (single label class), `n_no_click_skipped`.
    """
    if mask is None:
        mask = np.ones(per.n_impressions, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (per.n_impressions,):
        raise ValueError(
            f"mask must be a boolean array over the {per.n_impressions} impressions, "
            f"got dtype {mask.dtype} shape {mask.shape}"
        )
    out: dict[str, float | int] = {}
    for name, arr in per.values.items():
        selected = arr[mask]
        valid = selected[~np.isnan(selected)]
        out[name] = float(valid.mean()) if len(valid) else float("nan")
    out["n_impressions"] = int(mask.sum())
    out["n_candidates"] = int(per.n_candidates[mask].sum())
    out["n_auc_skipped"] = int(np.isnan(per.values["auc"][mask]).sum())
    out["n_no_click_skipped"] = int((per.n_clicks[mask] == 0).sum())
    return out


def evaluate(
    impression_index: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float | int]:
    """MIND metrics averaged over impressions, from flat per-candidate arrays."""
    return summarize(impression_metrics(impression_index, labels, scores, ks))


def evaluate_groups(
    impression_index: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    groups: Mapping[str, np.ndarray],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float | int]]:
    """Metrics for all impressions ("all") and for each named impression mask (e.g. warm/cold).

    Masks are boolean arrays over the distinct impression keys in ascending order (for
    `ImpressionData`, simply over its impressions 0..n-1).
    """
    per = impression_metrics(impression_index, labels, scores, ks)
    if "all" in groups:
        raise ValueError('group name "all" is reserved for the whole set')
    result = {"all": summarize(per)}
    for name, mask in groups.items():
        result[name] = summarize(per, mask)
    return result


def _impression_arrays(data: ImpressionData, scores: np.ndarray) -> np.ndarray:
    empty = np.flatnonzero(np.diff(data.cand_offsets) == 0)
    if len(empty):
        raise ValueError(
            f"impression {data.impression_ids[empty[0]]!r} has no candidates "
            f"({len(empty)} empty impressions)"
        )
    if len(scores) != len(data.cand_items):
        raise ValueError(f"got {len(scores)} scores for {len(data.cand_items)} candidates")
    return data.candidate_impression


def evaluate_impressions(
    data: ImpressionData, scores: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float | int]:
    """MIND metrics of `scores` (aligned with data.cand_items) on labeled impressions."""
    return evaluate(_impression_arrays(data, scores), data.labels, scores, ks)


def impression_metrics_for(
    data: ImpressionData, scores: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> ImpressionMetrics:
    """Per-impression metrics of `scores` (aligned with data.cand_items); row j = impression j."""
    return impression_metrics(_impression_arrays(data, scores), data.labels, scores, ks)


def evaluate_impression_groups(
    data: ImpressionData,
    scores: np.ndarray,
    groups: Mapping[str, np.ndarray],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float | int]]:
    """Like `evaluate_groups`, masks over data's impressions (e.g. {"warm": m, "cold": ~m})."""
    return evaluate_groups(_impression_arrays(data, scores), data.labels, scores, groups, ks)
