"""Beyond-accuracy numbers of top-k lists, vectorized over all impressions.

Every impression is one ranked list. Definitions follow Evidently 0.7's recsys metrics so both
agree wherever Evidently's assumptions hold (every list has k items); where Evidently is
ambiguous we say what we do:

- personalization@k: 1 - mean over pairs of distinct lists of |overlap| / k.
- intra_list_diversity@k: mean over lists (>= 2 items) of the mean pairwise cosine distance
  of their items' vectors; reported over one-hot category vectors, where it is the share of
  item pairs whose categories differ (Evidently's `Diversity` instead sums cosine distances of
  item features and divides by the list length, not the pair count). Steering measures MMR
  with the same function over item embeddings.
- novelty@k: mean over lists of the mean self-information -log2(p_i) of their items, p_i = share
  of interaction users who interacted with item i; items without interactions are left out
  (as in Evidently) and counted in `unseen_topk_share`.
- popularity_arp@k: mean over lists of the mean number of users who interacted with the items
  (same exclusion); coverage@k: share of interacted items that appear in some list;
  catalog_coverage@k: share of candidate items that appear in some list.
- gini@k: Gini coefficient of how often each recommended item is recommended.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def top_k(ranked: pl.DataFrame, k: int) -> pl.DataFrame:
    """Rows of `ranked` (with `rank`, 1 = best) in the top k of their impression."""
    return ranked.filter(pl.col("rank") <= k)


def personalization(top: pl.DataFrame, k: int) -> float:
    """1 - mean pairwise overlap / k of the impressions' top-k lists (NaN with < 2 lists)."""
    n = top["impression_id"].n_unique()
    if n < 2:
        return float("nan")
    counts = top.group_by("news_id").len()["len"].to_numpy().astype(np.float64)
    shared_ordered_pairs = float((counts**2).sum()) - top.height
    return 1.0 - shared_ordered_pairs / (k * n * (n - 1))


def intra_list_diversity(lists: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean over lists (>= 2 items) of the mean pairwise cosine distance of their items.

    `lists` [n_lists, k] index the rows of `item_vectors` (-1 pads shorter lists); NaN when no
    list has two items. Over one-hot category vectors (`category_lists`) this is the share of
    item pairs whose categories differ.
    """
    lists = np.asarray(lists, dtype=np.int64)
    if lists.ndim != 2:
        raise ValueError(f"intra_list_diversity: lists must be [n_lists, k], got {lists.shape}")
    vectors = np.asarray(item_vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    unit = np.vstack([unit, np.zeros((1, unit.shape[1]))])  # padding (-1) picks this zero row
    size = (lists >= 0).sum(axis=1)
    pair_similarity = np.zeros(len(lists))
    chunk = max(1, 2**22 // max(1, lists.shape[1] * unit.shape[1]))
    for start in range(0, len(lists), chunk):
        picked = unit[lists[start : start + chunk]]
        # sum of cos(i, j) over ordered pairs i != j: |sum of the unit vectors|^2 minus each
        # vector's own |u|^2 (0 for an all-zero vector, which is 0-similar to everything)
        total = picked.sum(axis=1)
        own = np.einsum("lkd,lkd->l", picked, picked)
        pair_similarity[start : start + chunk] = np.einsum("ld,ld->l", total, total) - own
    keep = size >= 2
    if not keep.any():
        return float("nan")
    pairs = size[keep] * (size[keep] - 1)
    return float(np.mean(1.0 - pair_similarity[keep] / pairs))


def category_lists(top: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each impression's top-k as category codes [n_lists, longest list] (-1 pads) and one
    one-hot vector per category: `intra_list_diversity` over categories."""
    if top.height == 0:
        return np.empty((0, 0), dtype=np.int64), np.empty((0, 0))
    index = top.select(
        row=pl.col("impression_id").rank("dense").cast(pl.Int64) - 1,
        position=pl.int_range(pl.len()).over("impression_id"),
        code=pl.col("category").cast(pl.Categorical).to_physical().rank("dense").cast(pl.Int64) - 1,
    )
    row, position, code = (index[name].to_numpy() for name in ("row", "position", "code"))
    lists = np.full((row.max() + 1, position.max() + 1), -1, dtype=np.int64)
    lists[row, position] = code
    return lists, np.eye(code.max() + 1)


def catalog_coverage(top: pl.DataFrame, candidates: pl.DataFrame) -> float:
    """Share of the distinct candidate items that appear in some top-k list."""
    return top["news_id"].n_unique() / candidates["news_id"].n_unique()


def popularity_numbers(top: pl.DataFrame, interactions: pl.DataFrame, k: int) -> dict[str, float]:
    """Novelty, ARP, coverage and the share of top-k slots without any interaction."""
    users = interactions["user_id"].n_unique()
    if users == 0:
        raise ValueError("popularity_numbers: the interactions table is empty")
    popularity = (
        interactions.unique(["user_id", "news_id"])
        .group_by("news_id")
        .agg(pop=pl.len().cast(pl.Float64))
    )
    slots = top.join(popularity, on="news_id", how="left")
    known = slots.filter(pl.col("pop").is_not_null())
    per_list = known.group_by("impression_id").agg(
        novelty=(-(pl.col("pop") / users).log(2)).mean(), arp=pl.col("pop").mean()
    )
    recommended = top["news_id"].unique()
    return {
        f"novelty@{k}": float(per_list["novelty"].mean()) if per_list.height else float("nan"),
        f"popularity_arp@{k}": float(per_list["arp"].mean()) if per_list.height else float("nan"),
        f"coverage@{k}": float(popularity["news_id"].is_in(recommended.implode()).mean()),
        f"unseen_topk_share@{k}": 1.0 - known.height / slots.height,
    }


def gini(top: pl.DataFrame) -> float:
    """Gini coefficient of recommendation counts per recommended item (0 = even)."""
    counts = np.sort(top.group_by("news_id").len()["len"].to_numpy().astype(np.float64))
    n = len(counts)
    if n < 2:
        return float("nan")
    index = np.arange(1, n + 1)
    return float(((2 * index - n - 1) * counts).sum() / ((n - 1) * counts.sum()))
