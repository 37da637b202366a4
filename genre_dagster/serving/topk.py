"""Top-K recommendation lists over a candidate pool, with a short explanation per item.

All users x pool are scored in chunks with the scorer's batched `score_pool`; items already in a
user's history and synthetic items are excluded before ranking. Each recommendation is
explained by whichever signal drove it most: the most similar history item, a matching profile
topic, or popularity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genre_dagster.arrays import PAD, ItemFeatures

if TYPE_CHECKING:
    import polars as pl

SIMILAR_THRESHOLD = 0.5  # cosine above which "you read something like this" is the explanation
EXPLANATION_KINDS = ("similar_history", "profile_topic", "popularity", "freshness")


@dataclass
class TopK:
    """Flat top-K results: row r is user `user_rows[r]`, rank `ranks[r]` (1-based)."""

    user_rows: np.ndarray
    ranks: np.ndarray
    items: np.ndarray
    scores: np.ndarray


def top_k(
    score_pool: Callable[[slice, np.ndarray], np.ndarray],
    history: np.ndarray,
    pool: np.ndarray,
    k: int,
    items: ItemFeatures,
    chunk_users: int = 2048,
) -> TopK:
    """Rank `pool` (item indices) for every user row of `history`; seen/synthetic excluded.

    `score_pool(rows, pool)` scores the users `history[rows]` against `pool`, [n_rows, n_pool].
    """
    if items.is_synthetic is not None:
        pool = pool[~items.is_synthetic[pool]]
    if len(pool) == 0:
        raise ValueError("the candidate pool is empty (after removing synthetic items)")
    k = min(k, len(pool))
    position = np.full(items.n_items, -1, dtype=np.int64)
    position[pool] = np.arange(len(pool))
    out_users, out_ranks, out_items, out_scores = [], [], [], []
    for start in range(0, len(history), chunk_users):
        block = history[start : start + chunk_users]
        rows_slice = slice(start, start + len(block))
        scores = own_scores(score_pool(rows_slice, pool))
        if scores.shape != (len(block), len(pool)):
            raise ValueError(
                f"score_pool returned {scores.shape}, expected {(len(block), len(pool))}"
            )
        # exclude items the user has already seen (they are in the pool only if recent)
        rows, cols = np.nonzero(block != PAD)
        seen = position[block[rows, cols]]
        hit = seen >= 0
        scores[rows[hit], seen[hit]] = -np.inf
        top, top_scores = _row_top_k(scores, k)
        valid = np.isfinite(top_scores)  # a user who has seen almost the whole pool
        n = len(block)
        user_rows = np.repeat(np.arange(start, start + n), k).reshape(n, k)
        ranks = np.tile(np.arange(1, k + 1), (n, 1))
        out_users.append(user_rows[valid])
        out_ranks.append(ranks[valid])
        out_items.append(pool[top][valid])
        out_scores.append(top_scores[valid])
    return TopK(
        np.concatenate(out_users),
        np.concatenate(out_ranks),
        np.concatenate(out_items),
        np.concatenate(out_scores).astype(np.float32),
    )


def own_scores(scores) -> np.ndarray:
    """`score_pool`'s result as a float32 array the caller may change. A scorer returns a new
    array (the Scorer contract), so it is taken as it is unless it is a view or read-only: a
    chunk of 2,048 users against a 57k-item pool is 465 MB, and every copy is a pass over it."""
    scores = np.asarray(scores)
    if scores.dtype == np.float32 and scores.flags.owndata and scores.flags.writeable:
        return scores
    return np.array(scores, dtype=np.float32)


def _row_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's `k` highest scores, best first; NaN ranks as
    -inf (last) and is replaced so in `scores` (the caller's own copy). torch.topk selects and
    sorts in one multithreaded pass, where numpy needs argpartition, then argsort."""
    import torch

    tensor = torch.from_numpy(scores)
    torch.nan_to_num_(tensor, nan=-np.inf, posinf=np.inf, neginf=-np.inf)  # in place, threaded
    top_scores, top = torch.topk(tensor, k, dim=1, largest=True, sorted=True)
    return top.numpy(), top_scores.numpy()


