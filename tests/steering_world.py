"""A synthetic steering world shared by the re-ranking and instruction tests: items clustered
by category, per-user scores with a taste per category, and what a steered list looks like."""

from __future__ import annotations

import numpy as np

from genre_dagster.arrays import PAD, ItemFeatures
from genre_dagster.monitoring.steering_effect import category_mix

CATEGORIES = ["news", "science", "entertainment", "sports", "finance", "weather"]


def steering_world(seed: int = 0, n_users: int = 300, n_items: int = 240, dim: int = 16):
    """Items clustered by category (so similar items share a category), a few synthetic;
    user scores with a per-user taste per category plus item noise; histories of 5 items."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, len(CATEGORIES), n_items)
    centroids = rng.normal(size=(len(CATEGORIES), dim)) * 2
    vectors = (centroids[cats] + rng.normal(size=(n_items, dim))).astype(np.float32)
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(n_items)], dtype=object),
        embeddings={"title": vectors},
        categories=cats.astype(np.int64),
        category_names=list(CATEGORIES),
        is_synthetic=rng.random(n_items) < 0.03,
    )
    # entertainment is the popular default, science rarely makes it on its own
    taste = rng.normal(size=(n_users, len(CATEGORIES))) + np.array([0, -0.8, 0.8, 0, 0, 0])
    scores = (taste[:, cats] + rng.normal(size=(n_users, n_items))).astype(np.float32)
    history = rng.integers(0, n_items, (n_users, 5))
    history[:, :2] = PAD
    return items, scores, history


def score_pool(scores: np.ndarray):
    """A scorer over a candidate pool that reads the precomputed `scores`."""
    return lambda rows, pool: scores[rows][:, pool]


def ranked_lists(result, n_users: int, k: int) -> np.ndarray:
    """The top-k result as one row of item indices per user in rank order (-1 where short)."""
    out = np.full((n_users, k), -1, dtype=np.int64)
    out[result.user_rows, result.ranks - 1] = result.items
    return out


def list_mix(result, items: ItemFeatures) -> dict[str, float]:
    """The category shares over all the lists of a top-k result."""
    return category_mix(np.array(items.category_names)[items.categories[result.items]])
