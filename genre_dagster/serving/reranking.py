"""Steered lists: steering parameters applied to scores (boosts, exclusions, a freshness
window), diversity by maximal marginal relevance (MMR) over the steered scores, and top-K with
both.

Boosts add weight x the user's standard deviation of finite scores; excluded and too-old items
get -inf and can never be recommended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from genre_dagster.arrays import PAD, ItemFeatures
from genre_dagster.serving.steering import SteeringParams
from genre_dagster.serving.topk import TopK, own_scores, top_k


def apply_steering(
    scores: np.ndarray,
    pool_categories: np.ndarray,
    category_names: Sequence[str],
    params_per_user: SteeringParams | Sequence[SteeringParams],
    pool_first_day: np.ndarray | None = None,
    newest_day: Any = None,
) -> np.ndarray:
    """Steered copy of `scores` [n_users, n_pool] (`scores` itself when no user is steered).

    `pool_categories` [n_pool] index `category_names`; `params_per_user` is one object for
    everyone or one per user row. Boosts add weight x the user's std of finite scores;
    excluded categories and items first shown `freshness_days` or more days before
    `newest_day` (or never: unknown first day) become -inf. `pool_first_day` holds day
    numbers or dates (datetime64); it and `newest_day` are needed only for a freshness window.
    Users with identical parameters are processed together.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"apply_steering: scores must be [n_users, n_pool], got {scores.shape}")
    n_users, n_pool = scores.shape
    cats = np.asarray(pool_categories, dtype=np.int64)
    if cats.shape != (n_pool,):
        raise ValueError(
            f"apply_steering: pool_categories has shape {cats.shape}, need ({n_pool},)"
        )
    if n_pool and (cats.min() < 0 or cats.max() >= len(category_names)):
        raise ValueError("apply_steering: pool_categories index outside category_names")
    per_user = _per_user(params_per_user, n_users)
    if all(params.is_neutral for params in per_user):
        return scores  # nobody is steered: a copy would be a pass over every score for nothing
    out = scores.astype(np.result_type(scores.dtype, np.float32), copy=True)
    index = {name: i for i, name in enumerate(category_names)}
    age: np.ndarray | None = None
    for params, rows in _groups(per_user):
        if params.is_neutral:
            continue
        params.check_categories(category_names)
        drop = np.isin(cats, [index[c] for c in params.exclude_categories])
        if params.freshness_days is not None:
            if age is None:
                age = _age_days(pool_first_day, newest_day, n_pool)
            # unknown first day (NaN) cannot be shown to be fresh
            drop |= ~(age < params.freshness_days)
        block = out[rows]
        if params.category_weights:
            boost = np.zeros(n_pool)
            for category, weight in params.category_weights.items():
                boost[cats == index[category]] = weight
            block += (_finite_std(block)[:, None] * boost[None, :]).astype(block.dtype)
        block[:, drop] = -np.inf
        out[rows] = block
    return out


def _per_user(
    params: SteeringParams | Sequence[SteeringParams], n_users: int
) -> list[SteeringParams]:
    if isinstance(params, SteeringParams):
        return [params] * n_users
    params = list(params)
    if len(params) != n_users:
        raise ValueError(f"{len(params)} steering parameter objects for {n_users} user rows")
    return params


def _groups(per_user: list[SteeringParams]) -> list[tuple[SteeringParams, np.ndarray]]:
    """(params, user rows) for each distinct parameter set."""
    key_of: dict[int, str] = {}  # most rows share a few objects: serialize each object once
    rows: dict[str, list[int]] = {}
    first: dict[str, SteeringParams] = {}
    for row, params in enumerate(per_user):
        key = key_of.get(id(params))
        if key is None:
            key = key_of[id(params)] = params.key()
        rows.setdefault(key, []).append(row)
        first.setdefault(key, params)
    return [(first[key], np.asarray(r, dtype=np.int64)) for key, r in rows.items()]


def _finite_std(block: np.ndarray) -> np.ndarray:
    """Per-row std of finite scores; 1 where it is undefined or 0 (all scores equal), so a
    boost still reorders such a user."""
    finite = np.isfinite(block)
    n = finite.sum(axis=1)
    values = np.where(finite, block, 0.0).astype(np.float64)
    mean = values.sum(axis=1) / np.maximum(n, 1)
    var = (np.where(finite, values - mean[:, None], 0.0) ** 2).sum(axis=1) / np.maximum(n, 1)
    std = np.sqrt(var)
    return np.where((n >= 2) & (std > 0), std, 1.0)


