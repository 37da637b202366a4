"""Direct per-impression implementation of the MIND metrics, for cross-checking.

Written to be obviously correct rather than fast: one Python loop per impression, the formulas of
the official MIND evaluation script, and the same tie rule as `metrics` (equal scores keep their
input order). AUC counts candidate pairs explicitly (ties = 1/2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from genre_dagster.evaluation.metrics import DEFAULT_KS


def _dcg(gains_in_rank_order: list[float], k: int) -> float:
    return sum(
        (2**y - 1) / math.log2(rank + 1) for rank, y in enumerate(gains_in_rank_order[:k], 1)
    )


def reference_impression(
    labels: Sequence[int], scores: Sequence[float], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Metrics of one impression; NaN where undefined (single class for AUC, no click else)."""
    n = len(labels)
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    ranked = [labels[i] for i in order]
    n_pos = sum(labels)
    n_neg = n - n_pos
    out: dict[str, float] = {}

    if n_pos and n_neg:
        wins = 0.0
        for i in range(n):
            for j in range(n):
                if labels[i] == 1 and labels[j] == 0:
                    wins += 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0
        out["auc"] = wins / (n_pos * n_neg)
    else:
        out["auc"] = math.nan

    if n_pos == 0:
        out["mrr"] = math.nan
        for k in ks:
            out[f"ndcg@{k}"] = out[f"recall@{k}"] = out[f"hit@{k}"] = math.nan
        return out
    out["mrr"] = sum(y / rank for rank, y in enumerate(ranked, 1)) / n_pos
    ideal = sorted(labels, reverse=True)
    for k in ks:
        out[f"ndcg@{k}"] = _dcg(ranked, k) / _dcg(ideal, k)
        out[f"recall@{k}"] = sum(ranked[:k]) / n_pos
        out[f"hit@{k}"] = 1.0 if sum(ranked[:k]) > 0 else 0.0
    return out


def reference_evaluate(
    impression_index: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float | int]:
    """Average of `reference_impression` over impressions, with the same skip counts."""
    per_impression: dict[int, tuple[list[int], list[float]]] = {}
    for imp, y, s in zip(impression_index.tolist(), labels.tolist(), scores.tolist(), strict=True):
        ys, ss = per_impression.setdefault(imp, ([], []))
        ys.append(int(y))
        ss.append(float(s))
    rows = [reference_impression(ys, ss, ks) for ys, ss in per_impression.values()]
    out: dict[str, float | int] = {}
    for name in rows[0]:
        valid = [r[name] for r in rows if not math.isnan(r[name])]
        out[name] = sum(valid) / len(valid) if valid else math.nan
    out["n_impressions"] = len(rows)
    out["n_candidates"] = len(labels)
    out["n_auc_skipped"] = sum(math.isnan(r["auc"]) for r in rows)
    out["n_no_click_skipped"] = sum(math.isnan(r["mrr"]) for r in rows)
    return out
