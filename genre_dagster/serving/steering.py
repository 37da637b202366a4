"""Steering of recommendation lists: category boosts and exclusions, a freshness window and
MMR diversity, set per user segment or mapped from a reader's instruction by the LLM.

Boosts are additive, in units of each user's own score spread (standard deviation of the
user's finite scores), so one weight means the same for every scorer and every user.
Exclusions and too-old items get -inf and can never be recommended. Diversity is maximal
marginal relevance (MMR) over the steered scores.

Explicit parameters are checked strictly against the category list (a typo in config fails
loudly); categories named by the LLM are repaired with `Vocabulary` (case, plural, synonym,
fuzzy) and the rest rejected with a note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from genre_dagster.enrichment.schemas import MAX_FRESHNESS_DAYS, MAX_INSTRUCTION_CHARS, MAX_WEIGHT
from genre_dagster.scoring.data import PAD, ItemFeatures
from genre_dagster.serving.topk import TopK, top_k

SEGMENTS = ("all", "cold", "warm")


class SteeringParams(BaseModel):
    """How to steer one user's list; JSON round-trips (`model_dump_json` /
    `model_validate_json`).

    Attributes:
        category_weights: category -> additive boost in units of the user's score standard
            deviation, in [-3, 3] (negative: less of it).
        exclude_categories: categories never recommended.
        freshness_days: keep only items first shown within the last N days of the data
            (newest day - first day < N); None: no window.
        diversity: MMR lambda in [0, 1] (0: pure relevance, 1: most diverse); None: not set
            (inherits in `merge`, acts as 0).
        source: where the parameters came from: "explicit" (config), "instruction" (LLM),
            "none" (no steering; then the parameters must be neutral).
        instruction: the reader's instruction text when source is "instruction".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    category_weights: dict[str, float] = Field(default_factory=dict)
    exclude_categories: list[str] = Field(default_factory=list)
    freshness_days: int | None = Field(default=None, ge=1, le=MAX_FRESHNESS_DAYS)
    diversity: float | None = Field(default=None, ge=0.0, le=1.0)
    source: Literal["explicit", "instruction", "none"] = "explicit"
    instruction: str = Field(default="", max_length=MAX_INSTRUCTION_CHARS)

    @field_validator("category_weights")
    @classmethod
    def _weights_in_range(cls, weights: dict[str, float]) -> dict[str, float]:
        for category, weight in weights.items():
            if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
                raise ValueError(
                    f"weight of {category!r} is {weight}; weights lie in "
                    f"[-{MAX_WEIGHT}, {MAX_WEIGHT}] (score standard deviations)"
                )
        return weights

    @field_validator("exclude_categories")
    @classmethod
    def _unique_exclusions(cls, categories: list[str]) -> list[str]:
        return list(dict.fromkeys(categories))

    @model_validator(mode="after")
    def _consistent(self) -> SteeringParams:
        both = sorted(set(self.category_weights) & set(self.exclude_categories))
        if both:
            raise ValueError(f"categories {both} are both boosted and excluded")
        if self.source == "none" and not self.is_neutral:
            raise ValueError("source 'none' means no steering, but the parameters steer")
        return self

    @property
    def is_neutral(self) -> bool:
        """True when these parameters change nothing."""
        return (
            not any(self.category_weights.values())
            and not self.exclude_categories
            and self.freshness_days is None
            and not self.diversity
        )

    @property
    def effective_diversity(self) -> float:
        """The MMR lambda to use (0 when not set)."""
        return self.diversity or 0.0

    def check_categories(self, categories: Sequence[str]) -> SteeringParams:
        """Self, or ValueError naming the unknown categories and the whole vocabulary."""
        known = set(categories)
        unknown = sorted((set(self.category_weights) | set(self.exclude_categories)) - known)
        if unknown:
            raise ValueError(
                f"steering names unknown categories {unknown}; the categories are: "
                f"{', '.join(categories)}"
            )
        return self

    def key(self) -> str:
        """A canonical JSON text: equal parameters have equal keys (used to group users)."""
        return json.dumps(self.model_dump(), sort_keys=True)


NO_STEERING = SteeringParams(source="none")


