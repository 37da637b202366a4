"""Beyond-accuracy numbers of top-k lists, vectorized over all impressions.

Every impression is one ranked list. Definitions follow Evidently 0.7's recsys metrics so both
agree wherever Evidently's assumptions hold (every list has k items); where Evidently is
ambiguous we say what we do:

- personalization@k: 1 - mean over pairs of distinct lists of |overlap| / k.
- intra_list_diversity@k: mean over lists (>= 2 items) of the share of item pairs whose
  categories differ (Evidently's `Diversity` instead sums cosine distances of item features
  and divides by the list length, not the pair count).
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


def intra_list_diversity(top: pl.DataFrame) -> float:
    """Mean share of item pairs with different categories per list (lists with >= 2 items)."""
    per_list = (
        top.group_by("impression_id", "category")
        .len()
        .group_by("impression_id")
        .agg(size=pl.col("len").sum(), same=(pl.col("len") * (pl.col("len") - 1)).sum())
        .filter(pl.col("size") >= 2)
    )
    if per_list.height == 0:
        return float("nan")
    pairs = per_list["size"] * (per_list["size"] - 1)
    return float((1.0 - per_list["same"] / pairs).mean())


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