def _age_days(first_day: np.ndarray | None, newest_day: Any, n_pool: int) -> np.ndarray:
    if first_day is None or newest_day is None:
        raise ValueError("a freshness window needs pool_first_day and newest_day")
    first = np.asarray(first_day)
    if first.shape != (n_pool,):
        raise ValueError(f"pool_first_day has shape {first.shape}, need ({n_pool},)")
    if first.dtype == object or np.issubdtype(first.dtype, np.datetime64):
        days = first.astype("datetime64[D]")
        newest = np.datetime64(newest_day, "D")
        age = (newest - days).astype(np.float64)
        age[np.isnat(days)] = np.nan
        return age
    return float(newest_day) - first.astype(np.float64)


# --- diversity: maximal marginal relevance -----------------------------------------------------


def mmr_rerank(
    scores_row: np.ndarray,
    item_vectors: np.ndarray,
    k: int,
    diversity: float,
    top_m: int = 5000,
) -> np.ndarray:
    """Up to `k` column indices of `scores_row` chosen by MMR (never a -inf item)."""
    picks = mmr_rerank_batch(np.asarray(scores_row)[None, :], item_vectors, k, diversity, top_m)
    return picks[0][picks[0] >= 0]


def mmr_rerank_batch(
    scores: np.ndarray,
    item_vectors: np.ndarray,
    k: int,
    diversity: float | np.ndarray,
    top_m: int = 5000,
    chunk_users: int = 1024,
) -> np.ndarray:
    """MMR picks [n_users, k] (column indices, -1 when a user has fewer finite items).

    Each step picks argmax of (1 - lambda) * relevance - lambda * (max cosine to the items
    picked so far), relevance being the score min-max scaled over the user's top-`top_m`
    finite items; `diversity` (lambda) is one value or one per user. Vectors are normalized.
    """
    scores = np.asarray(scores, dtype=np.float64)
    vectors = np.asarray(item_vectors, dtype=np.float32)
    n_users, n_pool = scores.shape
    if vectors.ndim != 2 or vectors.shape[0] != n_pool:
        raise ValueError(f"item_vectors has shape {vectors.shape}, need ({n_pool}, dim)")
    if k < 1 or top_m < 1:
        raise ValueError(f"mmr_rerank: need k >= 1 and top_m >= 1, got k={k}, top_m={top_m}")
    lam = np.broadcast_to(np.asarray(diversity, dtype=np.float64), (n_users,))
    if ((lam < 0) | (lam > 1)).any():
        raise ValueError("mmr_rerank: diversity must lie in [0, 1]")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    k_eff = min(k, n_pool)
    # Pool-by-pool similarities once when that is cheaper than per step for the picked items.
    table = unit @ unit.T if n_pool <= min(4096, n_users * k_eff) else None
    out = np.full((n_users, k), -1, dtype=np.int64)
    for start in range(0, n_users, chunk_users):
        s = scores[start : start + chunk_users]
        n = len(s)
        cand = np.isfinite(s)
        if top_m < n_pool:
            cutoff = -np.partition(-np.where(cand, s, -np.inf), top_m - 1, axis=1)[:, top_m - 1]
            cand &= s >= cutoff[:, None]
        low = np.where(cand, s, np.inf).min(axis=1, keepdims=True)
        high = np.where(cand, s, -np.inf).max(axis=1, keepdims=True)
        span = np.where(np.isfinite(high - low) & (high > low), high - low, 1.0)
        rel = np.where(cand, (s - np.where(np.isfinite(low), low, 0.0)) / span, 0.0)
        w = lam[start : start + n, None]
        max_sim = np.full((n, n_pool), -1.0)  # cosine's lower bound: nothing picked yet
        rows = np.arange(n)
        for step in range(k_eff):
            # the small relevance term breaks ties (e.g. diversity 1) toward relevance
            objective = (1 - w) * rel - w * max_sim + 1e-9 * rel
            objective[~cand] = -np.inf
            pick = np.argmax(objective, axis=1)
            ok = np.isfinite(objective[rows, pick])
            out[start + rows[ok], step] = pick[ok]
            cand[rows, pick] = False
            sims = table[pick] if table is not None else unit[pick] @ unit.T
            max_sim = np.maximum(max_sim, sims)
    return out