def explain(
    result: TopK,
    history: np.ndarray,
    items: ItemFeatures,
    titles: np.ndarray,
    field: str,
    item_clicks: np.ndarray,
    profile_topics: list[list[str]] | None = None,
) -> tuple[pl.Series, pl.Series]:
    """A reason kind ("similar_history" | "profile_topic" | "popularity" | "freshness") and a
    short text for every recommendation of `result`, as two string Series.

    `item_clicks` are recent clicks per item (for the popularity explanation); `profile_topics`
    are the GENRE profile topics per user row (or None)."""
    import polars as pl

    from genre_dagster.scoring.content import unit_field

    unit = unit_field(items, field)
    best_sims, best_items = _closest_history_items(result, history, unit)
    category = np.asarray(items.categories, dtype=np.int64)[result.items]
    clicks = np.asarray(item_clicks)[result.items]
    similar = best_sims >= SIMILAR_THRESHOLD
    on_topic = _topic_matches(result.user_rows, category, profile_topics, items.category_names)
    popular = clicks > 0
    code = np.select([similar, on_topic, popular], [0, 1, 2], default=3)
    # Texts are assembled column-wise: a million users' lists are ten million rows, too many
    # for a Python loop. Only the similarity needs Python's formatting, once per distinct value.
    sims, sim_of = np.unique(np.where(similar, best_sims, 0.0), return_inverse=True)
    frame = pl.DataFrame(
        {
            "code": code,
            "category": pl.Series(list(items.category_names), dtype=pl.String).gather(category),
            "title": pl.Series(np.asarray(titles, dtype=object), dtype=pl.String)
            .gather(np.maximum(best_items, 0))
            .fill_null(""),
            "similarity": pl.Series([f"{v:.2f}" for v in sims.tolist()]).gather(sim_of),
            "clicks": clicks.astype(np.int64),
        }
    )
    text = (
        pl.when(pl.col("code") == 0)
        .then(pl.format('Similar to "{}" you read (similarity {})', "title", "similarity"))
        .when(pl.col("code") == 1)
        .then(pl.format("Matches your interest in {}", "category"))
        .when(pl.col("code") == 2)
        .then(pl.format("Popular now: {} recent clicks in {}", "clicks", "category"))
        .otherwise(pl.format("New in {}", "category"))
    )
    kinds = pl.Series("explanation_kind", EXPLANATION_KINDS, dtype=pl.String).gather(code)
    return kinds, frame.select(text.alias("explanation"))["explanation"]


def _topic_matches(
    user_rows: np.ndarray,
    category: np.ndarray,
    profile_topics: list[list[str]] | None,
    category_names: list[str],
) -> np.ndarray:
    """Whether each recommendation's category is among its user's profile topics."""
    if profile_topics is None:
        return np.zeros(len(user_rows), dtype=bool)
    index = {name: i for i, name in enumerate(category_names)}
    pairs = [
        user * len(index) + index[topic]
        for user, topics in enumerate(profile_topics)
        for topic in topics or ()
        if topic in index
    ]
    keys = np.asarray(user_rows, dtype=np.int64) * len(index) + category
    return np.isin(keys, np.asarray(pairs, dtype=np.int64))


def _closest_history_items(
    result: TopK, history: np.ndarray, unit: np.ndarray, chunk_users: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Per recommendation, the cosine of the most similar item in its user's history and that
    item (-1.0 and -1 for an empty history). A user's history vectors are gathered once for
    all of their recommendations, in one batched product per chunk of users."""
    n = len(result.items)
    best_sims = np.full(n, -1.0, dtype=np.float32)
    best_items = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return best_sims, best_items
    order = np.argsort(result.user_rows, kind="stable")  # recommendations grouped by user
    users, first, counts = np.unique(result.user_rows[order], return_index=True, return_counts=True)
    width = int(counts.max())
    slot = np.arange(n) - np.repeat(first, counts)
    recs = np.full((len(users), width), -1, dtype=np.int64)  # row of `order` per (user, slot)
    recs[np.repeat(np.arange(len(users)), counts), slot] = np.arange(n)
    for s in range(0, len(users), chunk_users):
        hist = history[users[s : s + chunk_users]]
        seen = hist != PAD
        rows = recs[s : s + chunk_users]
        picked = rows >= 0
        targets = result.items[order[np.maximum(rows, 0)]]
        sims = np.matmul(unit[np.where(seen, hist, 0)], unit[targets].transpose(0, 2, 1))
        sims[~seen] = -np.inf  # [users, history, recommendations]
        where = sims.argmax(axis=1)
        best = np.take_along_axis(sims, where[:, None, :], axis=1)[:, 0, :]
        found = picked & np.isfinite(best)
        flat = order[rows[found]]
        best_sims[flat] = best[found]
        best_items[flat] = np.take_along_axis(hist, where, axis=1)[found]
    return best_sims, best_items
