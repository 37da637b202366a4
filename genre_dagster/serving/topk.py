"""Top-K recommendation lists over a candidate pool, with a short explanation per item.

All users x pool are scored in chunks with the scorer's batched `score_pool`; items already in a
user's history and synthetic items are excluded before ranking. Each recommendation is
explained by whichever signal drove it most: the most similar history item, a matching profile
topic, or popularity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genre_dagster.arrays import PAD, ItemFeatures
from genre_dagster.scoring.user_profile import unit_rows

SIMILAR_THRESHOLD = 0.5  # cosine above which "you read something like this" is the explanation


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
        scores = np.asarray(score_pool(rows_slice, pool), dtype=np.float32).copy()
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


def _row_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's `k` highest scores, best first; NaN ranks as
    -inf (last) and is replaced so in `scores` (the caller's own copy). torch.topk selects and
    sorts in one multithreaded pass, where numpy needs argpartition, then argsort."""
    import torch

    scores[np.isnan(scores)] = -np.inf
    top_scores, top = torch.topk(torch.from_numpy(scores), k, dim=1, largest=True, sorted=True)
    return top.numpy(), top_scores.numpy()


def explain(
    result: TopK,
    history: np.ndarray,
    items: ItemFeatures,
    titles: np.ndarray,
    field: str,
    item_clicks: np.ndarray,
    profile_topics: list[list[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """A reason kind ("similar_history" | "profile_topic" | "popularity" | "freshness") and a
    short text for
    every recommendation of `result`.

    `item_clicks` are recent clicks per item (for the popularity explanation); `profile_topics`
    are the GENRE profile topics per user row (or None)."""
    vectors = items.embeddings[field]
    unit = unit_rows(vectors)
    best_sims, best_items = _closest_history_items(result, history, unit)
    kinds: list[str] = []
    texts: list[str] = []
    cats = items.category_names
    for user, item, best_sim, best_item in zip(
        result.user_rows, result.items, best_sims.tolist(), best_items.tolist(), strict=True
    ):
        category = cats[items.categories[item]]
        topics = profile_topics[user] if profile_topics is not None else None
        if best_sim >= SIMILAR_THRESHOLD:
            kinds.append("similar_history")
            texts.append(f'Similar to "{titles[best_item]}" you read (similarity {best_sim:.2f})')
        elif topics and category in topics:
            kinds.append("profile_topic")
            texts.append(f"Matches your interest in {category}")
        elif item_clicks[item] > 0:
            kinds.append("popularity")
            texts.append(f"Popular now: {int(item_clicks[item])} recent clicks in {category}")
        else:
            kinds.append("freshness")
            texts.append(f"New in {category}")
    return kinds, texts


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