def merge(base: SteeringParams, override: SteeringParams) -> SteeringParams:
    """`override` on top of `base`: the later word wins per category.

    Boosts: union, override's weight wins; a category the override boosts is no longer
    excluded and one it excludes is no longer boosted. Exclusions: union. Freshness and
    diversity: override's value when set. Source and instruction: those of the override,
    unless it changes nothing (then the base's).
    """
    weights = {
        c: w for c, w in base.category_weights.items() if c not in override.exclude_categories
    }
    weights.update(override.category_weights)
    exclude = [c for c in base.exclude_categories if c not in override.category_weights]
    exclude += [c for c in override.exclude_categories if c not in exclude]
    origin = base if override.is_neutral else override
    return SteeringParams(
        category_weights=weights,
        exclude_categories=exclude,
        freshness_days=(
            override.freshness_days if override.freshness_days is not None else base.freshness_days
        ),
        diversity=override.diversity if override.diversity is not None else base.diversity,
        source=origin.source,
        instruction=origin.instruction,
    )


def resolve_segments(
    segment_params: Mapping[str, SteeringParams], user_segments: Sequence[str] | np.ndarray
) -> list[SteeringParams]:
    """One parameter object per user row: "all" applies to everyone, "cold"/"warm" are merged
    on top of it for their users. Users of a segment with no entry get "all" (or none)."""
    unknown = sorted(set(segment_params) - set(SEGMENTS))
    if unknown:
        raise ValueError(f"unknown steering segments {unknown}; known: {list(SEGMENTS)}")
    base = segment_params.get("all", NO_STEERING)
    by_segment = {
        s: merge(base, segment_params[s]) if s in segment_params else base for s in ("cold", "warm")
    }
    out = []
    for row, segment in enumerate(user_segments):
        if segment not in by_segment:
            raise ValueError(f"user row {row}: segment {segment!r} is not 'cold' or 'warm'")
        out.append(by_segment[segment])
    return out


def describe(params: SteeringParams) -> str:
    """A short human description, e.g. "more science (+2.0 sd); never entertainment"."""
    parts = []
    ups = [f"{c} (+{w:g} sd)" for c, w in params.category_weights.items() if w > 0]
    downs = [f"{c} ({w:g} sd)" for c, w in params.category_weights.items() if w < 0]
    if ups:
        parts.append("more " + ", ".join(ups))
    if downs:
        parts.append("less " + ", ".join(downs))
    if params.exclude_categories:
        parts.append("never " + ", ".join(params.exclude_categories))
    if params.freshness_days is not None:
        parts.append(f"only items first shown in the last {params.freshness_days} day(s)")
    if params.effective_diversity > 0:
        parts.append(f"diversity {params.effective_diversity:g}")
    return "; ".join(parts) or "no change"


# --- applying parameters to scores -------------------------------------------------------------


def apply_steering(
    scores: np.ndarray,
    pool_categories: np.ndarray,
    category_names: Sequence[str],
    params_per_user: SteeringParams | Sequence[SteeringParams],
    pool_first_day: np.ndarray | None = None,
    newest_day: Any = None,
) -> np.ndarray:
    """Steered copy of `scores` [n_users, n_pool].

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
        scores = np.asarray(score_pool(rows, candidates), dtype=np.float32).copy()
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


# --- measuring the effect ----------------------------------------------------------------------


def category_mix(categories_of_recommended: Sequence[str] | np.ndarray) -> dict[str, float]:
    """Share of each category among recommended items, largest first ({} for no items)."""
    values, counts = np.unique(np.asarray(categories_of_recommended, dtype=str), return_counts=True)
    total = int(counts.sum())
    pairs = zip(values.tolist(), counts.tolist(), strict=True)
    order = sorted(pairs, key=lambda vc: (-vc[1], vc[0]))
    return {value: count / total for value, count in order}


def mix_shift(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Total variation distance between two category mixes (0: same, 1: disjoint)."""
    if not before or not after:
        raise ValueError("mix_shift: both category mixes need at least one category")
    names = set(before) | set(after)
    return 0.5 * sum(abs(before.get(n, 0.0) - after.get(n, 0.0)) for n in names)


def intra_list_diversity(lists: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean over lists of the mean pairwise cosine distance of their items.

    `lists` [n_lists, k] index `item_vectors` (-1 padding); lists with < 2 items are skipped.
    """
    norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
    unit = item_vectors / np.where(norms == 0, 1, norms)
    values = []
    for row in np.asarray(lists):
        chosen = row[row >= 0]
        if len(chosen) < 2:
            continue
        sims = unit[chosen] @ unit[chosen].T
        n = len(chosen)
        values.append(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))
    if not values:
        raise ValueError("intra_list_diversity: no list has two items")
    return float(np.mean(values))