# --- top-K with steering -----------------------------------------------------------------------


def top_k_steered(
    score_pool: Callable[[slice, np.ndarray], np.ndarray],
    history: np.ndarray,
    pool: np.ndarray,
    k: int,
    items: ItemFeatures,
    params_per_user: SteeringParams | Sequence[SteeringParams],
    item_first_day: np.ndarray | None = None,
    newest_day: Any = None,
    mmr_field: str | None = None,
    top_m: int = 5000,
    chunk_users: int = 2048,
) -> TopK:
    """`topk.top_k` with steering: seen and synthetic items excluded as there, then
    `apply_steering` and, for users with diversity > 0, MMR on `items.embeddings[mmr_field]`.

    `item_first_day` [n_items] is each item's first shown day (for freshness windows). Scores
    in the result are the steered scores; for MMR users the ranks follow MMR, not the score.
    """
    per_user = _per_user(params_per_user, len(history))
    diversity = np.array([p.effective_diversity for p in per_user])
    uses_mmr = diversity > 0
    vectors = None
    if uses_mmr.any():
        if mmr_field not in items.embeddings:
            raise ValueError(
                f"diversity needs mmr_field, one of {sorted(items.embeddings)}; got {mmr_field!r}"
            )
        vectors = items.embeddings[mmr_field]
    mmr_order = np.full((len(history), k), -1, dtype=np.int64)  # item indices in MMR order

    def steered(rows: slice, candidates: np.ndarray) -> np.ndarray:
        scores = own_scores(score_pool(rows, candidates))
        if scores.shape != (len(history[rows]), len(candidates)):
            return scores  # top_k reports the shape error
        # seen items out first (as top_k does later), so neither the std nor MMR uses them
        _mask_seen(scores, history[rows], candidates, items.n_items)
        first = item_first_day[candidates] if item_first_day is not None else None
        scores = apply_steering(
            scores,
            items.categories[candidates],
            items.category_names,
            per_user[rows],
            first,
            newest_day,
        )
        local = np.flatnonzero(uses_mmr[rows])
        if len(local):
            k_eff = min(k, len(candidates))
            picks = mmr_rerank_batch(
                scores[local], vectors[candidates], k_eff, diversity[rows][local], top_m
            )
            keep = np.zeros((len(local), len(candidates)), dtype=bool)
            r, c = np.nonzero(picks >= 0)
            keep[r, picks[r, c]] = True
            block = scores[local]
            block[~keep] = -np.inf  # only the MMR picks survive top_k's selection
            scores[local] = block
            mmr_order[rows.start + local, :k_eff] = np.where(
                picks >= 0, candidates[np.maximum(picks, 0)], -1
            )
        return scores

    result = top_k(steered, history, pool, k, items, chunk_users)
    if not uses_mmr.any():
        return result
    return _mmr_ranks(result, mmr_order, uses_mmr)


def _mask_seen(scores: np.ndarray, block: np.ndarray, candidates: np.ndarray, n_items: int) -> None:
    position = np.full(n_items, -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    rows, cols = np.nonzero(block != PAD)
    seen = position[block[rows, cols]]
    hit = seen >= 0
    scores[rows[hit], seen[hit]] = -np.inf


def _mmr_ranks(result: TopK, mmr_order: np.ndarray, uses_mmr: np.ndarray) -> TopK:
    """Re-rank the MMR users' rows of `result` in MMR order (top_k sorted them by score)."""
    users = result.user_rows
    match = mmr_order[users] == result.items[:, None]
    mmr_rows = uses_mmr[users]
    if not match[mmr_rows].any(axis=1).all():
        raise RuntimeError("top_k returned an item MMR did not pick (internal error)")
    ranks = np.where(mmr_rows, match.argmax(axis=1) + 1, result.ranks)
    order = np.lexsort((ranks, users))
    return TopK(users[order], ranks[order], result.items[order], result.scores[order])
